"""The blackwheel factory: the build tooling (formerly ``blackwheel.build``).

One subpackage per pipeline stage: inputs -> plan -> sources -> compile -> checks
-> packaging -> publishing; policies/ holds the repair and verify policy data.

Importable without the compiled extensions and without torch: CMake calls it at
configure time (``python -m blackwheel_factory plan``) and the CLI uses it for
lock, abi-check, verify, repair, publish and index.

Pure logic (config, archs, lock comparison, policies) lives in modules that take
data and return data; effects (download, unpack, compile, upload) are thin.
"""
