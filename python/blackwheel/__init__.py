"""blackwheel: upstream vLLM and FlashAttention kernels built for SM_120, locked to one torch.

Importing the package first checks the running torch against the torch the
extensions were built for (``_build_info.json``, written by the build) and
refuses a drifted torch with an ImportError that names the fix, before any
extension is loaded: the runtime's guard (``blackwheel._runtime``, the same code
every product wheel carries). In a source checkout (no build record) nothing is
loaded. No build tooling is imported: the factory is not part of this wheel.
"""
from __future__ import annotations

from blackwheel._installed import INFO as _INFO
from blackwheel._runtime import guard as _guard

__all__ = ["build_info"]

# `python -m blackwheel doctor|info` must still run (and explain) when torch drifted.
if _INFO is not None and not _guard.diagnostic_mode():
    _guard.check_torch(_INFO)         # raises TorchMismatchError (ImportError); loads nothing
    from blackwheel import _loader
    _loader.load_extensions(_INFO)    # torch.ops.load_library for each built family
    from blackwheel import _fakes     # fake (meta) impls for torch.compile: need the schemas
    _fakes.register(set(_INFO.get("kernels", {})))
    from blackwheel.ops import (      # noqa: E402  (typed API over torch.ops.blackwheel)
        cutlass_fp4_gemm,
        flash_attn_func,
        marlin_fp4_gemm,
        scaled_fp4_quant,
        scaled_mm,
    )
    __all__ += ["scaled_mm", "scaled_fp4_quant", "cutlass_fp4_gemm", "marlin_fp4_gemm",
                "flash_attn_func"]


def build_info() -> dict | None:
    """The build record of this installation (None in a source checkout)."""
    return _INFO
