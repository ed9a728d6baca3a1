"""Every public op inside torch.compile(fullgraph=True) and inside a captured CUDA
graph gives what the eager call gives (issue 13). The graph is replayed twice, the
second time after new data was copied into its static inputs, so the workspace and
the outputs stay valid across replays; compiled calls are checked at two shapes
(the second recompiles with dynamic shapes)."""
from __future__ import annotations

import pytest
import torch

from blackwheel import marlin_fp4, ops
from blackwheel.testing import quantize_fp8
from blackwheel.testing.fp4 import quantize_mxfp4, quantize_nvfp4


def _needs(family: str, device) -> None:
    try:
        ops.kernel_target(family, device)
    except ops.KernelUnavailableError as e:
        pytest.skip(str(e))


def _flat(r):
    return list(r) if isinstance(r, (tuple, list)) else [r]


def _same(got, want, what: str, exact: bool = True) -> None:
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, (what, i, g.shape, w.shape, g.dtype, w.dtype)
        if g.dtype.is_floating_point and g.dtype.itemsize == 1:
            g, w = g.view(torch.uint8), w.view(torch.uint8)
        if not exact:   # atomicAdd reduce: the order of the adds varies from run to run
            tol = 2e-2 * float(w.float().abs().max())
            torch.testing.assert_close(g.float(), w.float(), rtol=2e-2, atol=tol, msg=what)
            continue
        # the same kernel with the same launch configuration: bitwise equal
        assert torch.equal(g, w), f"{what}: output {i} differs (max abs {(g.float() - w.float()).abs().max()})"


def _check_graph(fn, make_inputs, what: str, exact: bool = True) -> None:
    """Capture fn(*static) in a CUDA graph; replay with the capture inputs and with new
    ones copied in; each must equal the eager call on the same inputs."""
    static = make_inputs(0)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):               # warm-up: workspaces and allocator state exist
            fn(*static)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn(*static)
    for seed in (0, 1):
        new = make_inputs(seed)
        for t, n in zip(static, new):
            if isinstance(t, torch.Tensor):
                t.copy_(n)
        g.replay()
        g.replay()                      # twice: the locks were reset by the first replay
        torch.cuda.synchronize()
        _same(out, fn(*new), f"{what} graph replay (inputs {seed})", exact)


def _check_compile(fn, inputs_at, what: str, exact: bool = True) -> None:
    """The first call is traced before any eager call of this test (the host-path
    caches may still be empty: the traced fallbacks run), the next one recompiles."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    for args in inputs_at:
        got = compiled(*args)
        _same(got, fn(*args), f"{what} compiled", exact)


def _gen(seed, device):
    g = torch.Generator(device=device)
    g.manual_seed(1234 + seed)
    return g


# ---------------------------------------------------------------- scaled_mm

def test_scaled_mm_compile_and_graph(cuda_device):
    _needs("scaled_mm", cuda_device)
    n, k = 1024, 512
    w, sw = quantize_fp8(torch.randn(n, k, device=cuda_device) * 0.05)
    bias = torch.randn(n, device=cuda_device, dtype=torch.bfloat16)

    def inputs(m, seed=0):
        a, sa = quantize_fp8(torch.randn(m, k, device=cuda_device, generator=_gen(seed, cuda_device)),
                             granularity="token")
        return a, sa

    def fn(a, sa):
        return ops.scaled_mm(a, w.t(), sa, sw, torch.bfloat16, bias)

    _check_compile(fn, [inputs(16), inputs(33)], "scaled_mm")
    _check_graph(fn, lambda seed: inputs(8, seed), "scaled_mm")


# ---------------------------------------------------------------- Marlin FP4

@pytest.mark.parametrize("fmt,n,k", [("nvfp4", 1024, 2048), ("mxfp4", 2880, 2880), ("nvfp4", 96, 208)])
def test_marlin_fp4_compile_and_graph(fmt, n, k, cuda_device):
    _needs("marlin_fp4", cuda_device)
    w_hp = torch.randn(n, k, device=cuda_device, dtype=torch.bfloat16) * 0.02
    if fmt == "nvfp4":
        q = quantize_nvfp4(w_hp)
        w = marlin_fp4.prepare_nvfp4_weight(q.packed, q.block_scales, q.global_scale, torch.bfloat16)
    else:
        q = quantize_mxfp4(w_hp)
        w = marlin_fp4.prepare_mxfp4_weight(q.packed, q.scales, torch.bfloat16)

    def inputs(m, seed=0):
        return (torch.randn(m, k, device=cuda_device, dtype=torch.bfloat16, generator=_gen(seed, cuda_device)),)

    def fn_default(x):       # the call heuristic picks the reduce (atomic add: order varies)
        return ops.marlin_fp4_gemm(x, w)
    _check_compile(fn_default, [inputs(1), inputs(7)], f"marlin {fmt}", exact=False)
    for atomic in (False, True):
        def fn(x, atomic=atomic):
            return ops.marlin_fp4_gemm(x, w, use_atomic_add=atomic)
        if not atomic:
            _check_compile(fn, [inputs(3)], f"marlin {fmt} no atomic")
        _check_graph(fn, lambda seed: inputs(4, seed), f"marlin {fmt} atomic={atomic}", exact=not atomic)


def test_gptq_marlin_repack_compile_and_graph(cuda_device):
    _needs("marlin_fp4", cuda_device)
    k, n = 256, 128

    def inputs(seed=0):
        p = torch.randint(0, 256, (n, k // 2), device=cuda_device, dtype=torch.uint8,
                          generator=_gen(seed, cuda_device))
        return (marlin_fp4.to_gptq_layout(p),)

    def fn(qw):
        return ops.gptq_marlin_repack(qw, k, n)

    _check_compile(fn, [inputs()], "repack")
    _check_graph(fn, inputs, "repack")


# ---------------------------------------------------------------- FlashAttention-2

@pytest.mark.parametrize("causal", [False, True])
def test_flash_attn_compile_and_graph(causal, cuda_device):
    _needs("flash_attn", cuda_device)

    def inputs(sq, sk, seed=0):
        g = _gen(seed, cuda_device)
        q = torch.randn(2, sq, 8, 128, device=cuda_device, dtype=torch.bfloat16, generator=g)
        kv = torch.randn(2, sk, 2, 128, device=cuda_device, dtype=torch.bfloat16, generator=g)
        return q, kv

    def fn(q, kv):
        return ops.flash_attn_func(q, kv, kv, causal=causal, return_lse=True)

    _check_compile(fn, [inputs(64, 64), inputs(1, 300)], "flash_attn")
    _check_graph(fn, lambda seed: inputs(1, 512, seed), "flash_attn decode")


# ---------------------------------------------------------------- NVFP4 (SM_120 only)

def test_nvfp4_compile_and_graph(cuda_device):
    _needs("nvfp4", cuda_device)
    n, k = 256, 512
    wq = quantize_nvfp4(torch.randn(n, k, device=cuda_device, dtype=torch.bfloat16))
    from blackwheel.testing.fp4 import swizzle_scales
    b_sf = swizzle_scales(wq.block_scales)
    gs_a = torch.tensor([100.0], device=cuda_device)
    alpha = (1.0 / (gs_a * wq.global_scale.reshape(1))).float()

    def inputs(m, seed=0):
        return (torch.randn(m, k, device=cuda_device, dtype=torch.bfloat16, generator=_gen(seed, cuda_device)),)

    def fn(x):
        a, a_sf = ops.scaled_fp4_quant(x, gs_a)
        return a, a_sf, ops.cutlass_fp4_gemm(a, wq.packed, a_sf, b_sf, alpha, torch.bfloat16)

    _check_compile(fn, [inputs(3), inputs(130)], "nvfp4")
    _check_graph(fn, lambda seed: inputs(16, seed), "nvfp4")
