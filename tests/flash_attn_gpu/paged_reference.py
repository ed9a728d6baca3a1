"""Paged KV caches from ragged sequences, and a plain-torch reference (float32) for
varlen attention over them: independent of FlashAttention (einsum + masked softmax),
FA's conventions (bottom-right causal alignment, window [i + sk - sq - left,
i + sk - sq + right], softcap tanh, GQA by head groups). Used by the flash_attn and
the vllm GPU tests (tests/flash_attn_gpu, tests/vllm_gpu)."""
from __future__ import annotations

import math

import torch


def paged_cache(seqlens_k, block_size, heads_k, dim, dtype, device="cuda", seed=0):
    """(k_cache, v_cache, block_table, ks, vs): the sequences' keys/values at shuffled
    pages of a (num_blocks, block_size, heads_k, dim) cache (unused pages hold NaN, so a
    wrong page shows), the int32 block table, and the contiguous per-sequence k/v."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    blocks = [max(1, (s + block_size - 1) // block_size) for s in seqlens_k]
    num_blocks = sum(blocks) + 3
    perm = torch.randperm(num_blocks, generator=g).tolist()
    k_cache = torch.full((num_blocks, block_size, heads_k, dim), float("nan"), dtype=dtype)
    v_cache = torch.full_like(k_cache, float("nan"))
    table = torch.zeros((len(seqlens_k), max(blocks)), dtype=torch.int32)
    ks, vs, it = [], [], iter(perm)
    for b, s in enumerate(seqlens_k):
        k = torch.randn((s, heads_k, dim), generator=g).to(dtype)
        v = torch.randn((s, heads_k, dim), generator=g).to(dtype)
        ks.append(k.to(device))
        vs.append(v.to(device))
        for j in range(blocks[b]):
            p = next(it)
            table[b, j] = p
            n = min(block_size, s - j * block_size)
            if n > 0:
                k_cache[p, :n] = k[j * block_size:j * block_size + n]
                v_cache[p, :n] = v[j * block_size:j * block_size + n]
    # entries past each sequence's pages point at a NaN page: never read by a correct kernel
    spare = perm[-1]
    for b in range(len(seqlens_k)):
        table[b, blocks[b]:] = spare
    return (k_cache.to(device), v_cache.to(device), table.to(device), ks, vs)


def ref_one(q, k, v, causal=False, window=(-1, -1), softcap=0.0, scale=None):
    """q (sq, hq, d), k/v (sk, hk, d) -> (out (sq, hq, d) float32, lse (hq, sq) float32)."""
    sq, hq, d = q.shape
    sk, hk = k.shape[0], k.shape[1]
    scale = scale if scale is not None else 1.0 / math.sqrt(d)
    k = k.float().repeat_interleave(hq // hk, dim=1)
    v = v.float().repeat_interleave(hq // hk, dim=1)
    s = torch.einsum("qhd,khd->hqk", q.float(), k) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    row = torch.arange(sq, device=q.device)[:, None] + (sk - sq)
    col = torch.arange(sk, device=q.device)[None, :]
    left, right = window
    if causal:
        right = 0
    mask = torch.zeros(sq, sk, dtype=torch.bool, device=q.device)
    if left >= 0:
        mask |= col < row - left
    if right >= 0:
        mask |= col > row + right
    s = s.masked_fill(mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)                      # (hq, sq); -inf: nothing attended
    p = torch.exp(s - lse[..., None].clamp_min(-1e30))
    p = torch.where(torch.isinf(lse)[..., None], torch.zeros_like(p), p)
    return torch.einsum("hqk,khd->qhd", p, v), lse


def ref_varlen(q, cu_seqlens_q, ks, vs, **kw):
    """q (total_q, hq, d) -> (out float32 (total_q, hq, d), lse float32 (hq, total_q))."""
    outs, lses = [], []
    cu = cu_seqlens_q.tolist()
    for b in range(len(cu) - 1):
        o, l = ref_one(q[cu[b]:cu[b + 1]], ks[b], vs[b], **kw)
        outs.append(o)
        lses.append(l)
    return torch.cat(outs), torch.cat(lses, dim=1)


def max_err(out, ref) -> float:
    return (out.float() - ref).abs().max().item()
