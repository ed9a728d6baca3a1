"""Reference FP4 (e2m1) quantizers in plain torch: NVFP4 and MXFP4.

Written from the formats' definitions, not from the kernels, so that kernel
output can be checked against them.

e2m1 (FP4): 1 sign bit, 2 exponent bits, 1 mantissa bit, no inf/NaN.
  code & 0b0111 -> magnitude {0, 0.5, 1, 1.5, 2, 3, 4, 6}; code & 0b1000 -> sign.

Packing (vLLM / ModelOpt / CUTLASS convention): two e2m1 codes per uint8,
element ``2*i`` in the LOW nibble and element ``2*i+1`` in the HIGH nibble,
i.e. ``byte = code[2i] | code[2i+1] << 4``. FP4 tensors are kept as packed
uint8 ``[..., K // 2]`` (no torch.float4_e2m1fn_x2, which older torch lacks).

NVFP4: groups of 16 along the last dim; one float8_e4m3fn block scale per
group; one fp32 global scale per tensor, in vLLM's convention (the one
``scaled_fp4_quant`` takes): ``x ~= e2m1 * block_scale / global_scale``,
with the default ``global_scale = 448 * 6 / amax(x)`` so the largest block
scale lands on e4m3's maximum (448).

MXFP4 (OCP Microscaling v1.0): groups of 32; one e8m0 scale per group
(a power of two, ``2 ** (byte - 127)``; byte 255 is NaN); ``x ~= e2m1 * scale``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
E2M1_MAX = 6.0
E4M3_MAX = 448.0          # torch.finfo(torch.float8_e4m3fn).max
NVFP4_GROUP = 16
MXFP4_GROUP = 32
E8M0_BIAS = 127
MXFP4_EMAX = 2            # exponent of e2m1's largest power of two (4 = 2**2), OCP MX "emax_elem"


def _check_float(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{what} must have at least one dimension")


def _check_finite(x: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} has inf/NaN values; FP4 formats cannot represent them")


# ---------------------------------------------------------------------------
# e2m1 codes
# ---------------------------------------------------------------------------

def e2m1_encode(x: torch.Tensor) -> torch.Tensor:
    """fp tensor -> uint8 e2m1 codes (0..15), round to nearest, ties to even
    (the even code, i.e. mantissa bit 0), saturating at +-6. The sign of x is
    kept, also for values that round to zero (-0 -> code 8), as the hardware
    conversion (cvt.rn.satfinite.e2m1x2.f32) does."""
    xf = x.float()
    mag = xf.abs().clamp(max=E2M1_MAX)
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=x.device)
    dist = (mag.unsqueeze(-1) - table).abs()                      # [..., 8]
    nearest = dist == dist.amin(dim=-1, keepdim=True)
    odd = (torch.arange(8, device=x.device) & 1).to(torch.int64)  # mantissa bit of each code
    # among the nearest codes prefer the even one (a tie has exactly one even code)
    key = torch.where(nearest, odd, torch.full_like(odd, 2))
    code = key.argmin(dim=-1).to(torch.uint8)
    sign = torch.signbit(xf).to(torch.uint8) << 3
    return code | sign


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """uint8 e2m1 codes (0..15) -> float32 values."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"e2m1 codes must be uint8, got {codes.dtype}")
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    mag = table[(codes & 0x7).long()]
    return torch.where((codes & 0x8).bool(), -mag, mag)


def pack_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes [..., K] -> packed uint8 [..., K // 2]; element 2i in the low
    nibble, 2i+1 in the high nibble."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"e2m1 codes must be uint8, got {codes.dtype}")
    if codes.shape[-1] % 2:
        raise ValueError(f"last dim must be even to pack two e2m1 codes per byte, got {codes.shape[-1]}")
    if bool((codes > 0xF).any()):
        raise ValueError("e2m1 codes must be in 0..15")
    lo = codes[..., 0::2]
    hi = codes[..., 1::2]
    return lo | (hi << 4)


def unpack_e2m1(packed: torch.Tensor) -> torch.Tensor:
    """packed uint8 [..., K // 2] -> uint8 codes [..., K] (inverse of pack_e2m1)."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed FP4 must be uint8, got {packed.dtype}")
    lo = packed & 0xF
    hi = packed >> 4
    return torch.stack((lo, hi), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


# ---------------------------------------------------------------------------
# NVFP4
# ---------------------------------------------------------------------------

@dataclass
class NVFP4Tensor:
    """packed: uint8 [..., K//2]; block_scales: float8_e4m3fn [..., K//16] (linear
    layout, row-major); global_scale: fp32 0-dim tensor (x ~= e2m1 * block_scale / global_scale)."""
    packed: torch.Tensor
    block_scales: torch.Tensor
    global_scale: torch.Tensor

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_nvfp4(self.packed, self.block_scales, self.global_scale, dtype)


def nvfp4_global_scale(x: torch.Tensor) -> torch.Tensor:
    """vLLM's per-tensor scale ``448 * 6 / amax(x)`` (fp32, 0-dim); 1.0 for an all-zero x."""
    _check_float(x, "x")
    amax = x.detach().float().abs().amax()
    return torch.where(amax > 0, (E4M3_MAX * E2M1_MAX) / amax.clamp(min=torch.finfo(torch.float32).tiny),
                       torch.ones_like(amax))


def quantize_nvfp4(x: torch.Tensor, global_scale: torch.Tensor | float | None = None) -> NVFP4Tensor:
    """Quantize the last dim of x (fp16/bf16/fp32, K % 16 == 0) to NVFP4.

    Per group of 16: ``block_scale = e4m3(global_scale * amax / 6)`` (saturated at
    448, round to nearest even); values ``x * global_scale / block_scale`` are
    clamped to +-6 and rounded to e2m1. A block whose scale is 0 (all-zero, or
    too small for e4m3 after the global scale) is stored as zeros.
    """
    _check_float(x, "x")
    _check_finite(x, "x")
    k = x.shape[-1]
    if k % NVFP4_GROUP:
        raise ValueError(f"NVFP4 needs the last dim to be a multiple of {NVFP4_GROUP}, got {k}")
    gs = nvfp4_global_scale(x) if global_scale is None else torch.as_tensor(global_scale, dtype=torch.float32)
    gs = gs.to(device=x.device, dtype=torch.float32).reshape(())
    if not bool(torch.isfinite(gs)) or float(gs) <= 0:
        raise ValueError(f"global_scale must be finite and > 0, got {float(gs)}")
    xf = x.float().reshape(*x.shape[:-1], k // NVFP4_GROUP, NVFP4_GROUP)
    amax = xf.abs().amax(dim=-1)
    scale = (gs * amax / E2M1_MAX).clamp(max=E4M3_MAX).to(torch.float8_e4m3fn)
    sf = scale.float()
    # multiplier taking x to the e2m1 grid: global_scale / block_scale (0 for a zero scale)
    mult = torch.where(sf > 0, gs / sf.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(sf))
    q = (xf * mult.unsqueeze(-1)).clamp(-E2M1_MAX, E2M1_MAX)
    codes = e2m1_encode(q).reshape(x.shape)
    return NVFP4Tensor(pack_e2m1(codes), scale, gs)


def dequantize_nvfp4(packed: torch.Tensor, block_scales: torch.Tensor, global_scale: torch.Tensor | float,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """packed uint8 [..., K//2] + e4m3 scales [..., K//16] (linear layout) -> [..., K]."""
    vals = e2m1_decode(unpack_e2m1(packed))
    k = vals.shape[-1]
    if block_scales.shape[-1] * NVFP4_GROUP != k or block_scales.shape[:-1] != vals.shape[:-1]:
        raise ValueError(f"block_scales {tuple(block_scales.shape)} do not match packed "
                         f"{tuple(packed.shape)} (need [..., K/16] for K = {k})")
    sf = block_scales.view(torch.float8_e4m3fn).float() if block_scales.dtype == torch.uint8 \
        else block_scales.float()
    gs = torch.as_tensor(global_scale, dtype=torch.float32, device=packed.device).reshape(())
    out = vals.reshape(*vals.shape[:-1], k // NVFP4_GROUP, NVFP4_GROUP) * (sf / gs).unsqueeze(-1)
    return out.reshape(vals.shape).to(dtype)


# ---------------------------------------------------------------------------
# MXFP4
# ---------------------------------------------------------------------------

@dataclass
class MXFP4Tensor:
    """packed: uint8 [..., K//2]; scales: float8_e8m0fnu [..., K//32]; x ~= e2m1 * 2**(byte-127)."""
    packed: torch.Tensor
    scales: torch.Tensor

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_mxfp4(self.packed, self.scales, dtype)


def floor_log2(x: torch.Tensor) -> torch.Tensor:
    """Exact floor(log2(x)) for finite x > 0 (int32), via frexp (no log rounding)."""
    _, e = torch.frexp(x.float())
    return e.to(torch.int32) - 1


def mxfp4_scale_exponent(amax: torch.Tensor, rounding: str = "floor") -> torch.Tensor:
    """The shared exponent (int32) of an MX block with absolute maximum ``amax``.

    rounding="floor" (OCP MX v1.0, 6.3): ``floor(log2(amax)) - 2``; values up to
      ``amax`` may exceed 6 * scale (by < 8/6) and saturate at 6.
    rounding="ceil": the smallest e with ``6 * 2**e >= amax`` (nothing saturates).
    All-zero blocks get exponent 0 (scale 1.0: any scale represents zeros exactly,
    and 1.0 stays inside the fp16 range the Marlin fp16 path converts scales to).
    The result is clamped to e8m0's range [-127, 127].
    """
    a = amax.float()
    pos = a > 0
    safe = torch.where(pos, a, torch.ones_like(a))
    fl = floor_log2(safe)
    if rounding == "floor":
        e = fl - MXFP4_EMAX
    elif rounding == "ceil":
        e = fl - MXFP4_EMAX
        # 6 * 2**e == 1.5 * 2**fl: bump when amax lies above it (exact, power-of-two products)
        bump = safe > torch.ldexp(torch.full_like(safe, 1.5), fl)
        e = e + bump.to(torch.int32)
    else:
        raise ValueError(f"rounding must be 'floor' or 'ceil', got {rounding!r}")
    e = torch.where(pos, e, torch.zeros_like(e))
    return e.clamp(-E8M0_BIAS, E8M0_BIAS)


def e8m0_from_exponent(e: torch.Tensor) -> torch.Tensor:
    """int exponent in [-127, 127] -> torch.float8_e8m0fnu (byte = e + 127)."""
    return (e.to(torch.int32) + E8M0_BIAS).to(torch.uint8).view(torch.float8_e8m0fnu)


def e8m0_to_float(s: torch.Tensor) -> torch.Tensor:
    """float8_e8m0fnu (or its uint8 bytes) -> float32 2**(byte-127); byte 255 -> NaN."""
    b = s.view(torch.uint8) if s.dtype != torch.uint8 else s
    v = torch.ldexp(torch.ones(b.shape, dtype=torch.float32, device=b.device), b.to(torch.int32) - E8M0_BIAS)
    return torch.where(b == 255, torch.full_like(v, float("nan")), v)


def quantize_mxfp4(x: torch.Tensor, rounding: str = "floor") -> MXFP4Tensor:
    """Quantize the last dim of x (K % 32 == 0) to MXFP4 (see mxfp4_scale_exponent)."""
    _check_float(x, "x")
    _check_finite(x, "x")
    k = x.shape[-1]
    if k % MXFP4_GROUP:
        raise ValueError(f"MXFP4 needs the last dim to be a multiple of {MXFP4_GROUP}, got {k}")
    xf = x.float().reshape(*x.shape[:-1], k // MXFP4_GROUP, MXFP4_GROUP)
    e = mxfp4_scale_exponent(xf.abs().amax(dim=-1), rounding)
    q = torch.ldexp(xf, -e.unsqueeze(-1)).clamp(-E2M1_MAX, E2M1_MAX)   # exact division by 2**e
    codes = e2m1_encode(q).reshape(x.shape)
    return MXFP4Tensor(pack_e2m1(codes), e8m0_from_exponent(e))


def dequantize_mxfp4(packed: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    vals = e2m1_decode(unpack_e2m1(packed))
    k = vals.shape[-1]
    if scales.shape[-1] * MXFP4_GROUP != k or scales.shape[:-1] != vals.shape[:-1]:
        raise ValueError(f"scales {tuple(scales.shape)} do not match packed {tuple(packed.shape)} "
                         f"(need [..., K/32] for K = {k})")
    s = e8m0_to_float(scales)
    out = vals.reshape(*vals.shape[:-1], k // MXFP4_GROUP, MXFP4_GROUP) * s.unsqueeze(-1)
    return out.reshape(vals.shape).to(dtype)


# ---------------------------------------------------------------------------
# 128x4 swizzled scale-factor layout (what scaled_fp4_quant writes and
# cutlass_scaled_fp4_mm reads; PTX ISA "tcgen05 scale factor layout 4x")
# ---------------------------------------------------------------------------

def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def swizzled_scale_shape(rows: int, k: int, group: int = NVFP4_GROUP) -> tuple[int, int]:
    """Shape of the swizzled block-scale matrix for a [rows, k] operand."""
    return _round_up(rows, 128), _round_up(k // group, 4)


def swizzle_scales(scales: torch.Tensor) -> torch.Tensor:
    """Linear [rows, cols] scales -> padded, 128x4-swizzled [round_up(rows,128), round_up(cols,4)].

    Within a 128-row x 4-column tile the bytes are stored in the order
    (row % 32, (row // 32) % 4, col % 4); tiles are ordered row-tile major,
    then column tile. Padding is zero.
    """
    if scales.ndim != 2:
        raise ValueError(f"scales must be 2-D [rows, K/16], got shape {tuple(scales.shape)}")
    rows, cols = scales.shape
    b = scales.view(torch.uint8) if scales.dtype != torch.uint8 else scales
    pr, pc = _round_up(rows, 128), _round_up(cols, 4)
    padded = torch.zeros(pr, pc, dtype=torch.uint8, device=scales.device)
    padded[:rows, :cols] = b
    # [mt, 4(row//32), 32(row%32), kt, 4(col)] -> [mt, kt, 32, 4, 4]
    t = padded.reshape(pr // 128, 4, 32, pc // 4, 4).permute(0, 3, 2, 1, 4)
    out = t.reshape(pr, pc).contiguous()
    return out.view(scales.dtype) if scales.dtype != torch.uint8 else out


def unswizzle_scales(swizzled: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of swizzle_scales, cropped to [rows, cols]."""
    pr, pc = swizzled.shape
    if pr % 128 or pc % 4 or pr < rows or pc < cols:
        raise ValueError(f"swizzled scales {tuple(swizzled.shape)} are not a 128x4-padded layout "
                         f"for [{rows}, {cols}]")
    b = swizzled.view(torch.uint8) if swizzled.dtype != torch.uint8 else swizzled
    t = b.reshape(pr // 128, pc // 4, 32, 4, 4).permute(0, 3, 2, 1, 4)
    out = t.reshape(pr, pc)[:rows, :cols].contiguous()
    return out.view(swizzled.dtype) if swizzled.dtype != torch.uint8 else out
