"""Upstream flash_api.cpp's decisions, as pure functions (no tensors, no GPU).

flash-attn 2.8.3's C++ front end decides a few things before it launches: the
number of KV splits, whether a decode step runs with query heads folded into the
sequence axis, the rounded sizes and the Philox counter increment. They are here,
translated line by line, so that they can be tested on a machine without a GPU and
so that the stable-ABI launcher (csrc/flash_attn_2_cuda/flash_api.cu) only fills
kernel parameters.
"""
from __future__ import annotations

import functools
import math
import struct


def round_multiple(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def head_size_rounded(head_size: int) -> int:
    return round_multiple(head_size, 32 if head_size <= 128 else 64)


def _f32(x: float) -> float:
    """Round to IEEE float32, as the C++ heuristic computes in float."""
    return struct.unpack("f", struct.pack("f", x))[0]


@functools.lru_cache(maxsize=4096)
def num_splits_heuristic(batch_nheads_mblocks: int, num_sms: int, num_n_blocks: int,
                         max_splits: int) -> int:
    """Upstream's num_splits_heuristic: the fewest splits within 85 % of the best
    wave efficiency; 1 when the grid already nearly fills the GPU. Memoized: a pure
    function of four ints, evaluated in float32 arithmetic per split count (tens of
    microseconds of Python), asked the same question on every decode step."""
    if batch_nheads_mblocks >= 0.8 * num_sms:
        return 1
    max_splits = min(max_splits, num_sms, num_n_blocks)

    def ceildiv(a: int, b: int) -> int:
        return (a + b - 1) // b

    def eligible(s: int) -> bool:
        return s == 1 or ceildiv(num_n_blocks, s) != ceildiv(num_n_blocks, s - 1)

    efficiency: list[float] = []
    max_eff = 0.0
    for s in range(1, max_splits + 1):
        if not eligible(s):
            efficiency.append(0.0)
            continue
        n_waves = _f32(_f32(float(batch_nheads_mblocks * s)) / num_sms)
        eff = _f32(n_waves / math.ceil(n_waves))
        max_eff = max(max_eff, eff)
        efficiency.append(eff)
    for s in range(1, max_splits + 1):
        if eligible(s) and efficiency[s - 1] >= 0.85 * max_eff:
            return s
    return 1


def splitkv_block_n(head_size: int) -> int:
    """kBlockN of the split-KV kernels (run_mha_fwd_splitkv_dispatch)."""
    return 256 if head_size <= 64 else (128 if head_size <= 128 else 64)


def num_splits(batch: int, num_heads: int, head_size: int, max_seqlen_k: int,
               max_seqlen_q: int, p_dropout: float, requested: int, num_sms: int) -> int:
    """Upstream's set_params_splitkv: the split count the forward runs with.

    `requested` < 1 means "use the heuristic" (flash_attn_with_kvcache's num_splits=0).
    Split-KV has no dropout, so with dropout the request is returned unchanged."""
    if p_dropout != 0.0:
        return requested
    n = requested
    if requested < 1:
        block_n = splitkv_block_n(head_size)
        n_blocks = (max_seqlen_k + block_n - 1) // block_n
        m_blocks = (max_seqlen_q + 64 - 1) // 64
        # x2 SMs: the split kernels run 128 threads per block (upstream's comment)
        n = num_splits_heuristic(batch * num_heads * m_blocks, num_sms * 2, n_blocks, 128)
    if n > 128:
        raise RuntimeError("num_splits > 128 not supported")
    return n


def ngroups_swapped(seqlen_q: int, num_heads: int, num_heads_k: int, window_left: int,
                    window_right: int, p_dropout: float, head_size: int, has_alibi: bool) -> bool:
    """Decode with GQA: fold the query heads of one KV head into the sequence axis."""
    return (seqlen_q == 1 and num_heads > num_heads_k and window_left < 0 and window_right < 0
            and p_dropout == 0.0 and head_size % 8 == 0 and not has_alibi)


def clamp_windows(window_left: int, window_right: int, seqlen_k: int) -> tuple[int, int]:
    """A window at least as long as the keys is no window."""
    return (-1 if window_left >= seqlen_k else window_left,
            -1 if window_right >= seqlen_k else window_right)


def philox_increment(batch: int, num_heads: int) -> int:
    """Upstream's counter_offset (b * h * 32), rounded up to a multiple of 4 the way
    CUDAGeneratorImpl::philox_cuda_state advances the generator's offset."""
    counter_offset = batch * num_heads * 32
    return (counter_offset + 3) // 4 * 4


def deterministic_dq_splits(num_sms: int, batch: int, num_heads: int) -> int:
    """Number of dQ accumulators of the deterministic backward."""
    return (num_sms + batch * num_heads - 1) // (batch * num_heads)


def bwd_supported(head_size: int, p_dropout: float, max_smem_per_block: int) -> str | None:
    """None, or why upstream's backward would launch nothing.

    run_mha_bwd_hdim256 has no kernel for dropout on GPUs with less than 144 KB of
    shared memory per block (sm_86, sm_89, sm_120: 99 KB): upstream then returns
    without writing the gradients. We raise instead."""
    if head_size > 192 and p_dropout > 0.0 and max_smem_per_block < 144 * 1024:
        return (f"FlashAttention-2 backward for head dim {head_size} with dropout needs >= 144 KB "
                f"of shared memory per block; this GPU has {max_smem_per_block // 1024} KB "
                f"(sm_86/sm_89/sm_120 class). Use dropout_p=0.0 or a head dim <= 192.")
    return None
