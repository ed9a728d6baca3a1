"""The base image: the published wheels and the locked torch, built into an OCI image with
buildah (daemonless), reproducibly, with the index credentials only as a build secret.

plan.py    pure decisions: platform tags, storage config, buildah/mmdebstrap argv, lock text
buildah.py effects: buildah and mmdebstrap runs, inspect, export
layers.py  reading exported images: compare two (which files of which layer differ), scan for a secret
image_cmd.py  `python -m blackwheel_factory image base-os|build|compare|scan`
"""
