"""Compile: compiler cache, the scikit-build-core metadata provider, the build report."""
