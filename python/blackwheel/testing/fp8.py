"""Reference FP8 (float8_e4m3fn) quantization and the scaled-GEMM reference.

Scales follow vLLM's cutlass_scaled_mm convention: ``x ~= q.float() * scale``.
  per-tensor:  scale shape [1]
  per-token:   A [M, K] -> scale [M, 1]  (amax over K of each row)
  per-channel: B [K, N] -> scale [1, N]  (amax over K of each column)
"""
from __future__ import annotations

import torch

E4M3_MAX = 448.0
GRANULARITIES = ("tensor", "token", "channel")


def fp8_scale(x: torch.Tensor, granularity: str = "tensor") -> torch.Tensor:
    """fp32 scale amax / 448 (amax 0 -> scale 1.0, so zeros stay zeros).

    granularity: "tensor" -> [1]; "token" (rows of a 2-D x) -> [M, 1];
    "channel" (columns of a 2-D x) -> [1, N].
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point torch.Tensor")
    xf = x.detach().float().abs()
    if granularity == "tensor":
        amax = xf.amax().reshape(1)
    elif granularity in ("token", "channel"):
        if x.ndim != 2:
            raise ValueError(f"per-{granularity} scales need a 2-D tensor, got shape {tuple(x.shape)}")
        amax = xf.amax(dim=1, keepdim=True) if granularity == "token" else xf.amax(dim=0, keepdim=True)
    else:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not bool(torch.isfinite(amax).all()):
        raise ValueError("x has inf/NaN values; FP8 quantization needs finite input")
    return torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))


def quantize_fp8(x: torch.Tensor, scale: torch.Tensor | None = None,
                 granularity: str = "tensor") -> tuple[torch.Tensor, torch.Tensor]:
    """x -> (q float8_e4m3fn, scale fp32); q = e4m3(clamp(x / scale, +-448)), round to
    nearest even. ``scale`` (broadcastable to x) overrides the computed one."""
    s = fp8_scale(x, granularity) if scale is None else scale.to(device=x.device, dtype=torch.float32)
    q = (x.float() / s).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, s


def dequantize_fp8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q float8_e4m3fn * scale -> float32."""
    if q.dtype != torch.float8_e4m3fn:
        raise TypeError(f"q must be float8_e4m3fn, got {q.dtype}")
    return q.float() * scale.float()


def scaled_mm_reference(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                        bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 ``(a * scale_a) @ (b * scale_b) + bias`` for e4m3 a [M, K], b [K, N], and the
    fp32 magnitude sum ``|a * scale_a| @ |b * scale_b|`` (the scale of the
    accumulation error, used to set tolerances). Products of e4m3 values are
    exact in fp32; only the summation order differs from a kernel."""
    a32 = dequantize_fp8(a, scale_a.reshape(-1, 1) if scale_a.numel() > 1 else scale_a.reshape(()))
    b32 = dequantize_fp8(b, scale_b.reshape(1, -1) if scale_b.numel() > 1 else scale_b.reshape(()))
    # float64 matmul: exact enough to be the truth, and never TF32
    out = (a32.double() @ b32.double()).float()
    if bias is not None:
        out = out + bias.float()
    return out, (a32.double().abs() @ b32.double().abs()).float()
