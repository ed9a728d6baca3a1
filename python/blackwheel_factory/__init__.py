"""Build tooling for blackwheel.

Importable without the compiled extensions and without torch: CMake calls it at
configure time (``python -m blackwheel.build plan``) and the CLI uses it for
lock, abi-check, verify, repair, publish and index.

Pure logic (config, archs, lock comparison, policies) lives in modules that take
data and return data; effects (download, unpack, compile, upload) are thin.
"""
