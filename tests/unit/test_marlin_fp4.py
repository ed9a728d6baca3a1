"""CPU tests of the FP4 Marlin weight/scale preparation (blackwheel.marlin_fp4) and
of the reference repack permutation. The repack kernel itself is checked on the
GPU host (smoke case marlin_fp4/repack)."""
import pytest
import torch

from blackwheel import marlin_fp4 as mf
from blackwheel.testing.fp4 import quantize_mxfp4, quantize_nvfp4
from blackwheel.testing.marlin_repack import marlin_repack_reference, unpack_gptq


def test_float4_e2m1f_type_id():
    # exponent=2 (bits 0-7), mantissa=1 (bits 8-15), signed (bit 16), bias 0 (17-48),
    # finite_values_only (bit 49), nan_repr NONE=0 (50-57)
    assert mf.FLOAT4_E2M1F_ID == 2 + (1 << 8) + (1 << 16) + (1 << 49) == 562949953487106


@pytest.mark.parametrize("n,k,g,want", [
    (4096, 4096, 16, (4096, 4096)),
    (1040, 800, 32, (1152, 832)),      # (1088*896) > (1152*832)
    (64, 128, 16, (64, 128)),
    (128, 64, 32, (128, 64)),
    (100, 48, 16, (128, 64)),
])
def test_padded_nk(n, k, g, want):
    pn, pk = mf.padded_nk(n, k, g)
    assert (pn, pk) == want
    assert (pn % 64 == 0 and pk % 128 == 0) or (pn % 128 == 0 and pk % 64 == 0)
    assert pk % g == 0


def test_gptq_layout_bit_positions():
    torch.manual_seed(0)
    n, k = 3, 16
    codes = torch.randint(0, 16, (n, k), dtype=torch.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    q = mf.to_gptq_layout(packed)
    assert q.dtype == torch.int32 and tuple(q.shape) == (k // 8, n)
    for nn in range(n):
        for kk in range(k):
            word = q[kk // 8, nn].item() & 0xFFFFFFFF
            assert (word >> (4 * (kk % 8))) & 0xF == codes[nn, kk].item()
    assert torch.equal(unpack_gptq(q).T.to(torch.uint8), codes)


def test_repack_reference_is_a_bijection_of_positions():
    k, n = 16, 64
    seen = set()
    for kk in range(k):
        for nn in range(n):
            codes = torch.zeros(k, n, dtype=torch.int64)
            codes[kk, nn] = 0xF
            words = torch.zeros(k // 8, n, dtype=torch.int64)
            for i in range(8):
                words |= codes[i::8] << (4 * i)
            words = torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)
            out = marlin_repack_reference(words, k, n)
            assert tuple(out.shape) == (k // 16, n * 2)
            nz = (out != 0).nonzero().tolist()
            assert len(nz) == 1
            (r, c), = nz
            word = out[r, c].item() & 0xFFFFFFFF
            nib = [i for i in range(8) if (word >> (4 * i)) & 0xF]
            assert len(nib) == 1 and (word >> (4 * nib[0])) & 0xF == 0xF
            seen.add((r, c, nib[0]))
    assert len(seen) == k * n


def test_permute_scales_is_a_permutation():
    s = torch.arange(8 * 128, dtype=torch.float32).reshape(8, 128)
    p = mf.permute_scales(s, size_k=128, size_n=128, group_size=16)
    assert tuple(p.shape) == (8, 128)
    assert torch.equal(p.flatten().sort().values, s.flatten())
    perm, _ = mf.scale_perms()
    assert torch.equal(p.reshape(-1, 64)[0], s.reshape(-1, 64)[0][perm])


def _undo_0213(t):
    return t.reshape(-1, 4)[:, [0, 2, 1, 3]].reshape(t.shape)


def _kernel_scale_value(b: torch.Tensor, act_dtype) -> torch.Tensor:
    """What Marlin's dequant_fp8_scales makes of a processed scale byte (16-bit lane,
    byte in the high half): fp16: bits = b << 7; bf16: ((b & 0x80) << 7) | ((b & 0x7F) << 4)."""
    b = b.view(torch.uint8).to(torch.int32)
    if act_dtype == torch.float16:
        bits = b << 7
        return bits.to(torch.int16).view(torch.float16).float()
    bits = ((b & 0x80) << 7) | ((b & 0x7F) << 4)
    return bits.to(torch.int16).view(torch.bfloat16).float()


@pytest.mark.parametrize("act_dtype,fp4_bias", [(torch.float16, 2.0 ** -14), (torch.bfloat16, 2.0 ** -126)])
def test_nvfp4_scale_encoding_decodes_to_the_true_scale(act_dtype, fp4_bias):
    """Marlin puts e2m1 bits straight into fp16/bf16 (value * 2**-14 / 2**-126), multiplies
    by the decoded scale byte and by the processed global scale: that product must be
    block_scale / global_scale exactly."""
    torch.manual_seed(1)
    w = torch.randn(64, 256)
    q = quantize_nvfp4(w)
    s = q.block_scales.T.contiguous().to(act_dtype)        # [K/16, N], unpermuted
    proc, factor = mf.nvfp4_process_scales(s, act_dtype)
    assert proc.dtype == torch.float8_e4m3fn and proc.shape == s.shape
    g = mf.nvfp4_process_global_scale(1.0 / q.global_scale, act_dtype) / factor
    dec = _undo_0213(_kernel_scale_value(proc, act_dtype))
    got = dec.double() * float(g) * fp4_bias
    want = q.block_scales.T.double() / q.global_scale.double()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    if act_dtype == torch.float16:
        assert factor == 1.0
    else:
        assert factor >= 1.0 and (factor == 1.0 or float(s.float().max()) * factor <= 448)


def test_nvfp4_scales_below_2_pow_minus_6_are_dropped_and_negative_refused():
    s = torch.tensor([[2.0 ** -7, 2.0 ** -6, 1.0, 448.0]], dtype=torch.float16)
    proc, factor = mf.nvfp4_process_scales(s, torch.float16)
    dec = _undo_0213(_kernel_scale_value(proc, torch.float16)) / 2 ** 7
    assert dec.tolist() == [[0.0, 2.0 ** -6, 1.0, 448.0]]
    with pytest.raises(ValueError, match=">= 0"):
        mf.nvfp4_process_scales(-s, torch.float16)


def test_nvfp4_marlin_scales_shapes_and_padding():
    torch.manual_seed(2)
    n, k = 100, 48
    q = quantize_nvfp4(torch.randn(n, k))
    pn, pk = mf.padded_nk(n, k, 16)
    s, g = mf.nvfp4_marlin_scales(q.block_scales, q.global_scale, n, k, pn, pk, torch.bfloat16)
    assert tuple(s.shape) == (pk // 16, pn) and s.dtype == torch.float8_e4m3fn
    assert g.dtype == torch.float32 and g.numel() == 1 and torch.isfinite(g).all()
    # padding stays zero: as many zero bytes as padded entries (random data has no zero scale)
    assert int((s.view(torch.uint8) == 0).sum()) == pk // 16 * pn - n * (k // 16)
    with pytest.raises(ValueError, match="global_scale"):
        mf.nvfp4_marlin_scales(q.block_scales, 0.0, n, k, pn, pk, torch.bfloat16)


def test_mxfp4_marlin_scales_are_the_permuted_e8m0_values():
    torch.manual_seed(3)
    n, k = 128, 256
    q = quantize_mxfp4(torch.randn(n, k))
    s = mf.mxfp4_marlin_scales(q.scales, n, k, n, k, torch.bfloat16)
    assert s.dtype == torch.float8_e8m0fnu and tuple(s.shape) == (k // 32, n)
    want = mf.permute_scales(q.scales.view(torch.uint8).T.contiguous().float(), k, n, 32)
    assert torch.equal(_undo_0213(s.view(torch.uint8)).float(), want)


def test_mxfp4_refuses_fp16_and_nan_scales():
    q = quantize_mxfp4(torch.randn(64, 128))
    with pytest.raises(TypeError, match="bf16 activations only"):
        mf.prepare_mxfp4_weight(q.packed, q.scales, torch.float16)
    bad = q.scales.view(torch.uint8).clone()
    bad[0, 0] = 255
    with pytest.raises(ValueError, match="NaN"):
        mf.mxfp4_marlin_scales(bad, 64, 128, 64, 128, torch.bfloat16)


def test_prepare_checks_shapes_before_any_gpu_work():
    q = quantize_nvfp4(torch.randn(64, 128))
    with pytest.raises(ValueError, match=r"\[N, K // 16\] = \[64, 8\]"):
        mf.prepare_nvfp4_weight(q.packed, q.block_scales[:, :4], q.global_scale, torch.bfloat16)
    with pytest.raises(TypeError, match="packed uint8"):
        mf.prepare_nvfp4_weight(q.packed.int(), q.block_scales, q.global_scale, torch.bfloat16)
    with pytest.raises(TypeError, match="act_dtype"):
        mf.prepare_nvfp4_weight(q.packed, q.block_scales, q.global_scale, torch.float32)
    with pytest.raises(ValueError, match=r"bias must have shape \[N\]"):
        mf.prepare_nvfp4_weight(q.packed, q.block_scales, q.global_scale, torch.bfloat16, torch.zeros(3))


def test_permute_bias_uses_the_single_permutation():
    b = torch.arange(64, dtype=torch.float32)
    _, single = mf.scale_perms()
    p = mf.permute_bias(b)
    assert torch.equal(p[:32], b[:32][single]) and torch.equal(p.sort().values, b)
