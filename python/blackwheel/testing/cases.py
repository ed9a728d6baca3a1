"""Kernel-vs-reference cases: one list, run by ``python -m blackwheel smoke`` and by
tests/gpu (pytest), so the two can never drift apart.

Each case builds its inputs on the GPU from a fixed seed, calls the public API
(blackwheel.ops), computes an independent plain-torch reference (fp64 where a
matmul is involved, so TF32 never enters) and compares elementwise with a
tolerance derived from the dtypes and magnitudes (rules next to each family).

run_case() first asks which built target of the case's kernel set runs on this
GPU (build record + archs.runnable). When the wheel has that kernel set but no
code for this GPU (NVFP4 on anything but SM_120), the case still calls the op
and passes only if it is refused with a clean KernelUnavailableError.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import torch

from blackwheel.testing.attention import attention_reference
from blackwheel.testing.compare import CaseOutcome, Check, compare, unit_roundoff
from blackwheel.testing.fp4 import (
    dequantize_nvfp4,
    quantize_mxfp4,
    quantize_nvfp4,
    swizzle_scales,
    unpack_e2m1,
    unswizzle_scales,
)
from blackwheel.testing.fp8 import quantize_fp8, scaled_mm_reference
from blackwheel.testing.marlin_repack import marlin_repack_reference

_DT = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Case:
    name: str                       # unique id (pytest id, --filter)
    family: str                     # kernel set
    op: str                         # API function exercised
    shapes: str
    dtypes: str
    fn: Callable[[torch.device, torch.Generator], list[Check]]


def _gen(name: str, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(zlib.crc32(name.encode()))
    return g


def _randn(shape, g, device, dtype=torch.float32, scale=1.0) -> torch.Tensor:
    return (torch.randn(shape, generator=g, device=device, dtype=torch.float32) * scale).to(dtype)


# ---------------------------------------------------------------------------
# scaled_mm (FP8 e4m3, CUTLASS)
#
# Tolerance: |out - ref| <= 2u_out*|ref| + 2**-10 * (|A| @ |B|)   (scales applied)
#  - the inputs given to the kernel are exactly the e4m3 values the reference
#    uses, and e4m3 x e4m3 products are exact in fp32, so what differs is
#  - the final rounding to bf16/fp16 (u_out = 2**-8 / 2**-11; 2x for the
#    epilogue's scale/bias arithmetic), and
#  - the accumulation: Hopper FP8 tensor cores accumulate with ~14 mantissa bits
#    (CUTLASS "FP8FastAccum", DeepSeek-V3 report 3.3.2); a drift of 2**-10 of the
#    magnitude sum is 16x that resolution. A layout, scale or bias bug moves the
#    result by ~|ref| ~ (|A| @ |B|) / sqrt(K), which is > 20x this bound for K <= 4096.
# ---------------------------------------------------------------------------

def _scaled_mm_fn(m, k, n, gran_a, gran_b, with_bias, out_dtype):
    def fn(device, g):
        from blackwheel import ops
        a_hp = _randn((m, k), g, device)
        w_hp = _randn((n, k), g, device, scale=0.05)
        a, sa = quantize_fp8(a_hp, granularity="token" if gran_a == "token" else "tensor")
        w, sw = quantize_fp8(w_hp, granularity="token" if gran_b == "channel" else "tensor")
        b = w.t()                                     # [K, N] column-major
        sb = sw.reshape(1, n) if gran_b == "channel" else sw
        bias = _randn((n,), g, device, out_dtype) if with_bias else None
        out = ops.scaled_mm(a, b, sa, sb, out_dtype, bias)
        ref, mag = scaled_mm_reference(a, b, sa, sb, bias)
        tol = 2 * unit_roundoff(out_dtype) * ref.abs() + 2 ** -10 * mag
        return [compare("out", out, ref, tol)]
    return fn


def _supports_fp8_fn(device, g):
    from blackwheel import ops
    major, minor = torch.cuda.get_device_capability(device)
    got = ops.scaled_mm_supports_fp8(major * 10 + minor, device=device)
    return [Check("supports_fp8", 0.0, 0.0, got is True,
                  "" if got is True else f"cutlass_scaled_mm_supports_fp8({major * 10 + minor}) returned {got!r}")]


def scaled_mm_cases() -> list[Case]:
    cases = [Case("scaled_mm/supports_fp8", "scaled_mm", "scaled_mm_supports_fp8", "-", "-", _supports_fp8_fn)]
    combos = []
    for (m, k, n) in ((1, 4096, 4096), (77, 272, 1040), (300, 2064, 528)):
        for gran in (("tensor", "tensor"), ("token", "channel")):
            for with_bias in (False, True):
                for dt in (torch.bfloat16, torch.float16):
                    combos.append((m, k, n, gran, with_bias, dt))
    combos += [(16, 1024, 3072, ("token", "tensor"), False, torch.bfloat16),
               (16, 1024, 3072, ("tensor", "channel"), True, torch.float16),
               (512, 4096, 4096, ("token", "channel"), True, torch.bfloat16)]
    for m, k, n, (ga, gb), with_bias, dt in combos:
        name = f"scaled_mm/m{m}k{k}n{n}/{ga}-{gb}/{'bias' if with_bias else 'nobias'}/{_DT[dt]}"
        cases.append(Case(name, "scaled_mm", "scaled_mm", f"A[{m},{k}] B[{k},{n}] s:{ga}/{gb}"
                          + (" +bias" if with_bias else ""), f"e4m3->{_DT[dt]}",
                          _scaled_mm_fn(m, k, n, ga, gb, with_bias, dt)))
    return cases


# ---------------------------------------------------------------------------
# FP4 Marlin (weight-only NVFP4 / MXFP4, fp16/bf16 activations)
#
# Tolerance: |out - ref| <= 2u_act*|ref| + 2**-12 * (|x| @ |W|)
#  - W is the reference dequantization of the very codes/scales given to the
#    kernel; e2m1 (2 significant bits) x e4m3/e8m0 scale is exact in fp16/bf16,
#    so the kernel's in-register dequantization is exact and
#  - mma.sync accumulates in fp32 and use_fp32_reduce keeps split-K partials in
#    fp32: the accumulation error is ~K * 2**-23 of the magnitude sum, far below
#    2**-12; the output is rounded once to the activation dtype (u_act), the
#    global scale/bias epilogue adds at most one more rounding (hence 2u).
# ---------------------------------------------------------------------------

def _marlin_fn(fmt, m, k, n, act_dtype, with_bias):
    def fn(device, g):
        from blackwheel import marlin_fp4, ops
        w_hp = _randn((n, k), g, device, torch.bfloat16, scale=0.02)
        x = _randn((m, k), g, device, act_dtype)
        bias = _randn((n,), g, device, act_dtype) if with_bias else None
        if fmt == "nvfp4":
            q = quantize_nvfp4(w_hp)
            weight = marlin_fp4.prepare_nvfp4_weight(q.packed, q.block_scales, q.global_scale, act_dtype, bias)
        else:
            q = quantize_mxfp4(w_hp)
            weight = marlin_fp4.prepare_mxfp4_weight(q.packed, q.scales, act_dtype, bias)
        w_ref = q.dequantize(torch.float32).double()
        out = ops.marlin_fp4_gemm(x, weight)
        prod = x.double() @ w_ref.T
        ref = prod + bias.double() if bias is not None else prod
        mag = x.double().abs() @ w_ref.abs().T
        # The kernel may round the product to the activation dtype before adding the
        # bias (measured on H100: bf16 + bias misses a tolerance based on |ref| alone
        # where product and bias cancel), so each addend carries its own rounding.
        addends = prod.abs() + (bias.double().abs() if bias is not None else 0)
        tol = 2 * unit_roundoff(act_dtype) * addends + 2 ** -12 * mag
        return [compare("out", out, ref.float(), tol.float())]
    return fn


def _repack_fn(k, n):
    def fn(device, g):
        from blackwheel import marlin_fp4, ops
        packed = torch.randint(0, 256, (n, k // 2), generator=g, device=device, dtype=torch.uint8)
        q = marlin_fp4.to_gptq_layout(packed)
        got = ops.gptq_marlin_repack(q, k, n)
        want = marlin_repack_reference(q, k, n)
        same = got.shape == want.shape and bool(torch.equal(got, want))
        n_diff = int((got != want).sum()) if got.shape == want.shape else -1
        return [Check("repacked words", float(n_diff if n_diff > 0 else 0), 0.0, same,
                      "" if same else f"{n_diff} of {want.numel()} int32 words differ from the reference permutation")]
    return fn


def marlin_cases() -> list[Case]:
    cases = [Case("marlin_fp4/repack/k1024n512", "marlin_fp4", "gptq_marlin_repack", "q[128,512] -> [64,1024]",
                  "int32", _repack_fn(1024, 512))]
    shapes = ((1, 4096, 4096), (16, 4096, 1024), (77, 800, 1040), (256, 2048, 2048))
    for fmt, act in (("nvfp4", torch.float16), ("nvfp4", torch.bfloat16), ("mxfp4", torch.bfloat16)):
        for m, k, n in shapes:
            cases.append(Case(f"marlin_fp4/{fmt}/m{m}k{k}n{n}/{_DT[act]}", "marlin_fp4", "marlin_fp4_gemm",
                              f"x[{m},{k}] W[{n},{k}]", f"{_DT[act]} x {fmt}", _marlin_fn(fmt, m, k, n, act, False)))
    for fmt in ("nvfp4", "mxfp4"):
        cases.append(Case(f"marlin_fp4/{fmt}/m33k1024n512/bf16/bias", "marlin_fp4", "marlin_fp4_gemm",
                          "x[33,1024] W[512,1024] +bias", f"bf16 x {fmt}",
                          _marlin_fn(fmt, 33, 1024, 512, torch.bfloat16, True)))
    return cases


# ---------------------------------------------------------------------------
# NVFP4 quantization + CUTLASS FP4 GEMM (SM_120 only)
#
# quant: every kernel value must be within one quantization step of x
#   (|x - deq| <= block_scale / global_scale, the widest half-step of e2m1
#   being 1 * scale between 4 and 6), and its codes and scales must match the
#   reference quantizer for >= 99% of the elements (the kernel uses approximate
#   reciprocals, so rare rounding-boundary cases may differ by one code/ulp).
# gemm: same rule as scaled_mm with the fp32 accumulation of the block-scaled
#   MMA (2**-12 of the magnitude sum).
# ---------------------------------------------------------------------------

def _nvfp4_quant_fn(m, k, dt):
    def fn(device, g):
        from blackwheel import ops
        x = _randn((m, k), g, device, dt)
        ref = quantize_nvfp4(x)
        packed, sf_swz = ops.scaled_fp4_quant(x, ref.global_scale.reshape(1))
        sf = unswizzle_scales(sf_swz, m, k // 16)
        deq = dequantize_nvfp4(packed, sf, ref.global_scale)
        step = (sf.float() / ref.global_scale).repeat_interleave(16, dim=-1)
        codes_differ = float((unpack_e2m1(packed) != unpack_e2m1(ref.packed)).float().mean())
        scales_differ = float((sf.view(torch.uint8) != ref.block_scales.view(torch.uint8)).float().mean())
        return [compare("dequant vs x", deq, x.float(), step * 1.0001),
                Check("codes != ref", codes_differ, codes_differ, codes_differ <= 0.01, "fraction of codes"),
                Check("scales != ref", scales_differ, scales_differ, scales_differ <= 0.01, "fraction of scales")]
    return fn


def _nvfp4_gemm_fn(m, k, n, dt):
    def fn(device, g):
        from blackwheel import ops
        a_q = quantize_nvfp4(_randn((m, k), g, device, dt))
        b_q = quantize_nvfp4(_randn((n, k), g, device, dt, scale=0.05))
        alpha = (1.0 / (a_q.global_scale * b_q.global_scale)).reshape(1).float()
        out = ops.cutlass_fp4_gemm(a_q.packed, b_q.packed, swizzle_scales(a_q.block_scales),
                                   swizzle_scales(b_q.block_scales), alpha, dt)
        a = a_q.dequantize().double()
        b = b_q.dequantize().double()
        ref = a @ b.T
        tol = 2 * unit_roundoff(dt) * ref.abs() + 2 ** -12 * (a.abs() @ b.abs().T)
        return [compare("out", out, ref.float(), tol.float())]
    return fn


def nvfp4_cases() -> list[Case]:
    cases = []
    for m, k in ((1, 256), (77, 4096), (256, 1040)):
        for dt in (torch.bfloat16, torch.float16):
            cases.append(Case(f"nvfp4/quant/m{m}k{k}/{_DT[dt]}", "nvfp4", "scaled_fp4_quant", f"x[{m},{k}]",
                              f"{_DT[dt]} -> e2m1+e4m3", _nvfp4_quant_fn(m, k, dt)))
    for m, k, n in ((1, 512, 256), (77, 320, 1056), (256, 4096, 512)):
        for dt in (torch.bfloat16, torch.float16):
            cases.append(Case(f"nvfp4/gemm/m{m}k{k}n{n}/{_DT[dt]}", "nvfp4", "cutlass_fp4_gemm",
                              f"A[{m},{k}] B[{n},{k}]", f"nvfp4->{_DT[dt]}", _nvfp4_gemm_fn(m, k, n, dt)))
    return cases


# ---------------------------------------------------------------------------
# FlashAttention-2 forward vs explicit softmax (fp64)
#
# Tolerance: |out - ref| <= 2u_in * (P @ |V|) + 2u_in * |ref| + 1e-6
#  - S = QK^T is accumulated in fp32 from exact 16-bit products, softmax in fp32;
#  - FA2 rounds P to the input dtype before P @ V: each p_j gets a relative error
#    <= u_in, so |error| <= u_in * sum_j p_j |v_j| = u_in * (P @ |V|)
#    (computed by the reference); the output is rounded once more (u_in * |ref|).
# lse: fp32 log-sum-exp of fp32 scores: |error| <= 2**-10 (absolute) covers the
#   fp32 exp/log approximations (exp2f with the scale folded into log2 e).
# ---------------------------------------------------------------------------

def _fa_fn(b, sq, sk, hq, hk, d, causal, dt):
    def fn(device, g):
        from blackwheel import ops
        q = _randn((b, sq, hq, d), g, device, dt)
        k = _randn((b, sk, hk, d), g, device, dt)
        v = _randn((b, sk, hk, d), g, device, dt)
        out, lse = ops.flash_attn_func(q, k, v, causal=causal, return_lse=True)
        ref, ref_lse, abs_out = attention_reference(q, k, v, causal=causal)
        u = unit_roundoff(dt)
        tol = 2 * u * abs_out + 2 * u * ref.abs() + 1e-6
        return [compare("out", out, ref, tol), compare("lse", lse, ref_lse, 2 ** -10)]
    return fn


def flash_attn_cases() -> list[Case]:
    configs = (  # b, sq, sk, hq, hk, causal
        (2, 77, 77, 4, 4, False),
        (2, 77, 77, 4, 4, True),
        (1, 1, 300, 8, 2, True),        # decode step, GQA, Sq != Sk
        (2, 77, 300, 8, 1, True),       # MQA, Sq != Sk (bottom-right mask)
        (1, 300, 300, 6, 2, False),
    )
    cases = []
    for b, sq, sk, hq, hk, causal in configs:
        for d in (64, 128):
            for dt in (torch.bfloat16, torch.float16):
                name = f"flash_attn/b{b}sq{sq}sk{sk}h{hq}kv{hk}d{d}/{'causal' if causal else 'full'}/{_DT[dt]}"
                cases.append(Case(name, "flash_attn", "flash_attn_func",
                                  f"q[{b},{sq},{hq},{d}] kv[{b},{sk},{hk},{d}]" + (" causal" if causal else ""),
                                  _DT[dt], _fa_fn(b, sq, sk, hq, hk, d, causal, dt)))
    return cases


def all_cases() -> list[Case]:
    return scaled_mm_cases() + marlin_cases() + nvfp4_cases() + flash_attn_cases()


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------

def _refusal_path(family: str) -> str:
    from blackwheel.ops import FAMILY_LIMITS
    limit = FAMILY_LIMITS.get(family, "no code for this GPU")
    return f"refused cleanly ({limit.lower()}: verified statically)"


def run_case(case: Case, device: torch.device | str | None = None) -> CaseOutcome:
    """Run one case on ``device`` (default: current CUDA device)."""
    from blackwheel import ops
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    try:
        target = ops.kernel_target(case.family, dev)
    except ops.KernelUnavailableError as e:
        msg = str(e)
        if "this GPU is" not in msg:
            return CaseOutcome("skip", "skipped: not in this wheel", message=msg)
        return _expect_refusal(case, dev, msg)
    try:
        with torch.no_grad():
            checks = case.fn(dev, _gen(case.name, dev))
        torch.cuda.synchronize(dev)
    except Exception as e:  # a kernel error is a failed case, reported with its message
        return CaseOutcome("fail", target.describe(), message=f"{type(e).__name__}: {e}")
    ok = all(c.passed for c in checks)
    bad = "; ".join(f"{c.label}: {c.detail}" for c in checks if not c.passed)
    return CaseOutcome("pass" if ok else "fail", target.describe(), checks, bad)


def _raw_refusal(case: Case, dev: torch.device) -> Check | None:
    """Below the Python API: the registered C++ op itself must refuse a GPU it has no
    code for with a clean RuntimeError (its own SM check), never launch a kernel."""
    if case.family != "nvfp4":
        return None
    try:
        getattr(torch.ops.blackwheel, case.op if case.op == "scaled_fp4_quant" else "cutlass_scaled_fp4_mm")
    except (AttributeError, RuntimeError):
        return None     # no extension loaded (source checkout): nothing below the API to call
    x = torch.zeros(16, 64, device=dev, dtype=torch.bfloat16)
    one = torch.ones(1, device=dev, dtype=torch.float32)
    try:
        if case.op == "scaled_fp4_quant":
            torch.ops.blackwheel.scaled_fp4_quant(x, one, True)
        else:
            a = torch.zeros(16, 32, device=dev, dtype=torch.uint8)
            sf = torch.zeros(128, 4, device=dev, dtype=torch.float8_e4m3fn)
            out = torch.empty(16, 16, device=dev, dtype=torch.bfloat16)
            torch.ops.blackwheel.cutlass_scaled_fp4_mm(out, a, a[:16], sf, sf, one)
        torch.cuda.synchronize(dev)
    except RuntimeError as e:
        msg = str(e).splitlines()[0]
        ok = "SM" in msg
        return Check("C++ op refused", 0.0, 0.0, ok, msg)
    return Check("C++ op refused", 0.0, 0.0, False, "the raw op ran on a GPU it has no code for")


def _expect_refusal(case: Case, dev: torch.device, why: str) -> CaseOutcome:
    """The wheel has the kernel set but no code for this GPU: calling the op must raise
    KernelUnavailableError (a RuntimeError) naming the GPU, and nothing else."""
    from blackwheel import ops
    path = _refusal_path(case.family)
    try:
        with torch.no_grad():
            case.fn(dev, _gen(case.name, dev))
        torch.cuda.synchronize(dev)
    except ops.KernelUnavailableError as e:
        ok = "this GPU is" in str(e) and isinstance(e, RuntimeError)
        checks = [Check("refused", 0.0, 0.0, ok, str(e))]
        raw = _raw_refusal(case, dev)
        if raw is not None:
            checks.append(raw)
            ok = ok and raw.passed
        bad = "; ".join(f"{c.label}: {c.detail}" for c in checks if not c.passed)
        return CaseOutcome("pass" if ok else "fail", path, checks, bad)
    except Exception as e:
        return CaseOutcome("fail", path, message=f"expected a clean refusal ({why}); got {type(e).__name__}: {e}")
    return CaseOutcome("fail", path, message=f"the op ran although the wheel has no code for this GPU ({why})")
