"""Inputs: blackwheel.toml and torch-lock.toml (config, lock), the CUDA toolchain pin, hashing."""
