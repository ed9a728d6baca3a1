"""flash_attn with paged KV at vLLM's block sizes (patch 0004: any multiple of 16),
against the plain-torch reference of paged_reference.py: ragged lengths, GQA, causal,
sliding window, softcap; varlen (flash_attn_varlen_func with block_table) and decode
(flash_attn_with_kvcache with block_table). Unused pages hold NaN: reading a wrong
page poisons the output."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paged_reference import max_err, paged_cache, ref_one, ref_varlen  # noqa: E402

BLOCK_SIZES = [16, 32, 64, 128, 256, 48, 272]
SEQLENS_K = [1, 17, 130, 700, 1029]
SEQLENS_Q = [1, 5, 64, 3, 130]
CASES = [  # (causal, window, softcap)
    (False, (-1, -1), 0.0), (True, (-1, -1), 0.0), (True, (96, 0), 0.0), (False, (-1, -1), 30.0),
]


def _dim():
    import flash_attn_2_cuda
    dims = flash_attn_2_cuda.head_dims_built()
    return 128 if 128 in dims else dims[0]


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("heads", [(32, 8), (8, 8)])
@pytest.mark.parametrize("case", CASES)
def test_varlen_paged(block_size, heads, case):
    from flash_attn import flash_attn_varlen_func
    causal, window, softcap = case
    hq, hk = heads
    d, dtype = _dim(), torch.bfloat16
    kc, vc, table, ks, vs = paged_cache(SEQLENS_K, block_size, hk, d, dtype)
    lq = [min(a, b) for a, b in zip(SEQLENS_Q, SEQLENS_K)]
    cu_q = torch.tensor([0] + list(torch.tensor(lq).cumsum(0)), dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0] + list(torch.tensor(SEQLENS_K).cumsum(0)), dtype=torch.int32, device="cuda")
    q = torch.randn(sum(lq), hq, d, device="cuda", dtype=dtype)
    out = flash_attn_varlen_func(q, kc, vc, cu_q, cu_k, max(lq), max(SEQLENS_K), causal=causal,
                                 window_size=window, softcap=softcap, block_table=table)
    ref, _ = ref_varlen(q, cu_q, ks, vs, causal=causal, window=window, softcap=softcap)
    assert max_err(out, ref) < 2e-2


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("seqlen_q", [1, 4])
@pytest.mark.parametrize("num_splits", [0, 1, 3])
def test_kvcache_decode_paged(block_size, seqlen_q, num_splits):
    from flash_attn import flash_attn_with_kvcache
    hq, hk, d, dtype = 32, 8, _dim(), torch.bfloat16
    kc, vc, table, ks, vs = paged_cache(SEQLENS_K, block_size, hk, d, dtype)
    b = len(SEQLENS_K)
    q = torch.randn(b, seqlen_q, hq, d, device="cuda", dtype=dtype)
    seqlens = torch.tensor(SEQLENS_K, dtype=torch.int32, device="cuda")
    out = flash_attn_with_kvcache(q, kc, vc, cache_seqlens=seqlens, block_table=table,
                                  causal=True, num_splits=num_splits)
    for i in range(b):
        ref, _ = ref_one(q[i], ks[i], vs[i], causal=True)
        assert max_err(out[i], ref) < 2e-2, i


@pytest.mark.parametrize("block_size", [16, 48, 256])
def test_kvcache_append_into_pages(block_size):
    """k=/v= appended at cache_seqlens (in Python for pages a tile may cross, in the kernel
    otherwise), then attention over the longer cache, against the reference."""
    from flash_attn import flash_attn_with_kvcache
    hq, hk, d, dtype = 8, 2, _dim(), torch.bfloat16
    lens = [30, 200, 17]
    kc, vc, table, ks, vs = paged_cache([n + 3 for n in lens], block_size, hk, d, dtype)
    q = torch.randn(len(lens), 3, hq, d, device="cuda", dtype=dtype)
    k_new = torch.randn(len(lens), 3, hk, d, device="cuda", dtype=dtype)
    v_new = torch.randn_like(k_new)
    seqlens = torch.tensor(lens, dtype=torch.int32, device="cuda")
    out = flash_attn_with_kvcache(q, kc, vc, k=k_new, v=v_new, cache_seqlens=seqlens,
                                  block_table=table, causal=True)
    for i, n in enumerate(lens):
        k_all = torch.cat([ks[i][:n], k_new[i]])
        v_all = torch.cat([vs[i][:n], v_new[i]])
        ref, _ = ref_one(q[i], k_all, v_all, causal=True)
        assert max_err(out[i], ref) < 2e-2, i


def test_rotary_append_into_small_pages_is_refused_clearly():
    from flash_attn import flash_attn_with_kvcache
    d, dtype = _dim(), torch.bfloat16
    kc, vc, table, _, _ = paged_cache([40, 40], 16, 2, d, dtype)
    q = torch.randn(2, 1, 2, d, device="cuda", dtype=dtype)
    k_new = torch.randn(2, 1, 2, d, device="cuda", dtype=dtype)
    cos = torch.ones(64, d // 2, device="cuda", dtype=dtype)
    seqlens = torch.tensor([39, 39], dtype=torch.int32, device="cuda")
    with pytest.raises(RuntimeError, match="rotary_cos/rotary_sin to a paged KV cache needs a block size"):
        flash_attn_with_kvcache(q, kc, vc, k=k_new, v=k_new.clone(), rotary_cos=cos,
                                rotary_sin=cos.clone(), cache_seqlens=seqlens, block_table=table)


def test_page_size_not_multiple_of_16_is_refused():
    from flash_attn import flash_attn_with_kvcache
    d, dtype = _dim(), torch.bfloat16
    kc, vc, table, _, _ = paged_cache([40], 8, 2, d, dtype)
    q = torch.randn(1, 1, 2, d, device="cuda", dtype=dtype)
    with pytest.raises(RuntimeError, match="must be a multiple of 16"):
        flash_attn_with_kvcache(q, kc, vc, cache_seqlens=torch.tensor([40], dtype=torch.int32,
                                device="cuda"), block_table=table)
