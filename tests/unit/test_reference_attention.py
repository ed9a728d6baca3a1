"""CPU tests of the attention reference (blackwheel.testing.attention)."""
import math

import torch

from blackwheel.testing.attention import attention_reference, sdpa_math_reference


def _qkv(b, sq, sk, hq, hk, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, sq, hq, d, generator=g), torch.randn(b, sk, hk, d, generator=g),
            torch.randn(b, sk, hk, d, generator=g))


def test_matches_sdpa_math_non_causal_with_gqa():
    q, k, v = _qkv(2, 7, 11, 8, 2, 16)
    out, _, _ = attention_reference(q, k, v)
    torch.testing.assert_close(out, sdpa_math_reference(q, k, v), atol=1e-5, rtol=1e-5)


def test_matches_sdpa_math_causal_square():
    q, k, v = _qkv(1, 9, 9, 4, 4, 8, seed=1)
    out, _, _ = attention_reference(q, k, v, causal=True)
    torch.testing.assert_close(out, sdpa_math_reference(q, k, v, causal=True), atol=1e-5, rtol=1e-5)


def test_causal_mask_is_bottom_right_aligned():
    q, k, v = _qkv(1, 3, 5, 2, 1, 8, seed=2)
    out, lse, _ = attention_reference(q, k, v, causal=True)
    # query i sees keys 0 .. i + 2
    for i in range(3):
        ks, vs = k[:, : i + 3], v[:, : i + 3]
        want, want_lse, _ = attention_reference(q[:, i:i + 1], ks, vs)
        torch.testing.assert_close(out[:, i:i + 1], want, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(lse[:, :, i:i + 1], want_lse, atol=1e-6, rtol=1e-6)
    # and differs from SDPA's top-left mask (row 0 would see only key 0)
    assert not torch.allclose(out, sdpa_math_reference(q, k, v, causal=True), atol=1e-3)


def test_single_query_causal_sees_all_keys():
    q, k, v = _qkv(1, 1, 13, 4, 2, 8, seed=3)
    a, _, _ = attention_reference(q, k, v, causal=True)
    b, _, _ = attention_reference(q, k, v, causal=False)
    torch.testing.assert_close(a, b)


def test_lse_and_scale():
    q, k, v = _qkv(1, 2, 3, 1, 1, 4, seed=4)
    _, lse, _ = attention_reference(q, k, v, softmax_scale=0.3)
    s = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) * 0.3
    torch.testing.assert_close(lse.double(), torch.logsumexp(s, -1), atol=1e-6, rtol=1e-6)
    _, lse_default, _ = attention_reference(q, k, v)
    s = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / math.sqrt(4)
    torch.testing.assert_close(lse_default.double(), torch.logsumexp(s, -1), atol=1e-6, rtol=1e-6)


def test_gqa_head_mapping():
    q, k, v = _qkv(1, 4, 6, 4, 2, 8, seed=5)
    out, _, _ = attention_reference(q, k, v)
    # query heads 2, 3 read kv head 1
    one, _, _ = attention_reference(q[:, :, 2:4], k[:, :, 1:2], v[:, :, 1:2])
    torch.testing.assert_close(out[:, :, 2:4], one)


def test_fully_masked_rows_are_zero_with_inf_lse():
    q, k, v = _qkv(1, 5, 2, 1, 1, 4, seed=6)
    out, lse, abs_out = attention_reference(q, k, v, causal=True)
    # Sq=5 > Sk=2: rows 0..2 see no key (j <= i - 3)
    assert bool((out[0, :3] == 0).all()) and bool(torch.isposinf(lse[0, 0, :3]).all())
    assert bool(torch.isfinite(lse[0, 0, 3:]).all())
    assert bool((abs_out >= out.abs() - 1e-6).all())
