"""Independent references in plain torch, shipped with the wheel so that
``python -m blackwheel smoke`` and the GPU tests can check the kernels on the
machine that runs them.

  fp8.py            FP8 e4m3 quantization (per-tensor / per-token / per-channel), scaled-GEMM reference
  fp4.py            e2m1 codes and packing, NVFP4 and MXFP4 quantizers/dequantizers, 128x4 scale swizzle
  attention.py      attention forward (explicit fp64 softmax; bottom-right causal; GQA), SDPA math
  marlin_repack.py  reference for gptq_marlin_repack's permutation
  compare.py        elementwise comparison and error metrics
  cases.py          the kernel-vs-reference cases shared by the smoke command and tests/gpu
"""
from blackwheel.testing.attention import attention_reference, sdpa_math_reference
from blackwheel.testing.fp4 import (
    E2M1_VALUES,
    MXFP4Tensor,
    NVFP4Tensor,
    dequantize_mxfp4,
    dequantize_nvfp4,
    e2m1_decode,
    e2m1_encode,
    e8m0_to_float,
    mxfp4_scale_exponent,
    nvfp4_global_scale,
    pack_e2m1,
    quantize_mxfp4,
    quantize_nvfp4,
    swizzle_scales,
    unpack_e2m1,
    unswizzle_scales,
)
from blackwheel.testing.fp8 import dequantize_fp8, fp8_scale, quantize_fp8, scaled_mm_reference

__all__ = [
    "attention_reference", "sdpa_math_reference",
    "E2M1_VALUES", "MXFP4Tensor", "NVFP4Tensor", "dequantize_mxfp4", "dequantize_nvfp4", "e2m1_decode",
    "e2m1_encode", "e8m0_to_float", "mxfp4_scale_exponent", "nvfp4_global_scale", "pack_e2m1",
    "quantize_mxfp4", "quantize_nvfp4", "swizzle_scales", "unpack_e2m1", "unswizzle_scales",
    "dequantize_fp8", "fp8_scale", "quantize_fp8", "scaled_mm_reference",
]
