"""flash_attn_2_cuda, as built by blackwheel: the module upstream's flash_attn imports.

flash-attn's Python (`flash_attn/flash_attn_interface.py`, shipped unchanged in
this wheel) does `import flash_attn_2_cuda as flash_attn_gpu` and calls five
functions on it. Upstream's are a pybind11 extension on the classic PyTorch ABI,
tied to the one torch it was compiled against; these are the same functions over
a LibTorch stable-ABI extension (`_C.abi3.so`, torch.ops.flash_attn_2_cuda.*),
so one wheel runs on every CUDA 13 torch >= 2.11.
"""
from ._api import bwd, fwd, fwd_kvcache, varlen_bwd, varlen_fwd
from ._library import build_info, head_dims_built

__all__ = ["fwd", "varlen_fwd", "bwd", "varlen_bwd", "fwd_kvcache", "build_info", "head_dims_built"]
