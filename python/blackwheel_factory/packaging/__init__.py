"""Packaging: reproducible wheels (repro) and auditwheel repair (`repair`).

Always imported as ``blackwheel_factory.packaging``; ``import packaging`` (absolute
imports) still means the PyPA library."""
