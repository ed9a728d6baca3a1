"""Paged KV arithmetic of the split-KV kernel (patch 0004), as pure functions.

A paged KV cache is (num_blocks, page_block_size, num_heads_k, head_size) plus a
block_table (batch, max_blocks_per_seq) of page numbers: row r of sequence b is row
r % page_block_size of page block_table[b, r // page_block_size]. Upstream 2.8.3
resolves one page per K/V tile of kBlockN rows, so it needs page sizes that are
multiples of 256; with patch 0004 a tile whose rows span pages resolves every row's
page (flash_fwd_kernel.h `paged_rows`, utils.h `copy_paged` / `paged_row_delta`).
The same rules are in csrc/flash_attn_2_cuda/fa2_launch.h (check_page_block_size)
for the ops that are called without this Python layer (torch.ops._vllm_fa2_C).
"""
from __future__ import annotations

from typing import Sequence

from ._decide import splitkv_block_n

PAGE_MULTIPLE = 16   # vLLM's FA2 contract: kernel block sizes MultipleOf(16)


def check_page_block_size(page_block_size: int, head_size: int, appends: bool) -> None:
    """Raise RuntimeError (the message the C++ ops give) for a page size the kernels
    do not take: not a positive multiple of 16, or, when the kernel appends new k/v into
    the cache (with rotary: other appends go through append_paged), not a multiple of the
    split kernel's kBlockN."""
    if page_block_size <= 0 or page_block_size % PAGE_MULTIPLE:
        raise RuntimeError(f"Paged KV cache block size must be a multiple of {PAGE_MULTIPLE}, "
                           f"got {page_block_size}")
    block_n = splitkv_block_n(head_size)
    if appends and page_block_size % block_n:
        raise RuntimeError(
            f"flash_attn: appending k/v with rotary_cos/rotary_sin to a paged KV cache needs a block "
            f"size that is a multiple of {block_n} for head dim {head_size} (got {page_block_size}); "
            "apply the rotary embedding to q and k first and append without rotary_cos/rotary_sin")


def tile_spans_pages(page_block_size: int, head_size: int) -> bool:
    """Whether the kernel takes the per-row path (a kBlockN tile may cross a page)."""
    return page_block_size % splitkv_block_n(head_size) != 0


def row_location(block_table_row: Sequence[int], page_block_size: int, row: int) -> tuple[int, int]:
    """(page, row within the page) of KV row `row` of one sequence."""
    page = row // page_block_size
    return int(block_table_row[page]), row - page * page_block_size


def row_delta(block_table_row: Sequence[int], page_block_size: int, page_stride: int,
              row_stride: int, row: int) -> int:
    """utils.h paged_row_delta: the element offset of KV row `row` in the paged cache
    minus its unpaged offset row * row_stride (both from the head's base)."""
    page, in_page = row_location(block_table_row, page_block_size, row)
    return page * page_stride + (in_page - row) * row_stride


def tile_pages(block_table_row: Sequence[int], page_block_size: int, n_block: int, block_n: int,
               seqlen_k: int) -> list[int]:
    """The distinct pages (in row order) the rows of tile n_block read, rows < seqlen_k only
    (entries past the sequence are never loaded)."""
    lo, hi = n_block * block_n, min((n_block + 1) * block_n, seqlen_k)
    pages: list[int] = []
    for r in range(lo, hi):
        p = row_location(block_table_row, page_block_size, r)[0]
        if not pages or pages[-1] != p:
            pages.append(p)
    return pages


def append_paged(k_cache, v_cache, k_new, v_new, block_table, cache_seqlens) -> None:
    """Write k_new/v_new (batch, seqlen_new, heads_k, d) into a paged cache at rows
    cache_seqlens[b] + i of each sequence, what the split kernel's Append_KV does inside
    the kernel; used by flash_attn_with_kvcache(k=, v=) for pages that a kBlockN tile may
    cross (the kernel's append walks one pointer per tile). Rows must lie within the
    sequence's pages (block_table), as for the kernel."""
    import torch
    page_block_size = k_cache.shape[1]
    pos = cache_seqlens.to(torch.int64)[:, None] + torch.arange(k_new.shape[1], device=k_new.device)
    pages = torch.gather(block_table.to(torch.int64), 1, pos // page_block_size)
    slots = pos % page_block_size
    k_cache[pages, slots] = k_new
    v_cache[pages, slots] = v_new
