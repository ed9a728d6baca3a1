"""CPU tests of the plain-torch FP4 references (blackwheel.testing.fp4)."""
import math

import pytest
import torch

from blackwheel.testing import fp4
from blackwheel.testing.fp4 import (
    dequantize_mxfp4, dequantize_nvfp4, e2m1_decode, e2m1_encode, e8m0_to_float, mxfp4_scale_exponent,
    pack_e2m1, quantize_mxfp4, quantize_nvfp4, swizzle_scales, unpack_e2m1, unswizzle_scales,
)

MAGS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def _threshold_cast(x):
    """vLLM test-suite style e2m1 rounding by explicit thresholds (independent of ours)."""
    s = torch.sign(x)
    a = x.abs()
    out = torch.zeros_like(a)
    for lo, hi, v, lo_incl, hi_incl in [(0.25, 0.75, 0.5, False, False), (0.75, 1.25, 1.0, True, True),
                                        (1.25, 1.75, 1.5, False, False), (1.75, 2.5, 2.0, True, True),
                                        (2.5, 3.5, 3.0, False, False), (3.5, 5.0, 4.0, True, True)]:
        m = ((a >= lo) if lo_incl else (a > lo)) & ((a <= hi) if hi_incl else (a < hi))
        out[m] = v
    out[a > 5.0] = 6.0
    return out * s


def test_decode_all_codes():
    got = e2m1_decode(torch.arange(16, dtype=torch.uint8))
    assert got[:8].tolist() == MAGS
    assert got[8:].tolist() == [-m for m in MAGS]


def test_encode_exact_values_round_trip():
    codes = torch.arange(16, dtype=torch.uint8)
    assert torch.equal(e2m1_encode(e2m1_decode(codes)), codes)


@pytest.mark.parametrize("x,want", [(0.25, 0.0), (0.75, 1.0), (1.25, 1.0), (1.75, 2.0), (2.5, 2.0),
                                    (3.5, 4.0), (5.0, 4.0), (0.2500001, 0.5), (4.9999, 4.0), (5.0001, 6.0),
                                    (7.0, 6.0), (1e9, 6.0), (-5.0, -4.0), (-0.3, -0.5), (-1e9, -6.0)])
def test_encode_ties_to_even_and_saturates(x, want):
    assert e2m1_decode(e2m1_encode(torch.tensor([x]))).item() == want


def test_encode_matches_threshold_rounding_on_a_dense_grid():
    x = torch.linspace(-7, 7, 28001)
    assert torch.equal(e2m1_decode(e2m1_encode(x)), _threshold_cast(x))


def test_negative_values_rounding_to_zero_keep_the_sign_bit():
    assert e2m1_encode(torch.tensor([-0.1, 0.1])).tolist() == [8, 0]


def test_pack_order_low_nibble_first():
    # element 0 -> low nibble, element 1 -> high nibble (vLLM / ModelOpt)
    codes = torch.tensor([[1, 2, 0xF, 0x7]], dtype=torch.uint8)
    assert pack_e2m1(codes).tolist() == [[0x21, 0x7F]]
    assert torch.equal(unpack_e2m1(pack_e2m1(codes)), codes)


def test_unpack_matches_vllm_bit_trick_for_all_bytes():
    """vLLM's rand_marlin_weight_*_like decodes byte b as [low nibble, high nibble] via
    ((b & 0x80) | ((b & 0x70) >> 2)) viewed as e4m3 times 2**6; check all 256 bytes."""
    b = torch.arange(256, dtype=torch.uint8).reshape(1, 256)

    def part(v):
        return ((v & 0b10000000) | ((v & 0b01110000) >> 2)).view(torch.float8_e4m3fn).float() * 2 ** 6
    hi = part(b)
    lo = part(b << 4)
    vllm = torch.stack([lo, hi], dim=-1).reshape(1, 512)
    ours = e2m1_decode(unpack_e2m1(b))
    assert torch.equal(ours, vllm)


def test_pack_rejects_odd_length_and_bad_codes():
    with pytest.raises(ValueError, match="even"):
        pack_e2m1(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="0..15"):
        pack_e2m1(torch.tensor([16, 0], dtype=torch.uint8))
    with pytest.raises(TypeError):
        pack_e2m1(torch.zeros(2, dtype=torch.int32))


# ---------------------------------------------------------------- NVFP4

def test_nvfp4_default_global_scale_and_max_block():
    torch.manual_seed(0)
    x = torch.randn(4, 64)
    x[2, 17] = 10.0                       # the tensor max, in block (2, 1)
    q = quantize_nvfp4(x)
    assert q.global_scale.item() == pytest.approx(448 * 6 / 10.0, rel=1e-7)
    sf = q.block_scales.float()
    assert sf[2, 1].item() == 448.0       # largest block lands on e4m3's max
    assert sf.max().item() == 448.0
    codes = unpack_e2m1(q.packed)
    assert codes[2, 17].item() == 0x7     # +6
    assert dequantize_nvfp4(q.packed, q.block_scales, q.global_scale)[2, 17].item() == pytest.approx(10.0, rel=1e-6)


def test_nvfp4_round_trip_within_half_step():
    torch.manual_seed(1)
    x = torch.randn(32, 256, dtype=torch.bfloat16)
    q = quantize_nvfp4(x)
    deq = q.dequantize()
    step = (q.block_scales.float() / q.global_scale).repeat_interleave(16, dim=-1)
    err = (deq - x.float()).abs()
    # e2m1's widest gap (4 -> 6) is 2 units, so the rounding error is <= 1 unit of block scale
    assert bool((err <= step * (1 + 1e-6)).all())
    # and typically much smaller: relative RMS error of FP4 is ~10 %
    assert (err.pow(2).mean().sqrt() / x.float().pow(2).mean().sqrt()).item() < 0.2


def test_nvfp4_exactly_representable_values_are_exact():
    torch.manual_seed(2)
    codes = torch.randint(0, 16, (8, 64), dtype=torch.uint8)
    codes[:, ::16] = 0x7                  # every block holds +6 so amax = 6 * block scale
    bscale = 2.0 ** torch.randint(-3, 4, (8, 4)).float()
    x = e2m1_decode(codes) * bscale.repeat_interleave(16, dim=-1)
    gs = torch.tensor(1.0)
    q = quantize_nvfp4(x, gs)             # block scale = amax / 6 = bscale, exact in e4m3
    assert torch.equal(q.block_scales.float(), bscale)
    assert torch.equal(q.dequantize(), x)
    assert torch.equal(unpack_e2m1(q.packed) & 0x7, codes & 0x7)


def test_nvfp4_all_zero_block():
    x = torch.randn(2, 48)
    x[1, 16:32] = 0
    q = quantize_nvfp4(x)
    assert q.block_scales.float()[1, 1].item() == 0.0
    assert bool((unpack_e2m1(q.packed)[1, 16:32] == 0).all())
    deq = q.dequantize()
    assert bool(torch.isfinite(deq).all())
    assert bool((deq[1, 16:32] == 0).all())


def test_nvfp4_all_zero_tensor():
    q = quantize_nvfp4(torch.zeros(1, 16))
    assert q.global_scale.item() == 1.0
    assert bool((q.dequantize() == 0).all())


def test_nvfp4_block_scale_saturates_with_small_global_scale():
    x = torch.full((1, 16), 1000.0)
    q = quantize_nvfp4(x, torch.tensor(100.0))   # wants 100 * 1000 / 6 > 448
    assert q.block_scales.float().item() == 448.0
    assert bool(torch.isfinite(q.dequantize()).all())


def test_nvfp4_matches_vllm_reference_algorithm():
    """vLLM's tests/kernels/quantization ref_nvfp4_quant, rewritten here."""
    torch.manual_seed(3)
    x = torch.randn(16, 128)
    gs = (448 * 6 / x.abs().max()).float()
    xb = x.reshape(16, 8, 16)
    vec_max = xb.abs().amax(-1, keepdim=True)
    scale = (gs * (vec_max / 6.0)).to(torch.float8_e4m3fn).float()
    out_scale = torch.where(scale == 0, torch.zeros_like(scale), 1.0 / (scale / gs))
    want = _threshold_cast((xb * out_scale).clamp(-6, 6)).reshape(16, 128)
    q = quantize_nvfp4(x, gs)
    assert torch.equal(q.block_scales.float(), scale.squeeze(-1))
    assert torch.equal(e2m1_decode(unpack_e2m1(q.packed)), want)


def test_nvfp4_rejects_bad_input():
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_nvfp4(torch.randn(2, 24))
    with pytest.raises(ValueError, match="inf/NaN"):
        quantize_nvfp4(torch.tensor([[float("inf")] * 16]))
    with pytest.raises(TypeError):
        quantize_nvfp4(torch.ones(2, 16, dtype=torch.int32))
    with pytest.raises(ValueError, match="> 0"):
        quantize_nvfp4(torch.randn(1, 16), torch.tensor(0.0))


# ---------------------------------------------------------------- MXFP4

@pytest.mark.parametrize("amax,floor_e,ceil_e", [
    (1.0, -2, -2), (6.0, 0, 0), (6.0001, 0, 1), (7.99, 0, 1), (8.0, 1, 1), (3.0, -1, -1), (3.01, -1, 0),
    (0.75, -3, -3), (0.0, 0, 0), (2.0 ** -140, -127, -127), (2.0 ** 127, 125, 125),
])
def test_mxfp4_scale_exponent(amax, floor_e, ceil_e):
    a = torch.tensor([amax])
    assert mxfp4_scale_exponent(a, "floor").item() == floor_e
    assert mxfp4_scale_exponent(a, "ceil").item() == ceil_e


def test_mxfp4_scale_exponent_matches_math_log2():
    torch.manual_seed(4)
    a = torch.exp(torch.randn(2000) * 8)
    want_floor = [math.floor(math.log2(v)) - 2 for v in a.double().tolist()]
    want_ceil = [math.ceil(math.log2(v / 6.0)) for v in a.double().tolist()]
    assert mxfp4_scale_exponent(a, "floor").tolist() == want_floor
    assert mxfp4_scale_exponent(a, "ceil").tolist() == want_ceil


def test_mxfp4_e8m0_bytes_and_decode():
    torch.manual_seed(5)
    x = torch.randn(3, 64) * 5
    q = quantize_mxfp4(x)
    assert q.scales.dtype == torch.float8_e8m0fnu
    e = mxfp4_scale_exponent(x.reshape(3, 2, 32).abs().amax(-1))
    assert torch.equal(q.scales.view(torch.uint8).int(), e + 127)
    assert torch.equal(e8m0_to_float(q.scales), torch.ldexp(torch.ones(3, 2), e))
    assert math.isnan(e8m0_to_float(torch.tensor([255], dtype=torch.uint8)).item())
    assert e8m0_to_float(torch.tensor([0], dtype=torch.uint8)).item() == 2.0 ** -127


def test_mxfp4_saturation_under_ocp_floor_rule():
    x = torch.zeros(1, 32)
    x[0, 0] = 7.5                         # floor(log2 7.5) - 2 = 0 -> scale 1 -> 7.5 saturates to 6
    x[0, 1] = -1.0
    q = quantize_mxfp4(x, "floor")
    deq = q.dequantize()
    assert deq[0, 0].item() == 6.0 and deq[0, 1].item() == -1.0
    q2 = quantize_mxfp4(x, "ceil")        # scale 2: 7.5/2 = 3.75 -> 4 -> 8
    assert q2.dequantize()[0, 0].item() == 8.0


def test_mxfp4_exact_values_and_zero_block():
    torch.manual_seed(6)
    codes = torch.randint(0, 16, (4, 64), dtype=torch.uint8)
    codes[:, ::32] = 0x6                  # 4.0 in each block -> floor exponent = e exactly
    e = torch.randint(-10, 10, (4, 2))
    x = e2m1_decode(codes) * torch.ldexp(torch.ones(4, 2), e).repeat_interleave(32, dim=-1)
    x[3, 32:] = 0
    q = quantize_mxfp4(x)
    assert torch.equal(dequantize_mxfp4(q.packed, q.scales), x)
    assert q.scales.view(torch.uint8)[3, 1].item() == 127     # zero block -> scale 1.0
    assert torch.equal(q.scales.view(torch.uint8)[:3].int(), (e[:3] + 127).int())


def test_mxfp4_round_trip_bound():
    torch.manual_seed(7)
    x = torch.randn(16, 256)
    q = quantize_mxfp4(x, "ceil")         # no saturation: error <= one scale unit
    s = e8m0_to_float(q.scales).repeat_interleave(32, dim=-1)
    assert bool(((q.dequantize() - x).abs() <= s).all())


def test_mxfp4_rejects_bad_k():
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_mxfp4(torch.randn(2, 48))
    with pytest.raises(ValueError, match="floor"):
        mxfp4_scale_exponent(torch.ones(1), "nearest")


# ---------------------------------------------------------------- swizzle

def test_swizzle_layout_index_formula():
    rows, cols = 150, 9
    lin = torch.randint(1, 255, (rows, cols), dtype=torch.uint8)
    swz = swizzle_scales(lin)
    assert tuple(swz.shape) == (256, 12)
    flat = swz.reshape(-1)
    k_tiles = 12 // 4
    for r in range(rows):
        for c in range(cols):
            mt, kt = r // 128, c // 4
            off = (((mt * k_tiles + kt) * 32 + r % 32) * 4 + (r % 128) // 32) * 4 + c % 4
            assert flat[off].item() == lin[r, c].item()
    assert int((swz != 0).sum()) == rows * cols      # padding is zero


def test_swizzle_round_trip_keeps_dtype():
    s = (torch.rand(77, 20) * 400).to(torch.float8_e4m3fn)
    swz = swizzle_scales(s)
    assert swz.dtype == torch.float8_e4m3fn
    assert tuple(swz.shape) == fp4.swizzled_scale_shape(77, 20 * 16)
    back = unswizzle_scales(swz, 77, 20)
    assert torch.equal(back.view(torch.uint8), s.view(torch.uint8))
