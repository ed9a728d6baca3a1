"""The flash_attn wheel against independent references, on the GPU at hand.

References are plain torch in float32 (softmax(QK^T * scale + mask) V), not
FlashAttention. Head dims are the ones the wheel was built with."""
import math

import pytest
import torch

def built_dims():
    import flash_attn_2_cuda
    return flash_attn_2_cuda.head_dims_built()


def ref_attention(q, k, v, causal=False, window=(-1, -1), softcap=0.0, alibi=None):
    """[b, s, h, d] in, float32 out; GQA by repetition; FA's bottom-right causal alignment."""
    b, sq, hq, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    k = k.float().repeat_interleave(hq // hk, dim=2)
    v = v.float().repeat_interleave(hq // hk, dim=2)
    s = torch.einsum("bqhd,bkhd->bhqk", q.float(), k) / math.sqrt(d)
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    row = torch.arange(sq, device=q.device)[:, None] + (sk - sq)
    col = torch.arange(sk, device=q.device)[None, :]
    if alibi is not None:
        s = s - (alibi.float().view(1, hq, 1, 1) * (row - col).abs())
    mask = torch.zeros(sq, sk, dtype=torch.bool, device=q.device)
    if causal:
        window = (window[0], 0)
    if window[0] >= 0:
        mask |= col < row - window[0]
    if window[1] >= 0:
        mask |= col > row + window[1]
    s = s.masked_fill(mask, float("-inf"))
    # a query row with every key masked (causal, seqlen_q > seqlen_k) attends to nothing: 0
    mx = s.amax(-1, keepdim=True)
    e = torch.exp(s - torch.where(torch.isinf(mx), torch.zeros_like(mx), mx))
    p = e / e.sum(-1, keepdim=True).clamp_min(1e-30)
    return torch.einsum("bhqk,bkhd->bqhd", p, v)


def close(out, ref, tol=2e-2):
    err = (out.float() - ref).abs().max().item()
    assert err < tol, f"max abs error {err:.4f} >= {tol}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [(8, 8), (8, 2)])
def test_forward_backward_against_fp32(dtype, causal, heads):
    from flash_attn import flash_attn_func
    torch.manual_seed(0)
    for d in built_dims():
        hq, hk = heads
        q = torch.randn(2, 300, hq, d, device="cuda", dtype=dtype, requires_grad=True)
        k = torch.randn(2, 257, hk, d, device="cuda", dtype=dtype, requires_grad=True)
        v = torch.randn(2, 257, hk, d, device="cuda", dtype=dtype, requires_grad=True)
        out = flash_attn_func(q, k, v, causal=causal)
        qr, kr, vr = (t.detach().float().requires_grad_() for t in (q, k, v))
        ref = ref_attention(qr, kr, vr, causal=causal)
        close(out, ref)
        g = torch.randn_like(out)
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), g)
        rq, rk, rv = torch.autograd.grad(ref, (qr, kr, vr), g.float())
        for a, b in ((dq, rq), (dk, rk), (dv, rv)):
            close(a, b, tol=6e-2 * max(1.0, b.abs().max().item()))


def test_features_window_softcap_alibi_match_reference():
    from flash_attn import flash_attn_func
    torch.manual_seed(1)
    d = built_dims()[0]
    q = torch.randn(1, 200, 4, d, device="cuda", dtype=torch.float16)
    k = torch.randn(1, 200, 4, d, device="cuda", dtype=torch.float16)
    v = torch.randn(1, 200, 4, d, device="cuda", dtype=torch.float16)
    close(flash_attn_func(q, k, v, window_size=(32, 8)), ref_attention(q, k, v, window=(32, 8)))
    close(flash_attn_func(q, k, v, softcap=5.0), ref_attention(q, k, v, softcap=5.0))
    slopes = torch.rand(4, device="cuda", dtype=torch.float32) * 0.1
    close(flash_attn_func(q, k, v, alibi_slopes=slopes), ref_attention(q, k, v, alibi=slopes))


def test_varlen_equals_per_sequence():
    from flash_attn import flash_attn_func, flash_attn_varlen_func
    d = built_dims()[-1]
    lens = [5, 130, 77]
    seqs = [torch.randn(n, 4, d, device="cuda", dtype=torch.bfloat16) for n in lens]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    x = torch.cat(seqs)
    out = flash_attn_varlen_func(x, x, x, cu, cu, max(lens), max(lens), causal=True)
    for i, s in enumerate(seqs):
        one = flash_attn_func(s[None], s[None], s[None], causal=True)[0]
        torch.testing.assert_close(out[cu[i]:cu[i + 1]], one, atol=2e-3, rtol=0)


@pytest.mark.parametrize("paged", [False, True])
@pytest.mark.parametrize("num_splits", [0, 1, 4])
def test_kvcache_decode_split_and_paged(paged, num_splits):
    from flash_attn import flash_attn_with_kvcache
    torch.manual_seed(2)
    d = built_dims()[-1]
    b, s, hq, hk = 3, 1024, 16, 4
    k = torch.randn(b, s, hk, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, s, hk, d, device="cuda", dtype=torch.bfloat16)
    q = torch.randn(b, 1, hq, d, device="cuda", dtype=torch.bfloat16)
    lens = torch.tensor([1024, 300, 777], dtype=torch.int32, device="cuda")
    if paged:
        page = 256
        perm = torch.randperm(b * s // page, device="cuda")
        kp = torch.empty(b * s // page, page, hk, d, device="cuda", dtype=torch.bfloat16)
        vp = torch.empty_like(kp)
        kp[perm] = k.reshape(-1, page, hk, d)
        vp[perm] = v.reshape(-1, page, hk, d)
        table = perm.to(torch.int32).reshape(b, s // page)
        out = flash_attn_with_kvcache(q, kp, vp, cache_seqlens=lens, block_table=table, num_splits=num_splits)
    else:
        out = flash_attn_with_kvcache(q, k, v, cache_seqlens=lens, num_splits=num_splits)
    for i in range(b):
        n = int(lens[i])
        ref = ref_attention(q[i:i + 1], k[i:i + 1, :n], v[i:i + 1, :n])
        close(out[i:i + 1], ref)


def test_kvcache_appends_new_keys():
    from flash_attn import flash_attn_with_kvcache
    d = built_dims()[-1]
    kc = torch.zeros(2, 512, 2, d, device="cuda", dtype=torch.float16)
    vc = torch.zeros_like(kc)
    kn = torch.randn(2, 3, 2, d, device="cuda", dtype=torch.float16)
    vn = torch.randn_like(kn)
    q = torch.randn(2, 3, 4, d, device="cuda", dtype=torch.float16)
    lens = torch.tensor([10, 100], dtype=torch.int32, device="cuda")
    flash_attn_with_kvcache(q, kc, vc, k=kn, v=vn, cache_seqlens=lens, causal=True)
    torch.testing.assert_close(kc[0, 10:13], kn[0])
    torch.testing.assert_close(vc[1, 100:103], vn[1])


def test_dropout_follows_torch_manual_seed():
    from flash_attn import flash_attn_func
    d = built_dims()[0]
    q = torch.randn(2, 128, 4, d, device="cuda", dtype=torch.float16)
    torch.manual_seed(7)
    a = flash_attn_func(q, q, q, dropout_p=0.3)
    torch.manual_seed(7)
    b = flash_attn_func(q, q, q, dropout_p=0.3)
    c = flash_attn_func(q, q, q, dropout_p=0.3)   # generator advanced: another mask
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c)


def test_cuda_graph_replay_and_compile_equal_eager():
    from flash_attn import flash_attn_func, flash_attn_with_kvcache
    d = built_dims()[-1]
    q = torch.randn(2, 64, 8, d, device="cuda", dtype=torch.bfloat16)
    eager = flash_attn_func(q, q, q, causal=True)
    kc = torch.randn(4, 2048, 2, d, device="cuda", dtype=torch.bfloat16)
    qd = torch.randn(4, 1, 8, d, device="cuda", dtype=torch.bfloat16)
    lens = torch.full((4,), 2048, dtype=torch.int32, device="cuda")
    dec_eager = flash_attn_with_kvcache(qd, kc, kc, cache_seqlens=lens)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        flash_attn_func(q, q, q, causal=True)
        flash_attn_with_kvcache(qd, kc, kc, cache_seqlens=lens)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = flash_attn_func(q, q, q, causal=True)
        dec = flash_attn_with_kvcache(qd, kc, kc, cache_seqlens=lens)
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, eager, atol=0, rtol=0)
    torch.testing.assert_close(dec, dec_eager, atol=0, rtol=0)
    compiled = torch.compile(lambda a: flash_attn_func(a, a, a, causal=True), fullgraph=True)
    torch.testing.assert_close(compiled(q), eager, atol=0, rtol=0)


def test_dropout_under_graph_capture_is_refused():
    from flash_attn import flash_attn_func
    q = torch.randn(1, 64, 2, built_dims()[0], device="cuda", dtype=torch.float16)
    flash_attn_func(q, q, q)
    g = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="dropout inside CUDA graph capture"):
        with torch.cuda.graph(g):
            flash_attn_func(q, q, q, dropout_p=0.1)


def test_head_dim_not_built_names_the_rebuild_setting():
    from flash_attn import flash_attn_func
    missing = [d for d in (32, 64, 96, 128, 192, 256) if d not in built_dims()]
    if not missing:
        pytest.skip("every head dim is built")
    q = torch.randn(1, 16, 2, missing[0], device="cuda", dtype=torch.float16)
    with pytest.raises(RuntimeError, match="BLACKWHEEL_FA_HEAD_DIMS"):
        flash_attn_func(q, q, q)
