"""Paged KV arithmetic of patch 0004 (python/flash_attn_2_cuda/_paging.py), no GPU.

The kernel's per-row page resolution (utils.h paged_row_delta) is checked here by
gathering K rows of a real paged cache through the same formula, element offsets
into the flat storage, and comparing with the contiguous sequence they came from."""
import pytest
import torch

from flash_attn_2_cuda import _decide as D
from flash_attn_2_cuda import _paging as P

PAGE_SIZES = [16, 32, 48, 64, 96, 128, 160, 256, 272, 512]


@pytest.mark.parametrize("page", PAGE_SIZES)
@pytest.mark.parametrize("head_size", [64, 128, 256])
def test_multiples_of_16_accepted_for_reading(page, head_size):
    P.check_page_block_size(page, head_size, appends=False)


@pytest.mark.parametrize("page", [0, 1, 8, 24, 100, 250, -16])
def test_other_page_sizes_refused_with_the_rule(page):
    with pytest.raises(RuntimeError, match="must be a multiple of 16"):
        P.check_page_block_size(page, 128, appends=False)


def test_append_needs_whole_tiles_per_page():
    # kBlockN 256 (d <= 64), 128 (d <= 128), 64 (d > 128)
    P.check_page_block_size(256, 64, appends=True)
    P.check_page_block_size(128, 128, appends=True)
    P.check_page_block_size(64, 256, appends=True)
    for page, d, block_n in [(128, 64, 256), (64, 128, 128), (16, 192, 64)]:
        with pytest.raises(RuntimeError, match=f"rotary.*multiple of {block_n} for head dim {d}"):
            P.check_page_block_size(page, d, appends=True)


def test_fast_path_exactly_for_whole_tile_pages():
    # the per-row path is taken iff a kBlockN tile can cross a page boundary
    for d in (32, 64, 96, 128, 192, 256):
        bn = D.splitkv_block_n(d)
        for page in PAGE_SIZES:
            assert P.tile_spans_pages(page, d) == (page % bn != 0)
    # upstream's only sizes (multiples of 256) never take it
    assert not any(P.tile_spans_pages(256 * m, d) for m in (1, 2, 3) for d in (32, 128, 256))


def _paged_cache(seqlens, page, heads, dim, seed=0):
    """A paged cache holding `seqlens` sequences at shuffled pages (page 0 unused),
    and the sequences themselves, contiguous."""
    g = torch.Generator().manual_seed(seed)
    blocks = [(s + page - 1) // page for s in seqlens]
    num_blocks = sum(blocks) + 1
    perm = (torch.randperm(num_blocks - 1, generator=g) + 1).tolist()
    cache = torch.full((num_blocks, page, heads, dim), float("nan"))
    table = torch.zeros((len(seqlens), max(blocks)), dtype=torch.int32)
    seqs = []
    it = iter(perm)
    for b, s in enumerate(seqlens):
        seq = torch.randn((s, heads, dim), generator=g)
        seqs.append(seq)
        for j in range(blocks[b]):
            p = next(it)
            table[b, j] = p
            rows = seq[j * page:(j + 1) * page]
            cache[p, :rows.shape[0]] = rows
    return cache, table, seqs


@pytest.mark.parametrize("page", [16, 32, 48, 64, 128, 256])
@pytest.mark.parametrize("head_size", [64, 128, 256])
def test_row_delta_gathers_every_row_of_every_tile(page, head_size):
    heads = 2
    seqlens = [1, 15, 16, 17, 300, 513]   # ragged: partial first/last pages and tiles
    cache, table, seqs = _paged_cache(seqlens, page, heads, head_size)
    flat = cache.reshape(-1)
    page_stride, row_stride, head_stride = cache.stride(0), cache.stride(1), cache.stride(2)
    block_n = D.splitkv_block_n(head_size)
    for b, seq in enumerate(seqs):
        row_table = table[b].tolist()
        for h in range(heads):
            base = h * head_stride            # gK at row 0 of the head (paged_rows)
            for n_block in range((seq.shape[0] + block_n - 1) // block_n):
                tile_row0 = n_block * block_n
                for row in range(min(block_n, seq.shape[0] - tile_row0)):   # rows < seqlen_k only
                    g = tile_row0 + row
                    off = base + g * row_stride + P.row_delta(row_table, page, page_stride, row_stride, g)
                    got = flat[off:off + head_size]
                    assert torch.equal(got, seq[g, h]), (b, h, g)


def test_tile_pages_spans_and_skips_entries_past_the_sequence():
    table = [7, 3, 9, 1, 5, 2, 8, 4]
    # page 16, kBlockN 128: tile 0 covers 8 pages
    assert P.tile_pages(table, 16, 0, 128, 128) == table
    # a short sequence: rows >= seqlen_k never touch their (possibly garbage) entries
    assert P.tile_pages(table, 16, 0, 128, 20) == [7, 3]
    # page 256 >= kBlockN: one page per tile (upstream's path)
    assert P.tile_pages(table, 256, 1, 128, 1000) == [7]
    assert P.tile_pages(table, 256, 2, 128, 1000) == [3]


@pytest.mark.parametrize("page", [16, 48, 128])
def test_append_paged_writes_the_rows_the_kernel_would(page):
    heads, dim = 2, 64
    seqlens = [0, 15, 16, 100]
    cache, table, seqs = _paged_cache([s + 20 for s in seqlens], page, heads, dim)
    k_cache, v_cache = cache.clone(), cache.clone()
    g = torch.Generator().manual_seed(1)
    k_new = torch.randn((len(seqlens), 5, heads, dim), generator=g)
    v_new = torch.randn((len(seqlens), 5, heads, dim), generator=g)
    before = cache.clone()
    P.append_paged(k_cache, v_cache, k_new, v_new, table, torch.tensor(seqlens, dtype=torch.int32))
    touched = torch.zeros(cache.shape[:2], dtype=torch.bool)
    for b, s in enumerate(seqlens):
        for i in range(5):
            page_no, in_page = P.row_location(table[b].tolist(), page, s + i)
            assert torch.equal(k_cache[page_no, in_page], k_new[b, i])
            assert torch.equal(v_cache[page_no, in_page], v_new[b, i])
            touched[page_no, in_page] = True
    # nothing else moved (NaN-filled unused rows compare equal through isnan)
    same = (k_cache == before) | (k_cache.isnan() & before.isnan())
    assert same[~touched].all()
