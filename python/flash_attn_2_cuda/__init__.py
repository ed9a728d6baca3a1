"""flash_attn_2_cuda, as built by blackwheel: the module upstream's flash_attn imports.

flash-attn's Python (`flash_attn/flash_attn_interface.py`, shipped unchanged in
this wheel) does `import flash_attn_2_cuda as flash_attn_gpu` and calls five
functions on it. Upstream's are a pybind11 extension on the classic PyTorch ABI,
tied to the one torch it was compiled against; these are the same functions over
a LibTorch stable-ABI extension (`_C.abi3.so`, torch.ops.flash_attn_2_cuda.*),
so one wheel runs on every CUDA 13 torch >= 2.11.

Importing it first checks the running torch against the build record with the
runtime's guard (``flash_attn_2_cuda._runtime``, the same code every product
wheel carries): a torch this wheel cannot load into is refused with an
ImportError naming the installed and required torch and the pip fix, where
upstream's extension would fail with "undefined symbol". ``python -m
flash_attn_2_cuda doctor|info`` diagnose instead of importing.
"""
from pathlib import Path as _Path

from ._runtime import guard as _guard

if not _guard.diagnostic_mode():
    # before torch is imported by our modules: the record, then the running torch against it
    _guard.check_installed(_Path(__file__).resolve().parent, "flash-attn")
    from ._api import bwd, fwd, fwd_kvcache, varlen_bwd, varlen_fwd   # noqa: E402
    from ._library import build_info, head_dims_built                 # noqa: E402

__all__ = ["fwd", "varlen_fwd", "bwd", "varlen_bwd", "fwd_kvcache", "build_info", "head_dims_built"]
