"""The eager fast path of each op (issue 13): a well-formed call on CUDA tensors skips
the detailed checks and gives exactly what the checked path gives; every malformed
call on CUDA tensors (which the fast path must not let through) still raises the
checks' clear error."""
from __future__ import annotations

import pytest
import torch

from blackwheel import marlin_fp4, ops
from blackwheel.testing import quantize_fp8
from blackwheel.testing.fp4 import quantize_nvfp4


def _needs(family: str, device) -> None:
    try:
        ops.kernel_target(family, device)
    except ops.KernelUnavailableError as e:
        pytest.skip(str(e))


@pytest.fixture
def count_checks(monkeypatch):
    """Counts calls of the detailed check functions (they still run when called)."""
    calls = []
    for name in ("_check_scaled_mm", "_check_marlin_fp4_gemm", "_check_flash_attn"):
        real = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _real=real, _n=name, **k: (calls.append(_n), _real(*a, **k))[1])
    return calls


def _fp8_inputs(device, m=16, n=256, k=128):
    a, sa = quantize_fp8(torch.randn(m, k, device=device))
    w, sw = quantize_fp8(torch.randn(n, k, device=device) * 0.05)
    return a, w.t(), sa, sw


def test_scaled_mm_fast_path_equals_checked_path(cuda_device, count_checks):
    _needs("scaled_mm", cuda_device)
    a, b, _, sw = _fp8_inputs(cuda_device)
    sa = torch.rand(16, 1, device=cuda_device) + 0.5            # per-token [M, 1]
    bias = torch.randn(256, device=cuda_device, dtype=torch.bfloat16)
    fast = ops.scaled_mm(a, b, sa, sw, torch.bfloat16, bias)
    assert count_checks == [], "a well-formed call went through the detailed checks"
    # the same per-token scales as a 1-D [M] tensor: accepted by the checks, not by the
    # fast path (which takes [1] / [M, 1] only), so this call runs the checked path
    checked = ops.scaled_mm(a, b, sa.reshape(-1), sw, torch.bfloat16, bias)
    assert count_checks == ["_check_scaled_mm"]
    assert torch.equal(fast, checked)


@pytest.mark.parametrize("case, error, match", [
    ("a_bf16", TypeError, "a must be torch.float8_e4m3fn"),
    ("out_fp32", TypeError, "out_dtype must be"),
    ("k_mismatch", ValueError, "do not multiply"),
    ("n_not_16", ValueError, "multiples of 16"),
    ("a_noncontig", ValueError, "a must be row-major contiguous"),
    ("b_rowmajor", ValueError, "b must be column-major"),
    ("scale_shape", ValueError, "scale_a must have shape"),
    ("scale_f16", TypeError, "scale_b must be torch.float32"),
    ("scale_cpu", ValueError, "scale_a is on cpu"),
    ("bias_dtype", TypeError, "bias must have out_dtype"),
    ("bias_shape", ValueError, "bias must have shape"),
    ("a_misaligned", ValueError, "16-byte boundary"),
])
def test_scaled_mm_malformed_calls_still_raise(cuda_device, case, error, match):
    _needs("scaled_mm", cuda_device)
    a, b, sa, sw = _fp8_inputs(cuda_device, m=16, n=256, k=128)
    out_dtype, bias = torch.bfloat16, None
    if case == "a_bf16":
        a = a.to(torch.bfloat16)
    elif case == "out_fp32":
        out_dtype = torch.float32
    elif case == "k_mismatch":
        b = quantize_fp8(torch.randn(256, 144, device=cuda_device))[0].t()
    elif case == "n_not_16":
        b, sw = quantize_fp8(torch.randn(250, 128, device=cuda_device))[0].t(), sw
    elif case == "a_noncontig":
        a = quantize_fp8(torch.randn(128, 16, device=cuda_device))[0].t()
    elif case == "b_rowmajor":
        b = b.contiguous()
    elif case == "scale_shape":
        sa = torch.ones(3, 1, device=cuda_device)
    elif case == "scale_f16":
        sw = sw.half()
    elif case == "scale_cpu":
        sa = sa.cpu()
    elif case == "bias_dtype":
        bias = torch.zeros(256, device=cuda_device, dtype=torch.float16)
    elif case == "bias_shape":
        bias = torch.zeros(255, device=cuda_device, dtype=torch.bfloat16)
    elif case == "a_misaligned":
        big = quantize_fp8(torch.randn(16 * 128 + 1, device=cuda_device))[0]
        a = big[1:].view(16, 128)
    with pytest.raises(error, match=match):
        ops.scaled_mm(a, b, sa, sw, out_dtype, bias)


def _nvfp4_weight(device, n=256, k=256, dtype=torch.bfloat16):
    q = quantize_nvfp4(torch.randn(n, k, device=device, dtype=dtype) * 0.05)
    return marlin_fp4.prepare_nvfp4_weight(q.packed, q.block_scales, q.global_scale, dtype)


def test_marlin_fast_path_equals_checked_path(cuda_device, count_checks):
    _needs("marlin_fp4", cuda_device)
    wm = _nvfp4_weight(cuda_device)
    x = torch.randn(4, 256, device=cuda_device, dtype=torch.bfloat16)
    fast = ops.marlin_fp4_gemm(x, wm)
    assert count_checks == [], "a well-formed call went through the detailed checks"
    ws = marlin_fp4.make_workspace(cuda_device)           # an explicit workspace takes the checked path
    checked = ops.marlin_fp4_gemm(x, wm, workspace=ws)
    assert count_checks == ["_check_marlin_fp4_gemm"]
    assert torch.equal(fast, checked)


def test_marlin_malformed_calls_still_raise(cuda_device):
    _needs("marlin_fp4", cuda_device)
    wm = _nvfp4_weight(cuda_device)
    x = torch.randn(4, 256, device=cuda_device, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="prepared for torch.bfloat16"):
        ops.marlin_fp4_gemm(x.half(), wm)
    with pytest.raises(ValueError, match=r"x must be \[..., K\] with K = 256"):
        ops.marlin_fp4_gemm(x[:, :128], wm)
    with pytest.raises(ValueError, match="x is on cpu"):
        ops.marlin_fp4_gemm(x.cpu(), wm)
    import dataclasses
    mixed = dataclasses.replace(wm, scales=wm.scales.cpu())     # a weight split across devices
    assert mixed._device is None
    with pytest.raises(ValueError, match="scales is on cpu"):
        ops.marlin_fp4_gemm(x, mixed)
    with pytest.raises(TypeError, match="workspace must be torch.int32"):
        ops.marlin_fp4_gemm(x, wm, workspace=torch.zeros(16, device=cuda_device))


def _qkv(device, d=64, dtype=torch.bfloat16):
    q = torch.randn(2, 32, 8, d, device=device, dtype=dtype)
    k = torch.randn(2, 48, 2, d, device=device, dtype=dtype)
    return q, k, torch.randn_like(k)


def test_flash_attn_fast_path_equals_checked_path(cuda_device, count_checks):
    _needs("flash_attn", cuda_device)
    q, k, v = _qkv(cuda_device)
    fast = ops.flash_attn_func(q, k, v, 1.0, causal=True)
    assert count_checks == [], "a well-formed call went through the detailed checks"
    checked = ops.flash_attn_func(q, k, v, 1, causal=True)     # an int scale: accepted by the checks only
    assert count_checks == ["_check_flash_attn"]
    assert torch.equal(fast, checked)


def test_flash_attn_malformed_calls_still_raise(cuda_device):
    _needs("flash_attn", cuda_device)
    q, k, v = _qkv(cuda_device)
    with pytest.raises(TypeError, match="q, k, v must have one dtype"):
        ops.flash_attn_func(q, k.half(), v.half())
    with pytest.raises(ValueError, match="query heads"):
        ops.flash_attn_func(q[:, :, :7], k, v)
    with pytest.raises(ValueError, match="contiguous last dim"):
        ops.flash_attn_func(q, k.transpose(1, 3).contiguous().transpose(1, 3), v)
    with pytest.raises(ValueError, match="k is on cpu"):
        ops.flash_attn_func(q, k.cpu(), v)
    with pytest.raises(TypeError, match="softmax_scale must be a finite float"):
        ops.flash_attn_func(q, k, v, float("nan"))
    q40, k40, v40 = _qkv(cuda_device, d=40)
    with pytest.raises(ValueError, match="head_dim 40 is not built"):
        ops.flash_attn_func(q40, k40, v40)
