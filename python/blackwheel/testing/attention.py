"""Reference attention forward in plain torch (explicit softmax in float64).

Layout and conventions of FlashAttention-2's ``flash_attn_func``:
  q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D], Hq % Hkv == 0 (GQA/MQA: query head h
  reads kv head h // (Hq // Hkv)); softmax_scale defaults to 1/sqrt(D).
  causal: the mask is aligned to the bottom-right corner (flash-attn >= 2.1):
  query i may attend key j iff j <= i + Sk - Sq. (torch SDPA's is_causal is
  top-left aligned, which differs when Sq != Sk.)
  softmax_lse [B, Hq, Sq] = natural-log logsumexp of the scaled scores.
  A query row with no visible key (causal, Sq > Sk) has output 0 and lse +inf,
  as FlashAttention-2 writes it.
"""
from __future__ import annotations

import math

import torch


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
                        causal: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (out fp32 [B, Sq, Hq, D], lse fp32 [B, Hq, Sq], abs_out fp32 [B, Sq, Hq, D]).

    abs_out = P @ |V| (P the softmax probabilities) bounds |sum_j p_j v_j| and
    scales the error a kernel makes by rounding P or V to 16 bits; tolerances
    are built from it.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError("q, k, v must be 4-D [batch, seqlen, heads, head_dim]")
    b, sq, hq, d = q.shape
    hk = k.shape[2]
    if hq % hk:
        raise ValueError(f"query heads ({hq}) must be a multiple of kv heads ({hk})")
    sk = k.shape[1]
    scale = 1.0 / math.sqrt(d) if softmax_scale is None else float(softmax_scale)
    qd = q.double().transpose(1, 2)                                   # [B, Hq, Sq, D]
    kd = k.double().transpose(1, 2).repeat_interleave(hq // hk, dim=1)
    vd = v.double().transpose(1, 2).repeat_interleave(hq // hk, dim=1)
    s = (qd @ kd.transpose(-1, -2)) * scale                           # [B, Hq, Sq, Sk]
    if causal:
        i = torch.arange(sq, device=q.device).unsqueeze(1)
        j = torch.arange(sk, device=q.device).unsqueeze(0)
        s = s.masked_fill(j > i + (sk - sq), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)                                  # -inf on fully masked rows
    empty = torch.isneginf(lse)
    p = torch.exp(s - torch.where(empty, torch.zeros_like(lse), lse).unsqueeze(-1))
    p = torch.where(empty.unsqueeze(-1), torch.zeros_like(p), p)
    out = (p @ vd).transpose(1, 2)
    abs_out = (p @ vd.abs()).transpose(1, 2)
    lse = torch.where(empty, torch.full_like(lse, float("inf")), lse)
    return out.float().contiguous(), lse.float(), abs_out.float().contiguous()


def sdpa_math_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
                        causal: bool = False) -> torch.Tensor:
    """torch SDPA with the math backend in fp32 (top-left causal mask, so only
    comparable with attention_reference when Sq == Sk or not causal).
    Returns fp32 [B, Sq, Hq, D]."""
    hq, hk = q.shape[2], k.shape[2]
    qt = q.float().transpose(1, 2)
    kt = k.float().transpose(1, 2).repeat_interleave(hq // hk, dim=1)
    vt = v.float().transpose(1, 2).repeat_interleave(hq // hk, dim=1)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        ctx = sdpa_kernel([SDPBackend.MATH])
    except ImportError:  # pragma: no cover - very old torch
        import contextlib
        ctx = contextlib.nullcontext()
    with ctx:
        out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=softmax_scale)
    return out.transpose(1, 2).contiguous()
