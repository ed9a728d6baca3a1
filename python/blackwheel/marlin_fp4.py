"""Weight and scale preparation for the FP4 Marlin GEMM (NVFP4 and MXFP4 weights,
fp16/bf16 activations): a port of the logic of vLLM 0.33's
``marlin_utils_fp4.py`` / ``marlin_utils.py`` (dense layers, 16-bit activations).

Inputs are checkpoint-style FP4 weights ``W [N, K]`` (out_features x in_features):
  packed      uint8 [N, K // 2]  two e2m1 codes per byte, element 2i in the low nibble
  NVFP4:      block_scales float8_e4m3fn [N, K // 16] (linear layout) and a global
              scale in vLLM's convention (``W ~= e2m1 * block_scale / global_scale``,
              the value ``scaled_fp4_quant`` takes; e.g. 448 * 6 / amax(W))
  MXFP4:      scales float8_e8m0fnu (or its uint8 bytes) [N, K // 32]; MXFP4 Marlin
              kernels exist for bf16 activations only.
Output: a MarlinFP4Weight for ``blackwheel.marlin_fp4_gemm``.

Everything except the repack (``gptq_marlin_repack``, a CUDA op) is plain torch
and runs on any device.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from blackwheel._dispatch import _dtype, _op, _same_cuda_device, _tensor

NVFP4_GROUP = 16
MXFP4_GROUP = 32
TILE = 16                  # GPTQ_MARLIN_TILE
MIN_THREAD_N = 64          # GPTQ_MARLIN_MIN_THREAD_N
MIN_THREAD_K = 128         # GPTQ_MARLIN_MIN_THREAD_K
MAX_BLOCKS_PER_SM = 4      # MARLIN_MAX_BLOCKS_PER_SM (workspace = locks per block)


def scalar_type_id(exponent: int, mantissa: int, signed: bool, bias: int = 0,
                   finite_values_only: bool = False, nan_repr: int = 1) -> int:
    """vLLM ScalarType.id: the fields packed LSB-first (8, 8, 1, 32, 1, 8 bits)."""
    val, offset = 0, 0
    for member, width in ((exponent, 8), (mantissa, 8), (int(signed), 1), (bias, 32),
                          (int(finite_values_only), 1), (nan_repr, 8)):
        val |= (int(member) & ((1 << width) - 1)) << offset
        offset += width
    return val


# scalar_types.float4_e2m1f = ScalarType.float_(2, 1, True, NanRepr.NONE)
FLOAT4_E2M1F_ID = scalar_type_id(2, 1, True, 0, True, 0)


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


# ---------------------------------------------------------------------------
# shapes and padding
# ---------------------------------------------------------------------------

def padded_nk(size_n: int, size_k: int, group_size: int) -> tuple[int, int]:
    """Smallest (padded_n, padded_k) Marlin accepts: (n % 64, k % 128) or
    (n % 128, k % 64), K kept a multiple of the group size; the cheaper of the two."""
    if size_n <= 0 or size_k <= 0:
        raise ValueError(f"weight shape must be positive, got N={size_n}, K={size_k}")
    g = group_size if group_size > 0 else 1
    candidates = (
        (_round_up(size_n, 64), _round_up(size_k, math.lcm(128, g))),
        (_round_up(size_n, 128), _round_up(size_k, math.lcm(64, g))),
    )
    return min(candidates, key=lambda nk: (nk[0] * nk[1], nk[0] + nk[1]))


def to_gptq_layout(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K // 2] -> int32 [K // 8, N]: eight 4-bit codes per int32 along K,
    element k in bits 4*(k % 8) (the input of gptq_marlin_repack)."""
    n, half_k = packed.shape
    if half_k % 4:
        raise ValueError(f"K must be a multiple of 8 for the GPTQ layout, got K={2 * half_k}")
    # little-endian bytes: byte b of an int32 holds elements 2b (low nibble), 2b+1
    return packed.contiguous().view(torch.int32).T.contiguous()


def pad_gptq_qweight(qweight: torch.Tensor, size_n: int, size_k: int, padded_n: int, padded_k: int) -> torch.Tensor:
    """Zero-pad an int32 [K // 8, N] weight to [padded_k // 8, padded_n] (code 0 decodes to 0.0)."""
    if (padded_n, padded_k) == (size_n, size_k):
        return qweight
    return torch.nn.functional.pad(qweight, (0, padded_n - size_n, 0, (padded_k - size_k) // 8))


def pad_scales(scales: torch.Tensor, size_n: int, padded_n: int, groups: int, padded_groups: int) -> torch.Tensor:
    """Zero-pad scales [groups, N] to [padded_groups, padded_n]."""
    if (padded_n, padded_groups) == (size_n, groups):
        return scales
    return torch.nn.functional.pad(scales, (0, padded_n - size_n, 0, padded_groups - groups))


# ---------------------------------------------------------------------------
# permutations (marlin_utils.get_scale_perms / marlin_permute_scales / _bias)
# ---------------------------------------------------------------------------

def scale_perms() -> tuple[list[int], list[int]]:
    scale_perm: list[int] = []
    for i in range(8):
        scale_perm.extend([i + 8 * j for j in range(8)])
    scale_perm_single: list[int] = []
    for i in range(4):
        scale_perm_single.extend([2 * i + j for j in [0, 1, 8, 9, 16, 17, 24, 25]])
    return scale_perm, scale_perm_single


def permute_scales(s: torch.Tensor, size_k: int, size_n: int, group_size: int) -> torch.Tensor:
    """Grouped scales [K // group, N] -> Marlin's order (16-bit activations)."""
    perm, perm_single = scale_perms()
    p = perm if (group_size < size_k and group_size != -1) else perm_single
    if s.numel() % len(p):
        raise ValueError(f"scales with {s.numel()} elements cannot be permuted in groups of {len(p)}; "
                         f"N must be a multiple of {MIN_THREAD_N}")
    s = s.reshape((-1, len(p)))[:, p]
    return s.reshape((-1, size_n)).contiguous()


def permute_bias(b: torch.Tensor) -> torch.Tensor:
    _, perm_single = scale_perms()
    shape = b.shape
    return b.reshape((-1, len(perm_single)))[:, perm_single].reshape(*shape).contiguous()


# ---------------------------------------------------------------------------
# scale formats
# ---------------------------------------------------------------------------

def nvfp4_scale_factor(marlin_scales: torch.Tensor, act_dtype: torch.dtype | None) -> float:
    """Power of two (>= 1) that lifts the largest scale towards e4m3's 448 so every
    non-zero scale * 2**7 is >= 2 (bf16 only; 1.0 for fp16's narrower range)."""
    if act_dtype == torch.half:
        return 1.0
    ws = marlin_scales.float() * (2 ** 7)
    nz = ws > 0
    if bool(nz.any()):
        max_val = ws[nz].max()
        if float(max_val) < 448 * (2 ** 7):
            return float((448 * (2 ** 7) / max_val).log2().floor().exp2())
    return 1.0


def nvfp4_process_scales(marlin_scales: torch.Tensor, act_dtype: torch.dtype | None = None,
                         scale_factor: float | None = None) -> tuple[torch.Tensor, float]:
    """Permuted e4m3 scales -> Marlin's S0E5M3 fp8 scales (and the scale factor the
    global scale must be divided by). Scales below 2**-6 (after the factor) become 0."""
    s = marlin_scales.to(torch.half)
    if bool((s < 0).any()):
        raise ValueError("NVFP4 Marlin needs block scales >= 0 (it drops the sign bit of the "
                         "e4m3 scales); re-quantize the weight with non-negative scales")
    # fit the layout of the fp8 dequantization
    s = s.reshape(-1, 4)[:, [0, 2, 1, 3]].reshape(s.size(0), -1)
    if scale_factor is None:
        scale_factor = nvfp4_scale_factor(s, act_dtype)
    if scale_factor > 1.0:
        s = (s.float() * scale_factor).to(torch.half)
    s = s * (2 ** 7)
    s[s < 2] = 0
    s = s.view(torch.int16) << 1
    s = s.view(torch.float8_e4m3fn)[:, 1::2].contiguous()
    return s, scale_factor


def nvfp4_process_global_scale(dequant_global: torch.Tensor, act_dtype: torch.dtype) -> torch.Tensor:
    """Dequant-direction global scale -> Marlin's (folds the exponent-bias shift of the
    in-register fp4 -> fp16/bf16 conversion: 2**(14 - 7) fp16, 2**(126 - 7) bf16)."""
    if act_dtype not in (torch.half, torch.bfloat16):
        raise TypeError(f"act_dtype must be torch.float16 or torch.bfloat16, got {act_dtype}")
    target_exponent = 5 if act_dtype == torch.half else 8
    exponent_bias = 2 ** (target_exponent - 1) - 2 ** (2 - 1)
    return dequant_global * (2.0 ** (exponent_bias - 7))


def mxfp4_process_scales(marlin_scales: torch.Tensor) -> torch.Tensor:
    """Permuted scales (in the activation dtype) -> float8_e8m0fnu in the fp8-dequant order."""
    s = marlin_scales.reshape(-1, 4)[:, [0, 2, 1, 3]].reshape(marlin_scales.size(0), -1)
    return s.to(torch.float8_e8m0fnu)


# ---------------------------------------------------------------------------
# the prepared weight
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MarlinFP4Weight:
    """An FP4 weight W [N, K] in Marlin's layout, for ``blackwheel.marlin_fp4_gemm``.

    qweight      int32 [padded_k // 16, padded_n * 2]  (repacked e2m1 codes)
    scales       float8_e4m3fn (NVFP4, Marlin's S0E5M3 encoding) or float8_e8m0fnu
                 (MXFP4), [padded_k // group, padded_n], permuted
    global_scale fp32 [1] (NVFP4, with Marlin's exponent-bias shift) or None
    bias         act_dtype [padded_n] permuted, or None
    """
    format: str
    qweight: torch.Tensor
    scales: torch.Tensor
    global_scale: torch.Tensor | None
    bias: torch.Tensor | None
    size_n: int
    size_k: int
    padded_n: int
    padded_k: int
    act_dtype: torch.dtype

    def __post_init__(self):
        # the one CUDA device index of all its tensors, or None (mixed, CPU, meta): lets
        # marlin_fp4_gemm's eager fast path check the weight's devices with one compare
        devs = {t.get_device() if t.is_cuda else None
                for t in (self.qweight, self.scales, self.global_scale, self.bias)
                if isinstance(t, torch.Tensor)}
        object.__setattr__(self, "_device", devs.pop() if len(devs) == 1 else None)

    @property
    def group_size(self) -> int:
        return NVFP4_GROUP if self.format == "nvfp4" else MXFP4_GROUP


def _check_common(packed: torch.Tensor, scales: torch.Tensor, group: int, fmt: str,
                  act_dtype: torch.dtype, bias: torch.Tensor | None) -> tuple[int, int]:
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise TypeError(f"{fmt} weight must be packed uint8 [N, K // 2], got "
                        f"{getattr(packed, 'dtype', type(packed).__name__)}")
    if packed.ndim != 2:
        raise ValueError(f"{fmt} weight must be 2-D [N, K // 2], got shape {tuple(packed.shape)}")
    if act_dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"act_dtype must be torch.float16 or torch.bfloat16, got {act_dtype}")
    n, k = packed.shape[0], packed.shape[1] * 2
    if k % group:
        raise ValueError(f"{fmt}: K ({k}) must be a multiple of the group size {group}")
    if not isinstance(scales, torch.Tensor) or tuple(scales.shape) != (n, k // group):
        raise ValueError(f"{fmt} scales must have shape [N, K // {group}] = [{n}, {k // group}], "
                         f"got {tuple(getattr(scales, 'shape', ()))}")
    if scales.device != packed.device:
        raise ValueError(f"{fmt} scales are on {scales.device} but the weight is on {packed.device}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (n,):
            raise ValueError(f"bias must have shape [N] = [{n}], got {tuple(getattr(bias, 'shape', ()))}")
    return n, k


def _prepare_bias(bias: torch.Tensor | None, n: int, padded_n: int, act_dtype: torch.dtype) -> torch.Tensor | None:
    if bias is None:
        return None
    b = bias.to(act_dtype)
    if padded_n != n:
        b = torch.nn.functional.pad(b, (0, padded_n - n))
    return permute_bias(b)


def nvfp4_marlin_scales(block_scales: torch.Tensor, global_scale: torch.Tensor | float, size_n: int, size_k: int,
                        padded_n: int, padded_k: int, act_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """e4m3 block scales [N, K // 16] + vLLM-convention global scale -> (Marlin scales,
    Marlin global scale fp32 [1]). Pure torch."""
    if block_scales.dtype == torch.uint8:
        block_scales = block_scales.view(torch.float8_e4m3fn)
    if block_scales.dtype != torch.float8_e4m3fn:
        raise TypeError(f"NVFP4 block scales must be float8_e4m3fn, got {block_scales.dtype}")
    gs = torch.as_tensor(global_scale, dtype=torch.float32, device=block_scales.device).reshape(-1)
    if gs.numel() != 1 or not bool(torch.isfinite(gs).all()) or float(gs[0]) <= 0:
        raise ValueError("NVFP4 global_scale must be one finite value > 0 "
                         "(vLLM convention: W ~= e2m1 * block_scale / global_scale)")
    s = block_scales.T.contiguous().to(act_dtype)                     # [K // 16, N]
    s = pad_scales(s, size_n, padded_n, size_k // NVFP4_GROUP, padded_k // NVFP4_GROUP)
    s = permute_scales(s, padded_k, padded_n, NVFP4_GROUP)
    s, factor = nvfp4_process_scales(s, act_dtype)
    g = nvfp4_process_global_scale(1.0 / gs, act_dtype) / factor
    if not bool(torch.isfinite(g).all()):
        raise ValueError(f"NVFP4 global scale {float(gs[0])} is out of range for the Marlin {act_dtype} path")
    return s, g.to(torch.float32)


def mxfp4_marlin_scales(scales: torch.Tensor, size_n: int, size_k: int, padded_n: int, padded_k: int,
                        act_dtype: torch.dtype) -> torch.Tensor:
    """e8m0 scales [N, K // 32] -> Marlin scales (float8_e8m0fnu). Pure torch."""
    if scales.dtype == torch.uint8:
        scales = scales.view(torch.float8_e8m0fnu)
    if scales.dtype != torch.float8_e8m0fnu:
        raise TypeError(f"MXFP4 scales must be float8_e8m0fnu (or its uint8 bytes), got {scales.dtype}")
    b = scales.view(torch.uint8)
    if bool((b == 255).any()):
        raise ValueError("MXFP4 scales contain NaN (e8m0 byte 255)")
    s = scales.T.contiguous().to(act_dtype)                           # [K // 32, N]
    s = pad_scales(s, size_n, padded_n, size_k // MXFP4_GROUP, padded_k // MXFP4_GROUP)
    # zero padding converts to e8m0 byte 0 (2**-127): the padded codes are 0 anyway
    s = permute_scales(s, padded_k, padded_n, MXFP4_GROUP)
    return mxfp4_process_scales(s)


def gptq_marlin_repack(q: torch.Tensor, size_k: int, size_n: int) -> torch.Tensor:
    """4-bit GPTQ-layout int32 [K // 8, N] -> Marlin layout int32 [K // 16, 2 * N]
    (K % 16 == 0, N % 64 == 0). Used by blackwheel.marlin_fp4.prepare_*."""
    _tensor(q, "q")
    _dtype(q, "q", (torch.int32,))
    if tuple(q.shape) != (size_k // 8, size_n) or size_k % 16 or size_n % 64:
        raise ValueError(f"q must be int32 [K // 8, N] with K % 16 == 0 and N % 64 == 0; got {tuple(q.shape)} "
                         f"for K={size_k}, N={size_n} (pad with blackwheel.marlin_fp4.padded_nk)")
    device = _same_cuda_device("q", q)
    op = _op("gptq_marlin_repack", device)
    return op(q.contiguous(), size_k, size_n, 4, False)


def _repack(packed: torch.Tensor, size_n: int, size_k: int, padded_n: int, padded_k: int) -> torch.Tensor:
    q = pad_gptq_qweight(to_gptq_layout(packed), size_n, size_k, padded_n, padded_k)
    return gptq_marlin_repack(q, padded_k, padded_n)


def prepare_nvfp4_weight(packed: torch.Tensor, block_scales: torch.Tensor, global_scale: torch.Tensor | float,
                         act_dtype: torch.dtype, bias: torch.Tensor | None = None) -> MarlinFP4Weight:
    """NVFP4 weight (packed uint8 [N, K//2], e4m3 block scales [N, K//16], vLLM-convention
    global scale) -> MarlinFP4Weight for activations of ``act_dtype`` (fp16 or bf16).
    Tensors must be on the CUDA device the GEMM will run on (the repack is a CUDA op)."""
    n, k = _check_common(packed, block_scales, NVFP4_GROUP, "NVFP4", act_dtype, bias)
    pn, pk = padded_nk(n, k, NVFP4_GROUP)
    scales, g = nvfp4_marlin_scales(block_scales, global_scale, n, k, pn, pk, act_dtype)
    qweight = _repack(packed, n, k, pn, pk)
    return MarlinFP4Weight("nvfp4", qweight, scales, g.to(packed.device), _prepare_bias(bias, n, pn, act_dtype),
                           n, k, pn, pk, act_dtype)


def prepare_mxfp4_weight(packed: torch.Tensor, scales: torch.Tensor, act_dtype: torch.dtype = torch.bfloat16,
                         bias: torch.Tensor | None = None) -> MarlinFP4Weight:
    """MXFP4 weight (packed uint8 [N, K//2], e8m0 scales [N, K//32]) -> MarlinFP4Weight
    for bf16 activations (vLLM 0.33 builds MXFP4 Marlin kernels for bf16 only)."""
    if act_dtype == torch.float16:
        raise TypeError("MXFP4 Marlin kernels exist for bf16 activations only: use act_dtype=torch.bfloat16 "
                        "(and cast the activations to bf16)")
    n, k = _check_common(packed, scales, MXFP4_GROUP, "MXFP4", act_dtype, bias)
    pn, pk = padded_nk(n, k, MXFP4_GROUP)
    s = mxfp4_marlin_scales(scales, n, k, pn, pk, act_dtype)
    qweight = _repack(packed, n, k, pn, pk)
    return MarlinFP4Weight("mxfp4", qweight, s, None, _prepare_bias(bias, n, pn, act_dtype),
                           n, k, pn, pk, act_dtype)


def make_workspace(device: torch.device | str, sms: int | None = None) -> torch.Tensor:
    """Zeroed int32 locks, one per possible thread block (SMs x 4). Marlin resets
    them after each call, so calls ordered on one stream can share one (and a CUDA
    graph can keep using the one it captured)."""
    device = torch.device(device)
    if sms is None:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
    return torch.zeros(sms * MAX_BLOCKS_PER_SM, dtype=torch.int32, device=device)


# ---------------------------------------------------------------------------
# call heuristics (vLLM 0.33 marlin_utils.should_use_atomic_add_reduce; its
# apply_fp4_marlin_linear passes use_fp32_reduce=True and no thread-block sizes,
# so marlin.cu picks thread_k/thread_n itself, as it does for us)
# ---------------------------------------------------------------------------

ATOMIC_ADD_MAX_N = 2048    # vLLM: atomicAdd only pays off when N is small ...
ATOMIC_ADD_MIN_K = 2048    # ... and K is large (many K-slices to reduce)


def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    return v not in ("0", "false", "False", "no", "off")


# Whether marlin_fp4_gemm applies the atomic-add reduce where the gate below allows
# it. Measured both ways at decode shapes (H200, docs/results/h200-2026-12-02-issue13):
# where the gate says yes (N < 2048, K >= 2048: Llama-8B k/v 1024x4096, gpt-oss k/v
# 512x2880) atomic add is 2.2-4.8x faster (12.4 -> 5.1 us, 26.5 -> 5.6 us at M=1);
# elsewhere marlin.cu does not use it and the times are equal. But it adds the K-split
# partials in bf16 in the output: with it on, 2 smoke cases (M=16 K=4096 N=1024 bf16,
# NVFP4 and MXFP4) missed the fp32-reduce tolerance (4-12 of 16384 elements, max rel
# 0.9 %). So off by default, as in vLLM 0.33 (VLLM_MARLIN_USE_ATOMIC_ADD=0);
# BLACKWHEEL_MARLIN_ATOMIC_ADD=1 (read once, at import) or use_atomic_add=True per
# call turns it on.
ATOMIC_ADD_DEFAULT = _env_flag("BLACKWHEEL_MARLIN_ATOMIC_ADD", False)


def should_use_atomic_add(m: int, n: int, k: int, capability_major: int, act_dtype: torch.dtype) -> bool:
    """vLLM 0.33's gate for Marlin's atomic-add reduce (padded N and K): only when N is
    small and K large, and not for bf16 before sm_90 (no native bf16 atomicAdd).
    marlin.cu itself further restricts it to ceil(M / 64) * N <= 2048. Pure."""
    if n >= ATOMIC_ADD_MAX_N or k < ATOMIC_ADD_MIN_K:
        return False
    if capability_major < 9 and act_dtype == torch.bfloat16:
        return False
    return True
