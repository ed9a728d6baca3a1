"""fwd, varlen_fwd, bwd, varlen_bwd, fwd_kvcache: upstream's flash_attn_2_cuda API.

Same signatures, argument order, checks, error messages and return values as
flash-attn 2.8.3's csrc/flash_attn/flash_api.cpp (mha_fwd, mha_varlen_fwd,
mha_bwd, mha_varlen_bwd, mha_fwd_kvcache), so upstream's flash_attn_interface.py
runs unchanged. Tensor bookkeeping is done here with torch; the kernels run in
torch.ops.flash_attn_2_cuda.mha_fwd / mha_bwd (LibTorch stable ABI).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import _decide, _library, _paging

Tensor = torch.Tensor
_I64_WRAP = 1 << 64


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


def _check_shape(t: Tensor, name: str, *shape: int) -> None:
    _check(tuple(t.shape) == tuple(shape), f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    _check(q.dtype in (torch.float16, torch.bfloat16),
           "FlashAttention only support fp16 and bf16 data type")
    _check(k.dtype == q.dtype, "query and key must have the same dtype")
    _check(v.dtype == q.dtype, "query and value must have the same dtype")
    _library.check_dtype(q.dtype)
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check(t.is_cuda, f"{name} must be on CUDA")
        _check(t.stride(-1) == 1, "Input tensor must have contiguous last dimension")


def _check_int32(t: Tensor, name: str, *shape: int) -> None:
    _check(t.dtype == torch.int32, f"{name} must have dtype int32")
    _check(t.is_cuda, f"{name} must be on CUDA device")
    _check(t.is_contiguous(), f"{name} must be contiguous")
    if shape:
        _check_shape(t, name, *shape)


def _check_alibi(alibi: Optional[Tensor], batch: int, num_heads: int) -> None:
    if alibi is None:
        return
    _check(alibi.dtype == torch.float32, "ALiBi slopes must have dtype fp32")
    _check(alibi.is_cuda, "alibi_slopes must be on CUDA")
    _check(alibi.stride(-1) == 1, "ALiBi slopes tensor must have contiguous last dimension")
    _check(tuple(alibi.shape) in ((num_heads,), (batch, num_heads)),
           "ALiBi slopes must have shape (num_heads) or (batch_size, num_heads)")


def _check_out(out: Tensor, dtype: torch.dtype, *shape: int) -> None:
    _check(out.dtype == dtype, "Output must have the same dtype as inputs")
    _check(out.is_cuda, "out must be on CUDA")
    _check(out.stride(-1) == 1, "Output tensor must have contiguous last dimension")
    _check_shape(out, "out", *shape)


def _philox(gen: Optional[torch.Generator], device: torch.device, batch: int,
            num_heads: int) -> tuple[int, int]:
    """Seed and offset for the dropout mask, taken from torch's CUDA generator and
    advanced as upstream's C++ advances it (philox_cuda_state(b * h * 32)), so
    torch.manual_seed reproduces a run."""
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            "flash_attn: dropout inside CUDA graph capture is not supported by this stable-ABI "
            "build (torch's graph-safe generator state is not part of the stable ABI); "
            "capture with dropout_p=0.0 or run dropout eagerly")
    g = gen if gen is not None else torch.cuda.default_generators[device.index]
    seed = g.initial_seed()
    offset = g.get_offset()
    g.set_offset(offset + _decide.philox_increment(batch, num_heads))
    if seed >= 1 << 63:  # the op takes int64; the kernel reads the same 64 bits unsigned
        seed -= _I64_WRAP
    return seed, offset


def _split_accumulators(q: Tensor, n_splits: int, batch: int, num_heads: int, max_seqlen_q: int,
                        head_size_rounded: int) -> tuple[Optional[Tensor], Optional[Tensor]]:
    if n_splits <= 1:
        return None, None
    opts = dict(dtype=torch.float32, device=q.device)
    return (torch.empty((n_splits, batch, num_heads, max_seqlen_q), **opts),
            torch.empty((n_splits, batch, num_heads, max_seqlen_q, head_size_rounded), **opts))


def _launch_fwd(ops, q, k, v, out, softmax_lse, p, rng_state, *, cu_seqlens_q=None,
                cu_seqlens_k=None, seqused_k=None, leftpad_k=None, block_table=None,
                alibi_slopes=None, k_new=None, v_new=None, rotary_cos=None, rotary_sin=None,
                cache_batch_idx=None, lse_accum=None, out_accum=None, batch, seqlen_q, seqlen_k,
                num_heads, num_heads_k, head_size, total_q=0, p_dropout=0.0, softmax_scale,
                window_left, window_right, softcap, swapped=False, unpadded_lse=False,
                seqlens_k_cumulative=True, rotary_interleaved=False, num_splits=0,
                force_split=False, philox=(0, 0)) -> None:
    ops.mha_fwd(q, k, v, out, softmax_lse, p, rng_state, cu_seqlens_q, cu_seqlens_k, seqused_k,
                leftpad_k, block_table, alibi_slopes, k_new, v_new, rotary_cos, rotary_sin,
                cache_batch_idx, lse_accum, out_accum, batch, seqlen_q, seqlen_k, num_heads,
                num_heads_k, head_size, total_q, float(p_dropout), float(softmax_scale),
                window_left, window_right, float(softcap), swapped, unpadded_lse,
                seqlens_k_cumulative, rotary_interleaved, num_splits, force_split,
                philox[0], philox[1])


# --------------------------------------------------------------------------- fwd
def fwd(q: Tensor, k: Tensor, v: Tensor, out_: Optional[Tensor], alibi_slopes: Optional[Tensor],
        p_dropout: float, softmax_scale: float, is_causal: bool, window_size_left: int,
        window_size_right: int, softcap: float, return_softmax: bool,
        gen_: Optional[torch.Generator]) -> list[Tensor]:
    ops = _library.ops_for(q)
    _check_qkv(q, k, v)
    batch_size, seqlen_q, num_heads, head_size = q.shape
    sizes = q.shape
    seqlen_k, num_heads_k = k.shape[1], k.shape[2]
    _check(batch_size > 0, "batch size must be positive")
    _check(head_size <= 256, "FlashAttention forward only supports head dimension at most 256")
    _check(head_size % 8 == 0, "query, key, value, and out_ must have a head_size that is a multiple of 8")
    _check(num_heads % num_heads_k == 0, "Number of heads in key/value must divide number of heads in query")
    _library.check_head_dim(head_size)
    if softcap > 0.0:
        _check(p_dropout == 0.0, "Softcapping does not support dropout for now")
    window_size_left, window_size_right = _decide.clamp_windows(window_size_left, window_size_right, seqlen_k)
    if seqlen_q == 1 and alibi_slopes is None:
        is_causal = False  # causal=true is the same as causal=false in this case
    if is_causal:
        window_size_right = 0
    swapped = _decide.ngroups_swapped(seqlen_q, num_heads, num_heads_k, window_size_left,
                                      window_size_right, p_dropout, head_size, alibi_slopes is not None)
    ngroups = num_heads // num_heads_k
    if swapped:
        q = q.reshape(batch_size, num_heads_k, ngroups, head_size).transpose(1, 2)
        seqlen_q, num_heads = ngroups, num_heads_k
    _check_shape(q, "q", batch_size, seqlen_q, num_heads, head_size)
    _check_shape(k, "k", batch_size, seqlen_k, num_heads_k, head_size)
    _check_shape(v, "v", batch_size, seqlen_k, num_heads_k, head_size)
    if out_ is not None:
        _check_out(out_, q.dtype, batch_size, sizes[1], sizes[2], head_size)
        out = out_.reshape(batch_size, num_heads_k, ngroups, head_size).transpose(1, 2) if swapped else out_
    else:
        out = torch.empty_like(q)

    seqlen_q_rounded = _decide.round_multiple(seqlen_q, 128)
    seqlen_k_rounded = _decide.round_multiple(seqlen_k, 128)
    softmax_lse = torch.empty((batch_size, num_heads, seqlen_q), dtype=torch.float32, device=q.device)
    if return_softmax:
        _check(p_dropout > 0.0, "return_softmax is only supported when p_dropout > 0.0")
        p = torch.empty((batch_size, num_heads, seqlen_q_rounded, seqlen_k_rounded), dtype=q.dtype, device=q.device)
    else:
        p = torch.empty((0,), dtype=q.dtype, device=q.device)
    n_splits = _decide.num_splits(batch_size, num_heads, head_size, seqlen_k, seqlen_q, p_dropout,
                                  0, _library.num_sms(q))
    lse_accum, out_accum = _split_accumulators(q, n_splits, batch_size, num_heads, seqlen_q,
                                               _decide.head_size_rounded(head_size))
    rng_state = torch.empty((2,), dtype=torch.int64, device=q.device)
    philox = _philox(gen_, q.device, batch_size, num_heads) if p_dropout > 0.0 else (0, 0)
    _check_alibi(alibi_slopes, batch_size, num_heads)

    if seqlen_k > 0:
        _launch_fwd(ops, q, k, v, out, softmax_lse, p if return_softmax else None, rng_state,
                    alibi_slopes=alibi_slopes, lse_accum=lse_accum, out_accum=out_accum,
                    batch=batch_size, seqlen_q=seqlen_q, seqlen_k=seqlen_k, num_heads=num_heads,
                    num_heads_k=num_heads_k, head_size=head_size, p_dropout=p_dropout,
                    softmax_scale=softmax_scale, window_left=window_size_left,
                    window_right=window_size_right, softcap=softcap, num_splits=n_splits,
                    philox=philox)
    else:
        out.zero_()
        softmax_lse.fill_(float("inf"))
    if swapped:
        out = out.transpose(1, 2).reshape(batch_size, 1, num_heads_k * seqlen_q, head_size)
        softmax_lse = softmax_lse.reshape(batch_size, num_heads_k * seqlen_q, 1)
    return [out, softmax_lse, p, rng_state]


# --------------------------------------------------------------------------- varlen_fwd
def varlen_fwd(q: Tensor, k: Tensor, v: Tensor, out_: Optional[Tensor], cu_seqlens_q: Tensor,
               cu_seqlens_k: Tensor, seqused_k: Optional[Tensor], leftpad_k_: Optional[Tensor],
               block_table_: Optional[Tensor], alibi_slopes: Optional[Tensor], max_seqlen_q: int,
               max_seqlen_k: int, p_dropout: float, softmax_scale: float, zero_tensors: bool,
               is_causal: bool, window_size_left: int, window_size_right: int, softcap: float,
               return_softmax: bool, gen_: Optional[torch.Generator]) -> list[Tensor]:
    ops = _library.ops_for(q)
    _check_qkv(q, k, v)
    _check(cu_seqlens_q.dtype == torch.int32, "cu_seqlens_q must have dtype int32")
    _check(cu_seqlens_k.dtype == torch.int32, "cu_seqlens_k must have dtype int32")
    _check(cu_seqlens_q.is_cuda and cu_seqlens_k.is_cuda, "cu_seqlens_q/cu_seqlens_k must be on CUDA")
    paged_kv = block_table_ is not None
    if paged_kv:
        _check(block_table_.is_cuda, "block_table must be on CUDA")
        _check(block_table_.dtype == torch.int32, "block_table must have dtype torch.int32")
        _check(block_table_.stride(-1) == 1, "block_table must have contiguous last dimension")
    _check(cu_seqlens_q.is_contiguous(), "cu_seqlens_q must be contiguous")
    _check(cu_seqlens_k.is_contiguous(), "cu_seqlens_k must be contiguous")

    sizes = q.shape
    batch_size = cu_seqlens_q.numel() - 1
    num_heads, head_size = sizes[1], sizes[2]
    num_heads_k = k.shape[2] if paged_kv else k.shape[1]
    if softcap > 0.0:
        _check(p_dropout == 0.0, "Softcapping does not support dropout for now")
    max_num_blocks_per_seq = block_table_.shape[1] if paged_kv else 0
    num_blocks = k.shape[0] if paged_kv else 0
    page_block_size = k.shape[1] if paged_kv else 1
    if paged_kv:  # any multiple of 16 (patch 0004), not upstream's multiples of 256
        _paging.check_page_block_size(page_block_size, head_size, appends=False)
    if max_seqlen_q == 1 and alibi_slopes is None:
        is_causal = False
    if is_causal:
        window_size_right = 0
    cu_q = cu_seqlens_q
    swapped = _decide.ngroups_swapped(max_seqlen_q, num_heads, num_heads_k, window_size_left,
                                      window_size_right, p_dropout, head_size, alibi_slopes is not None)
    ngroups = num_heads // num_heads_k
    if swapped:
        q = (q.reshape(batch_size, num_heads_k, ngroups, head_size).transpose(1, 2)
             .reshape(batch_size * ngroups, num_heads_k, head_size))
        max_seqlen_q, num_heads, cu_q = ngroups, num_heads_k, None
    total_q = q.shape[0]
    _check(batch_size > 0, "batch size must be positive")
    _check(head_size <= 256, "FlashAttention forward only supports head dimension at most 256")
    _check(head_size % 8 == 0, "query, key, value, and out_ must have a head_size that is a multiple of 8")
    _check(num_heads % num_heads_k == 0, "Number of heads in key/value must divide number of heads in query")
    _library.check_head_dim(head_size)
    window_size_left, window_size_right = _decide.clamp_windows(window_size_left, window_size_right, max_seqlen_k)

    _check_shape(q, "q", total_q, num_heads, head_size)
    if not paged_kv:
        total_k = k.shape[0]
        _check_shape(k, "k", total_k, num_heads_k, head_size)
        _check_shape(v, "v", total_k, num_heads_k, head_size)
    else:
        _check_shape(k, "k", num_blocks, page_block_size, num_heads_k, head_size)
        _check_shape(v, "v", num_blocks, page_block_size, num_heads_k, head_size)
        _check_shape(block_table_, "block_table", batch_size, max_num_blocks_per_seq)
    _check_shape(cu_seqlens_q, "cu_seqlens_q", batch_size + 1)
    _check_shape(cu_seqlens_k, "cu_seqlens_k", batch_size + 1)
    if seqused_k is not None:
        _check_int32(seqused_k, "seqused_k", batch_size)

    if out_ is not None:
        _check_out(out_, q.dtype, sizes[0], sizes[1], head_size)
        out = (out_.reshape(batch_size, num_heads_k, ngroups, head_size).transpose(1, 2)
               .reshape(batch_size * ngroups, num_heads_k, head_size)) if swapped else out_
    else:
        out = torch.empty_like(q)

    seqlen_q_rounded = _decide.round_multiple(max_seqlen_q, 128)
    seqlen_k_rounded = _decide.round_multiple(max_seqlen_k, 128)
    softmax_lse = torch.empty((num_heads, total_q), dtype=torch.float32, device=q.device)
    if return_softmax:
        _check(p_dropout > 0.0, "return_softmax is only supported when p_dropout > 0.0")
        p = torch.empty((batch_size, num_heads, seqlen_q_rounded, seqlen_k_rounded), dtype=q.dtype, device=q.device)
    else:
        p = torch.empty((0,), dtype=q.dtype, device=q.device)
    if zero_tensors:
        out.zero_()
        softmax_lse.fill_(float("-inf"))
        if return_softmax:
            p.zero_()

    n_splits, lse_accum, out_accum = 0, None, None
    if swapped:  # split-KV only for decoding
        n_splits = _decide.num_splits(batch_size, num_heads, head_size, max_seqlen_k, max_seqlen_q,
                                      p_dropout, 0, _library.num_sms(q))
        lse_accum, out_accum = _split_accumulators(q, n_splits, batch_size, num_heads, max_seqlen_q,
                                                   _decide.head_size_rounded(head_size))
    if leftpad_k_ is not None:
        _check(not paged_kv, "We don't support Paged KV and leftpad_k running at the same time yet")
        _check_int32(leftpad_k_, "leftpad_k", batch_size)
    rng_state = torch.empty((2,), dtype=torch.int64, device=q.device)
    philox = _philox(gen_, q.device, batch_size, num_heads) if p_dropout > 0.0 else (0, 0)
    _check_alibi(alibi_slopes, batch_size, num_heads)

    if max_seqlen_k > 0:
        _launch_fwd(ops, q, k, v, out, softmax_lse, p if return_softmax else None, rng_state,
                    cu_seqlens_q=cu_q, cu_seqlens_k=cu_seqlens_k, seqused_k=seqused_k,
                    leftpad_k=leftpad_k_, block_table=block_table_, alibi_slopes=alibi_slopes,
                    lse_accum=lse_accum, out_accum=out_accum, batch=batch_size,
                    seqlen_q=max_seqlen_q, seqlen_k=max_seqlen_k, num_heads=num_heads,
                    num_heads_k=num_heads_k, head_size=head_size, total_q=total_q,
                    p_dropout=p_dropout, softmax_scale=softmax_scale, window_left=window_size_left,
                    window_right=window_size_right, softcap=softcap, swapped=swapped,
                    unpadded_lse=True, num_splits=n_splits, force_split=paged_kv, philox=philox)
    else:
        out.zero_()
        softmax_lse.fill_(float("inf"))
    if swapped:
        out = (out.reshape(batch_size, max_seqlen_q, num_heads_k, head_size).transpose(1, 2)
               .reshape(batch_size, num_heads_k * max_seqlen_q, head_size))
        softmax_lse = softmax_lse.reshape(num_heads * max_seqlen_q, batch_size)
    return [out, softmax_lse, p, rng_state]


# --------------------------------------------------------------------------- backward
def _bwd_grads(q, k, v, dq_, dk_, dv_, shape_q, shape_k):
    grads = []
    for name, given, like, shape in (("dq", dq_, q, shape_q), ("dk", dk_, k, shape_k), ("dv", dv_, v, shape_k)):
        if given is not None:
            _check(given.dtype == q.dtype, f"{name} must have the same dtype as q")
            _check(given.is_cuda, f"{name} must be on CUDA")
            _check(given.stride(-1) == 1, f"{name} must have contiguous last dimension")
            _check_shape(given, name, *shape)
            grads.append(given)
        else:
            grads.append(torch.empty_like(like))
    return grads


def _bwd_common_checks(dout, q, k, v, out, softmax_lse, p_dropout, softcap, head_size, num_heads,
                       num_heads_k, batch_size):
    _library.check_backward_built()
    _check_qkv(q, k, v)
    _check(out.dtype == q.dtype, "query and out must have the same dtype")
    _check(dout.dtype == q.dtype, "query and dout must have the same dtype")
    _check(out.is_cuda and dout.is_cuda and softmax_lse.is_cuda, "out, dout and softmax_lse must be on CUDA")
    _check(out.stride(-1) == 1, "out tensor must have contiguous last dimension")
    _check(dout.stride(-1) == 1, "dout tensor must have contiguous last dimension")
    _check(batch_size > 0, "batch size must be positive")
    _check(head_size % 8 == 0, "head_size should be a multiple of 8")
    _check(head_size <= 256, "FlashAttention backward only supports head dimension at most 256")
    _check(num_heads % num_heads_k == 0, "Number of heads in key/value must divide number of heads in query")
    _library.check_head_dim(head_size)
    if softcap > 0.0:
        _check(p_dropout == 0.0, "Softcapping does not support dropout for now")
    why = _decide.bwd_supported(head_size, p_dropout, _library.max_smem_per_block(q))
    _check(why is None, why or "")


def _bwd_rng_state(rng_state, gen_, q, batch_size, num_heads, p_dropout):
    if rng_state is not None:
        return rng_state
    if p_dropout > 0.0:
        seed, offset = _philox(gen_, q.device, batch_size, num_heads)
        return torch.tensor([seed, offset], dtype=torch.int64, device=q.device)
    return torch.empty((2,), dtype=torch.int64, device=q.device)


def bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, softmax_lse: Tensor,
        dq_: Optional[Tensor], dk_: Optional[Tensor], dv_: Optional[Tensor],
        alibi_slopes: Optional[Tensor], p_dropout: float, softmax_scale: float, is_causal: bool,
        window_size_left: int, window_size_right: int, softcap: float, deterministic: bool,
        gen_: Optional[torch.Generator], rng_state: Optional[Tensor]) -> list[Tensor]:
    if is_causal:
        window_size_right = 0
    ops = _library.ops_for(q)
    batch_size, seqlen_q, num_heads, head_size = q.shape
    seqlen_k, num_heads_k = k.shape[1], k.shape[2]
    _bwd_common_checks(dout, q, k, v, out, softmax_lse, p_dropout, softcap, head_size, num_heads,
                       num_heads_k, batch_size)
    seqlen_q_rounded = _decide.round_multiple(seqlen_q, 128)
    d_rounded = _decide.head_size_rounded(head_size)
    window_size_left, window_size_right = _decide.clamp_windows(window_size_left, window_size_right, seqlen_k)
    _check_shape(q, "q", batch_size, seqlen_q, num_heads, head_size)
    _check_shape(k, "k", batch_size, seqlen_k, num_heads_k, head_size)
    _check_shape(v, "v", batch_size, seqlen_k, num_heads_k, head_size)
    _check_shape(out, "out", batch_size, seqlen_q, num_heads, head_size)
    _check_shape(dout, "dout", batch_size, seqlen_q, num_heads, head_size)
    dq, dk, dv = _bwd_grads(q, k, v, dq_, dk_, dv_, (batch_size, seqlen_q, num_heads, head_size),
                            (batch_size, seqlen_k, num_heads_k, head_size))
    f32 = dict(dtype=torch.float32, device=q.device)
    softmax_d = torch.empty((batch_size, num_heads, seqlen_q_rounded), **f32)
    if not deterministic:
        dq_accum = torch.empty((batch_size, seqlen_q_rounded, num_heads, d_rounded), **f32)
    else:
        nsplits = _decide.deterministic_dq_splits(_library.num_sms(q), batch_size, num_heads)
        dq_accum = torch.zeros((nsplits, batch_size, seqlen_q_rounded, num_heads, d_rounded), **f32)
    if num_heads_k != num_heads:  # MQA / GQA
        dk_expanded = torch.empty((batch_size, seqlen_k, num_heads, head_size), dtype=q.dtype, device=q.device)
        dv_expanded = torch.empty((batch_size, seqlen_k, num_heads, head_size), dtype=q.dtype, device=q.device)
    else:
        dk_expanded, dv_expanded = dk, dv
    rng = _bwd_rng_state(rng_state, gen_, q, batch_size, num_heads, p_dropout)
    _check_alibi(alibi_slopes, batch_size, num_heads)
    if seqlen_q > 0:
        ops.mha_bwd(dout, q, k, v, out, softmax_lse, dq, dk_expanded, dv_expanded, dq_accum,
                    softmax_d, None, None, alibi_slopes, rng, batch_size, seqlen_q, seqlen_k,
                    num_heads, num_heads_k, head_size, 0, float(p_dropout), float(softmax_scale),
                    window_size_left, window_size_right, float(softcap), deterministic, False)
    else:
        dk_expanded.zero_()
        dv_expanded.zero_()
        softmax_d.zero_()
    if num_heads_k != num_heads:
        g = num_heads // num_heads_k
        torch.sum(dk_expanded.reshape(batch_size, seqlen_k, num_heads_k, g, head_size), dim=3, out=dk)
        torch.sum(dv_expanded.reshape(batch_size, seqlen_k, num_heads_k, g, head_size), dim=3, out=dv)
    return [dq, dk, dv, softmax_d]


def varlen_bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, softmax_lse: Tensor,
               dq_: Optional[Tensor], dk_: Optional[Tensor], dv_: Optional[Tensor],
               cu_seqlens_q: Tensor, cu_seqlens_k: Tensor, alibi_slopes: Optional[Tensor],
               max_seqlen_q: int, max_seqlen_k: int, p_dropout: float, softmax_scale: float,
               zero_tensors: bool, is_causal: bool, window_size_left: int, window_size_right: int,
               softcap: float, deterministic: bool, gen_: Optional[torch.Generator],
               rng_state: Optional[Tensor]) -> list[Tensor]:
    if is_causal:
        window_size_right = 0
    ops = _library.ops_for(q)
    total_q, num_heads, head_size = q.shape
    batch_size = cu_seqlens_q.numel() - 1
    total_k, num_heads_k = k.shape[0], k.shape[1]
    _check(cu_seqlens_q.dtype == torch.int32, "cu_seqlens_q must have dtype int32")
    _check(cu_seqlens_k.dtype == torch.int32, "cu_seqlens_k must have dtype int32")
    _check(cu_seqlens_q.is_cuda and cu_seqlens_k.is_cuda, "cu_seqlens_q/cu_seqlens_k must be on CUDA")
    _check(cu_seqlens_q.is_contiguous(), "cu_seqlens_q must be contiguous")
    _check(cu_seqlens_k.is_contiguous(), "cu_seqlens_k must be contiguous")
    _bwd_common_checks(dout, q, k, v, out, softmax_lse, p_dropout, softcap, head_size, num_heads,
                       num_heads_k, batch_size)
    d_rounded = _decide.head_size_rounded(head_size)
    window_size_left, window_size_right = _decide.clamp_windows(window_size_left, window_size_right, max_seqlen_k)
    _check_shape(q, "q", total_q, num_heads, head_size)
    _check_shape(k, "k", total_k, num_heads_k, head_size)
    _check_shape(v, "v", total_k, num_heads_k, head_size)
    _check_shape(out, "out", total_q, num_heads, head_size)
    _check_shape(dout, "dout", total_q, num_heads, head_size)
    _check_shape(cu_seqlens_q, "cu_seqlens_q", batch_size + 1)
    _check_shape(cu_seqlens_k, "cu_seqlens_k", batch_size + 1)
    dq, dk, dv = _bwd_grads(q, k, v, dq_, dk_, dv_, (total_q, num_heads, head_size),
                            (total_k, num_heads_k, head_size))
    f32 = dict(dtype=torch.float32, device=q.device)
    # sequences stored at least 128 rows apart: no bound checks in the atomics (upstream)
    softmax_d = torch.empty((num_heads, total_q + 128 * batch_size), **f32)
    if not deterministic:
        dq_accum = torch.empty((total_q + 128 * batch_size, num_heads, d_rounded), **f32)
    else:
        nsplits = _decide.deterministic_dq_splits(_library.num_sms(q), batch_size, num_heads)
        dq_accum = torch.zeros((nsplits, total_q + 128 * batch_size, num_heads, d_rounded), **f32)
    if num_heads_k != num_heads:
        dk_expanded = torch.empty((total_k, num_heads, head_size), dtype=q.dtype, device=q.device)
        dv_expanded = torch.empty((total_k, num_heads, head_size), dtype=q.dtype, device=q.device)
    else:
        dk_expanded, dv_expanded = dk, dv
    if zero_tensors:
        dq.zero_()
        dk_expanded.zero_()
        dv_expanded.zero_()
        softmax_d.zero_()
    rng = _bwd_rng_state(rng_state, gen_, q, batch_size, num_heads, p_dropout)
    _check_alibi(alibi_slopes, batch_size, num_heads)
    if max_seqlen_q > 0:
        ops.mha_bwd(dout, q, k, v, out, softmax_lse, dq, dk_expanded, dv_expanded, dq_accum,
                    softmax_d, cu_seqlens_q, cu_seqlens_k, alibi_slopes, rng, batch_size,
                    max_seqlen_q, max_seqlen_k, num_heads, num_heads_k, head_size, total_q,
                    float(p_dropout), float(softmax_scale), window_size_left, window_size_right,
                    float(softcap), deterministic, True)
    else:
        dk_expanded.zero_()
        dv_expanded.zero_()
        softmax_d.zero_()
    if num_heads_k != num_heads:
        g = num_heads // num_heads_k
        torch.sum(dk_expanded.reshape(total_k, num_heads_k, g, head_size), dim=2, out=dk)
        torch.sum(dv_expanded.reshape(total_k, num_heads_k, g, head_size), dim=2, out=dv)
    return [dq, dk, dv, softmax_d]


# --------------------------------------------------------------------------- fwd_kvcache
def _pad8(t: Optional[Tensor], head_size_og: int) -> Optional[Tensor]:
    if t is None or head_size_og % 8 == 0:
        return t
    return F.pad(t, (0, 8 - head_size_og % 8))


def fwd_kvcache(q: Tensor, kcache: Tensor, vcache: Tensor, k_: Optional[Tensor],
                v_: Optional[Tensor], seqlens_k_: Optional[Tensor], rotary_cos_: Optional[Tensor],
                rotary_sin_: Optional[Tensor], cache_batch_idx_: Optional[Tensor],
                leftpad_k_: Optional[Tensor], block_table_: Optional[Tensor],
                alibi_slopes: Optional[Tensor], out_: Optional[Tensor], softmax_scale: float,
                is_causal: bool, window_size_left: int, window_size_right: int, softcap: float,
                is_rotary_interleaved: bool, num_splits: int) -> list[Tensor]:
    ops = _library.ops_for(q)
    _check_qkv(q, kcache, vcache)
    paged_kv = block_table_ is not None
    if paged_kv:
        _check(cache_batch_idx_ is None, "Paged KVcache does not support cache_batch_idx")
        _check(block_table_.is_cuda, "block_table must be on CUDA")
        _check(block_table_.dtype == torch.int32, "block_table must have dtype torch.int32")
        _check(block_table_.stride(-1) == 1, "block_table must have contiguous last dimension")
    batch_size, seqlen_q, num_heads, head_size_og = q.shape
    max_num_blocks_per_seq = block_table_.shape[1] if paged_kv else 0
    num_blocks = kcache.shape[0] if paged_kv else 0
    page_block_size = kcache.shape[1] if paged_kv else 1
    if paged_kv:  # any multiple of 16 (patch 0004)
        _paging.check_page_block_size(page_block_size, head_size_og, appends=False)
    if (paged_kv and k_ is not None and rotary_cos_ is None and seqlens_k_ is not None
            and _paging.tile_spans_pages(page_block_size, _decide.round_multiple(head_size_og, 8))):
        # The kernel appends one pointer per kBlockN tile; pages a tile may cross get the
        # new rows here (same rows, same cache), then attention over the longer cache.
        _check(v_ is not None, "If key is supplied, value must also be passed in")
        _check(k_.dtype == q.dtype and v_.dtype == q.dtype, "Key must have the same dtype as query")
        _check(tuple(k_.shape) == (batch_size, k_.shape[1], kcache.shape[2], head_size_og)
               and v_.shape == k_.shape, "k and v must be (batch_size, seqlen_new, num_heads_k, head_size)")
        _check_int32(seqlens_k_, "seqlens_k", batch_size)
        _paging.append_paged(kcache, vcache, k_, v_, block_table_, seqlens_k_)
        seqlens_k_ = seqlens_k_ + k_.shape[1]
        k_ = v_ = None
    if paged_kv and k_ is not None:  # rotary: in the kernel, whole tiles per page
        _paging.check_page_block_size(page_block_size, _decide.round_multiple(head_size_og, 8),
                                      appends=True)
    seqlen_k = max_num_blocks_per_seq * page_block_size if paged_kv else kcache.shape[1]
    num_heads_k = kcache.shape[2]
    batch_size_c = batch_size if paged_kv else kcache.shape[0]
    _check(batch_size > 0, "batch size must be positive")
    _check(head_size_og <= 256, "FlashAttention forward only supports head dimension at most 256")
    _check(num_heads % num_heads_k == 0, "Number of heads in key/value must divide number of heads in query")
    head_size = _decide.round_multiple(head_size_og, 8)
    _library.check_head_dim(head_size)
    if seqlen_q == 1 and alibi_slopes is None:
        is_causal = False
    if is_causal:
        window_size_right = 0
    swapped = _decide.ngroups_swapped(seqlen_q, num_heads, num_heads_k, window_size_left,
                                      window_size_right, 0.0, head_size_og, alibi_slopes is not None)
    if swapped:
        ngroups = num_heads // num_heads_k
        q = q.reshape(batch_size, num_heads_k, ngroups, head_size_og).transpose(1, 2)
        seqlen_q, num_heads = ngroups, num_heads_k
    window_size_left, window_size_right = _decide.clamp_windows(window_size_left, window_size_right, seqlen_k)
    _check_shape(q, "q", batch_size, seqlen_q, num_heads, head_size_og)
    if not paged_kv:
        _check_shape(kcache, "kcache", batch_size_c, seqlen_k, num_heads_k, head_size_og)
        _check_shape(vcache, "vcache", batch_size_c, seqlen_k, num_heads_k, head_size_og)
    else:
        _check_shape(kcache, "kcache", num_blocks, page_block_size, num_heads_k, head_size_og)
        _check_shape(vcache, "vcache", num_blocks, page_block_size, num_heads_k, head_size_og)
        _check_shape(block_table_, "block_table", batch_size, max_num_blocks_per_seq)
    q_padded, kcache_padded, vcache_padded = (_pad8(t, head_size_og) for t in (q, kcache, vcache))
    if out_ is not None:
        _check_out(out_, q.dtype, batch_size, seqlen_q, num_heads, head_size_og)
        out = torch.empty_like(q_padded) if head_size_og % 8 != 0 else out_
    else:
        out = torch.empty_like(q_padded)
    softmax_lse = torch.empty((batch_size, num_heads, seqlen_q), dtype=torch.float32, device=q.device)

    k_padded = v_padded = None
    if k_ is not None:
        _check(v_ is not None, "If key is supplied, value must also be passed in")
        _check(seqlens_k_ is not None, "If key is supplied, seqlens_k must also be passed in")
        _check(seqlen_q <= seqlen_k, "If key is supplied, it must have seqlen <= the seqlen of the KV cache")
        _check(k_.dtype == q.dtype, "Key must have the same dtype as query")
        _check(v_.dtype == q.dtype, "Value must have the same dtype as query")
        _check(k_.is_cuda and v_.is_cuda, "k and v must be on CUDA")
        _check(k_.stride(-1) == 1, "Key tensor must have contiguous last dimension")
        _check(v_.stride(-1) == 1, "Value tensor must have contiguous last dimension")
        seqlen_knew = k_.shape[1]
        _check_shape(k_, "k", batch_size, seqlen_knew, num_heads_k, head_size_og)
        _check_shape(v_, "v", batch_size, seqlen_knew, num_heads_k, head_size_og)
        k_padded, v_padded = _pad8(k_, head_size_og), _pad8(v_, head_size_og)
    if seqlens_k_ is not None:
        _check_int32(seqlens_k_, "seqlens_k", batch_size)
    if leftpad_k_ is not None:
        _check(not paged_kv, "We don't support Paged KV and leftpad_k running at the same time yet")
        _check_int32(leftpad_k_, "leftpad_k", batch_size)
    if rotary_cos_ is not None:
        _check(k_ is not None, "If rotary cos/sin are provided, new key / value to be appended to KV cache must also be provided")
        _check(rotary_cos_.is_cuda, "rotary_cos must be on CUDA")
        rotary_dim = rotary_cos_.shape[1] * 2
        _check(rotary_dim <= head_size, "rotary_dim must be <= headdim")
        _check(rotary_dim % 16 == 0, "Only rotary dimensions divisible by 16 are currently supported")
        seqlen_ro = rotary_cos_.shape[0]
        _check(seqlen_ro >= seqlen_k, "cos/sin seqlen must be at least the seqlen of KV cache")
        _check_shape(rotary_cos_, "rotary_cos", seqlen_ro, rotary_dim // 2)
        _check(rotary_cos_.is_contiguous(), "rotary_cos must be contiguous")
        _check(rotary_cos_.dtype == q.dtype, "rotary_cos must have the same dtype as query")
        _check(rotary_sin_ is not None, "If rotary cos is provided, rotary sin must also be provided")
        _check(rotary_sin_.is_cuda, "rotary_sin must be on CUDA")
        _check_shape(rotary_sin_, "rotary_sin", seqlen_ro, rotary_dim // 2)
        _check(rotary_sin_.is_contiguous(), "rotary_sin must be contiguous")
        _check(rotary_sin_.dtype == q.dtype, "rotary_cos must have the same dtype as query")
    if cache_batch_idx_ is not None:
        _check(cache_batch_idx_.is_cuda, "cache_batch_idx must be on CUDA")
        _check(cache_batch_idx_.is_contiguous(), "cache_batch_idx must be contiguous")
        _check(cache_batch_idx_.dtype == torch.int32, "cache_batch_idx must have dtype int32")

    n_splits = _decide.num_splits(batch_size, num_heads, head_size, seqlen_k, seqlen_q, 0.0,
                                  num_splits, _library.num_sms(q))
    lse_accum, out_accum = _split_accumulators(q, n_splits, batch_size, num_heads, seqlen_q,
                                               _decide.head_size_rounded(head_size))
    _check_alibi(alibi_slopes, batch_size, num_heads)
    rng_state = torch.empty((2,), dtype=torch.int64, device=q.device)  # unused: no dropout
    # Only the split kernel appends to the cache, indexes it with cache_batch_idx or pages it.
    force_split = k_ is not None or cache_batch_idx_ is not None or paged_kv
    _launch_fwd(ops, q_padded, kcache_padded, vcache_padded, out, softmax_lse, None, rng_state,
                cu_seqlens_k=seqlens_k_, leftpad_k=leftpad_k_, block_table=block_table_,
                alibi_slopes=alibi_slopes, k_new=k_padded, v_new=v_padded, rotary_cos=rotary_cos_,
                rotary_sin=rotary_sin_, cache_batch_idx=cache_batch_idx_, lse_accum=lse_accum,
                out_accum=out_accum, batch=batch_size, seqlen_q=seqlen_q, seqlen_k=seqlen_k,
                num_heads=num_heads, num_heads_k=num_heads_k, head_size=head_size,
                softmax_scale=softmax_scale, window_left=window_size_left,
                window_right=window_size_right, softcap=softcap,
                seqlens_k_cumulative=seqlens_k_ is None, rotary_interleaved=is_rotary_interleaved,
                num_splits=n_splits, force_split=force_split)
    if head_size_og % 8 != 0:
        out = out[..., :head_size_og]
        if out_ is not None:
            out_.copy_(out)
        if k_ is not None:
            # as upstream: the padded cache copy goes back (rare: head dims not a multiple of 8)
            kcache.copy_(kcache_padded[..., :head_size_og])
            vcache.copy_(vcache_padded[..., :head_size_og])
    if swapped:
        out = out.transpose(1, 2).reshape(batch_size, 1, num_heads_k * seqlen_q, head_size_og)
        softmax_lse = softmax_lse.reshape(batch_size, num_heads_k * seqlen_q, 1)
    return [out, softmax_lse]
