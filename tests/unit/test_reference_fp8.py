"""CPU tests of the FP8 references (blackwheel.testing.fp8)."""
import pytest
import torch

from blackwheel.testing.fp8 import dequantize_fp8, fp8_scale, quantize_fp8, scaled_mm_reference


def test_per_tensor_scale_maps_amax_to_448():
    torch.manual_seed(0)
    x = torch.randn(8, 32)
    q, s = quantize_fp8(x)
    assert tuple(s.shape) == (1,)
    assert s.item() == pytest.approx(x.abs().max().item() / 448)
    assert q.float().abs().max().item() == 448.0


def test_round_trip_relative_error_is_half_ulp():
    torch.manual_seed(1)
    x = torch.randn(64, 64)
    q, s = quantize_fp8(x, granularity="token")
    err = (dequantize_fp8(q, s) - x).abs()
    # e4m3 keeps 3 mantissa bits: rounding error <= 2**-4 relative for normals,
    # <= half the smallest subnormal step (2**-10 * scale) below 2**-6 * scale
    bound = torch.maximum(x.abs() * 2 ** -4, 2 ** -10 * s.expand_as(x))
    assert bool((err <= bound * (1 + 1e-6)).all())


def test_per_token_and_per_channel_shapes_and_maxima():
    torch.manual_seed(2)
    x = torch.randn(5, 48) * torch.arange(1, 6).float().unsqueeze(1)
    qt, st = quantize_fp8(x, granularity="token")
    assert tuple(st.shape) == (5, 1)
    assert torch.equal(qt.float().abs().amax(dim=1), torch.full((5,), 448.0))
    qc, sc = quantize_fp8(x, granularity="channel")
    assert tuple(sc.shape) == (1, 48)
    assert torch.equal(qc.float().abs().amax(dim=0), torch.full((48,), 448.0))


def test_zero_row_gets_scale_one_and_zeros():
    x = torch.randn(3, 16)
    x[1] = 0
    q, s = quantize_fp8(x, granularity="token")
    assert s[1].item() == 1.0
    assert bool((q[1].float() == 0).all())


def test_values_beyond_the_scale_saturate_not_nan():
    q, _ = quantize_fp8(torch.tensor([[1000.0, -1000.0]]), scale=torch.tensor([1.0]))
    assert q.float().tolist() == [[448.0, -448.0]]


def test_bad_granularity_and_non_finite():
    with pytest.raises(ValueError, match="granularity"):
        fp8_scale(torch.randn(2, 2), "block")
    with pytest.raises(ValueError, match="2-D"):
        fp8_scale(torch.randn(2, 2, 2), "token")
    with pytest.raises(ValueError, match="inf/NaN"):
        fp8_scale(torch.tensor([float("nan")]))


def test_scaled_mm_reference_against_loops():
    torch.manual_seed(3)
    m, k, n = 3, 16, 4
    a, sa = quantize_fp8(torch.randn(m, k), granularity="token")
    w, sw = quantize_fp8(torch.randn(n, k), granularity="token")
    b, sb = w.t(), sw.reshape(1, n)
    bias = torch.randn(n)
    out, mag = scaled_mm_reference(a, b, sa, sb, bias)
    for i in range(m):
        for j in range(n):
            terms = [a[i, t].float().item() * sa[i, 0].item() * b[t, j].float().item() * sb[0, j].item()
                     for t in range(k)]
            assert out[i, j].item() == pytest.approx(sum(terms) + bias[j].item(), rel=1e-5, abs=1e-5)
            assert mag[i, j].item() == pytest.approx(sum(abs(t) for t in terms), rel=1e-5)
