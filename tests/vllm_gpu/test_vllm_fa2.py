"""vLLM's own flash_attn_varlen_func (vllm/vllm_flash_attn/flash_attn_interface.py, fa_version=2)
over blackwheel's _vllm_fa2_C, against the plain-torch reference: paged KV at block sizes
16..256 (vLLM's default is 16), ragged lengths, GQA, causal, sliding window, softcap,
prefill and decode (the GQA swap path), out= and return_softmax_lse (cascade attention),
num_splits 0 and 1 as vLLM passes them; what FA2 cannot do is refused as vLLM expects."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flash_attn_gpu"))
from paged_reference import max_err, paged_cache, ref_varlen  # noqa: E402



@pytest.fixture(autouse=True)
def _fa2_built():
    """The wheel's FA2 (products/vllm.toml [family.flash_attn_2]) must be there."""
    from vllm.vllm_flash_attn import flash_attn_interface as fi
    if not fi.FA2_AVAILABLE:
        pytest.fail(f"vllm_flash_attn has no FA2 (_vllm_fa2_C): {fi.FA2_UNAVAILABLE_REASON}")


BLOCK_SIZES = [16, 32, 64, 128, 256]
SEQLENS_K = [1, 17, 130, 700, 1029, 4100]
CASES = [  # (causal, window, softcap)
    (True, (-1, -1), 0.0), (False, (-1, -1), 0.0), (True, (127, 0), 0.0), (True, (-1, -1), 50.0),
]


def _head_dim():
    import json
    import vllm
    info = json.loads((Path(vllm.__file__).parent / "_build_info.json").read_text())
    dims = info["kernels"]["flash_attn_2"]["head_dims"]
    return 128 if 128 in dims else dims[0]


def _dtype():
    import json
    import vllm
    info = json.loads((Path(vllm.__file__).parent / "_build_info.json").read_text())
    return torch.bfloat16 if "bf16" in info["kernels"]["flash_attn_2"]["dtypes"] else torch.float16


def _run(block_size, heads, case, seqlens_q, num_splits=0):
    from vllm.vllm_flash_attn import flash_attn_varlen_func
    causal, window, softcap = case
    hq, hk = heads
    d, dtype = _head_dim(), _dtype()
    kc, vc, table, ks, vs = paged_cache(SEQLENS_K, block_size, hk, d, dtype)
    lq = [min(a, b) for a, b in zip(seqlens_q, SEQLENS_K)]
    cu_q = torch.tensor([0] + torch.tensor(lq).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
    seqused = torch.tensor(SEQLENS_K, dtype=torch.int32, device="cuda")
    q = torch.randn(sum(lq), hq, d, device="cuda", dtype=dtype)
    out = torch.full_like(q, float("nan"))
    res = flash_attn_varlen_func(q, kc, vc, max(lq), cu_q, max(SEQLENS_K), seqused_k=seqused,
                                 causal=causal, window_size=list(window), softcap=softcap,
                                 block_table=table, out=out, return_softmax_lse=True,
                                 num_splits=num_splits, fa_version=2)
    o, lse = res
    assert o.data_ptr() == out.data_ptr()            # written into vLLM's buffer
    ref, ref_lse = ref_varlen(q, cu_q, ks, vs, causal=causal, window=window, softcap=softcap)
    assert max_err(out, ref) < 2e-2
    assert lse.shape == (hq, sum(lq))
    finite = torch.isfinite(ref_lse)
    assert (lse[finite] - ref_lse[finite]).abs().max().item() < 2e-2


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("heads", [(32, 8), (8, 8), (16, 1)])
@pytest.mark.parametrize("case", CASES)
def test_prefill_chunked_paged(block_size, heads, case):
    _run(block_size, heads, case, [1, 5, 64, 3, 130, 257])


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("heads", [(32, 8), (8, 8)])
@pytest.mark.parametrize("num_splits", [0, 1])
def test_decode_paged(block_size, heads, num_splits):
    # max_seqlen_q == 1 with GQA: the swapped layout (q heads folded into the sequence axis)
    _run(block_size, heads, (True, (-1, -1), 0.0), [1] * len(SEQLENS_K), num_splits)


def test_alibi_and_non_paged_varlen():
    from vllm.vllm_flash_attn import flash_attn_varlen_func
    d, dtype = _head_dim(), _dtype()
    lens = [7, 300]
    cu = torch.tensor([0, 7, 307], dtype=torch.int32, device="cuda")
    q = torch.randn(307, 4, d, device="cuda", dtype=dtype)
    k = torch.randn(307, 4, d, device="cuda", dtype=dtype)
    v = torch.randn(307, 4, d, device="cuda", dtype=dtype)
    out = flash_attn_varlen_func(q, k, v, 300, cu, 300, cu_seqlens_k=cu, causal=True, fa_version=2)
    ks = [k[:7], k[7:]]
    vs = [v[:7], v[7:]]
    ref, _ = ref_varlen(q, cu, ks, vs, causal=True)
    assert max_err(out, ref) < 2e-2
    slopes = torch.rand(4, device="cuda", dtype=torch.float32)
    out_a = flash_attn_varlen_func(q, k, v, 300, cu, 300, cu_seqlens_k=cu, causal=True,
                                   alibi_slopes=slopes, fa_version=2)
    assert not torch.allclose(out_a, out) and torch.isfinite(out_a).all()


def test_refusals_as_vllm_expects():
    from vllm.vllm_flash_attn import flash_attn_varlen_func
    from vllm.vllm_flash_attn.flash_attn_interface import sparse_attn_varlen_func
    d, dtype = _head_dim(), _dtype()
    kc, vc, table, _, _ = paged_cache([40], 16, 2, d, dtype)
    q = torch.randn(1, 2, d, device="cuda", dtype=dtype)
    cu = torch.tensor([0, 1], dtype=torch.int32, device="cuda")
    used = torch.tensor([40], dtype=torch.int32, device="cuda")
    with pytest.raises(NotImplementedError, match="s_aux"):      # vLLM's own interface
        flash_attn_varlen_func(q, kc, vc, 1, cu, 40, seqused_k=used, block_table=table,
                               s_aux=torch.zeros(2, device="cuda"), fa_version=2)
    with pytest.raises(NotImplementedError, match="num_splits > 1"):
        flash_attn_varlen_func(q, kc, vc, 1, cu, 40, seqused_k=used, block_table=table,
                               num_splits=2, fa_version=2)
    with pytest.raises(NotImplementedError, match="vertical-slash block-sparse attention"):
        z = torch.zeros(1, 2, 1, dtype=torch.int32, device="cuda")
        sparse_attn_varlen_func(q, q, q, z, z[..., None], z, z[..., None], cu, cu, 1, 1)
    kc8, vc8, table8, _, _ = paged_cache([40], 8, 2, d, dtype)
    with pytest.raises(RuntimeError, match="multiple of 16"):
        flash_attn_varlen_func(q, kc8, vc8, 1, cu, 40, seqused_k=used, block_table=table8,
                               fa_version=2)


def test_vllm_selects_fa2_without_sinks_and_refuses_sinks():
    from vllm.v1.attention.backends import fa_utils
    assert fa_utils.is_fa_version_supported(2)
    assert not fa_utils.flash_attn_supports_sinks()   # gpt-oss: another backend, with a reason
