"""CPU tests of the fake (meta) implementations (blackwheel._fakes) and of tracing the
public ops with torch.compile(fullgraph=True) on meta tensors.

No extension is loaded here (a source checkout): the schemas are defined from
blackwheel._fakes.SCHEMAS, which the first test checks against the C++ m.def strings
in csrc/, so the fakes are tested against the schemas the wheel registers. Where a
wheel is installed and loaded, its own schemas are used as they are.
"""
import re
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from blackwheel import _fakes, ops
from blackwheel.marlin_fp4 import FLOAT4_E2M1F_ID, MarlinFP4Weight

ROOT = Path(__file__).resolve().parents[2]
BW = None


@pytest.fixture(scope="module", autouse=True)
def schemas():
    _fakes.define_schemas()
    _fakes.register()
    global BW
    BW = torch.ops.blackwheel
    yield
    torch._dynamo.reset()
    _fakes.undefine_schemas()       # other tests see a source checkout again


def _cpp_schemas() -> dict[str, str]:
    out = {}
    for p in sorted((ROOT / "csrc").glob("*/*")):
        if p.suffix not in (".cpp", ".cu") or p.parent.name == "flash_attn_2_cuda":
            continue
        for m in re.finditer(r"m\.def\(\s*((?:\"(?:[^\"\\]|\\.)*\"\s*)+)\)", p.read_text()):
            text = "".join(re.findall(r"\"((?:[^\"\\]|\\.)*)\"", m.group(1)))
            out[text.split("(", 1)[0].strip()] = text
    return out


def test_python_schemas_equal_the_cpp_ones():
    cpp = _cpp_schemas()
    assert set(cpp) == set(_fakes.SCHEMAS)
    for op, (_, schema) in _fakes.SCHEMAS.items():
        assert str(torch._C.parse_schema(schema)) == str(torch._C.parse_schema(cpp[op])), op


def test_every_tensor_op_has_a_fake_and_belongs_to_its_set():
    assert set(_fakes.FAKES) | _fakes.NO_FAKE == set(_fakes.SCHEMAS)
    for op, (family, _) in _fakes.SCHEMAS.items():
        assert ops.FAMILY_OF_OP.get(op, family) == family, op


# ---------------------------------------------------------------- fakes under FakeTensorMode

def _e(shape, dtype, device="cuda"):
    return torch.empty(shape, dtype=dtype, device=device)


@pytest.mark.parametrize("m,n,k", [(1, 4096, 4096), (7, 48, 32), (128, 2880, 2880)])
def test_cutlass_scaled_mm_fake(m, n, k):
    with FakeTensorMode():
        out = _e((m, n), torch.bfloat16)
        r = BW.cutlass_scaled_mm(out, _e((m, k), torch.float8_e4m3fn), _e((n, k), torch.float8_e4m3fn).t(),
                                 _e((m, 1), torch.float32), _e((1, n), torch.float32), None)
        assert r is None and out.shape == (m, n)


@pytest.mark.parametrize("shape,swizzled,want_sf", [
    ((3, 64), True, ((128, 1), torch.int32)),
    ((2, 5, 256), True, ((128, 4), torch.int32)),
    ((300, 512), True, ((384, 8), torch.int32)),
    ((3, 64), False, ((3, 4), torch.uint8)),
])
def test_scaled_fp4_quant_fake(shape, swizzled, want_sf):
    with FakeTensorMode():
        packed, sf = BW.scaled_fp4_quant(_e(shape, torch.bfloat16), _e((1,), torch.float32), swizzled)
        m = 1
        for d in shape[:-1]:
            m *= d
        assert (tuple(packed.shape), packed.dtype) == ((m, shape[-1] // 2), torch.uint8)
        assert (tuple(sf.shape), sf.dtype) == want_sf
        assert packed.device.type == "cuda"


def test_cutlass_scaled_fp4_mm_fake():
    with FakeTensorMode():
        out = _e((5, 64), torch.float16)
        assert BW.cutlass_scaled_fp4_mm(out, _e((5, 64), torch.uint8), _e((64, 64), torch.uint8),
                                        _e((128, 8), torch.float8_e4m3fn), _e((128, 8), torch.float8_e4m3fn),
                                        _e((1,), torch.float32)) is None


@pytest.mark.parametrize("m,n,k,dt", [(1, 4096, 4096, torch.bfloat16), (16, 2880, 2944, torch.bfloat16),
                                      (3, 64, 128, torch.float16)])
def test_marlin_gemm_fake(m, n, k, dt):
    with FakeTensorMode():
        out = BW.marlin_gemm(_e((m, k), dt), None, _e((k // 16, 2 * n), torch.int32), None,
                             _e((k // 16, n), torch.float8_e4m3fn), None, _e((1,), torch.float32), None,
                             _e((528,), torch.int32), FLOAT4_E2M1F_ID, m, n, k, False, True, False)
        assert (tuple(out.shape), out.dtype) == ((m, n), dt)


@pytest.mark.parametrize("k,n", [(128, 64), (4096, 2880), (2944, 5760)])
def test_gptq_marlin_repack_fake(k, n):
    with FakeTensorMode():
        out = BW.gptq_marlin_repack(_e((k // 8, n), torch.int32), k, n, 4, False)
        assert (tuple(out.shape), out.dtype) == ((k // 16, 2 * n), torch.int32)


@pytest.mark.parametrize("b,sq,sk,hq,hk,d,dt", [(1, 1, 4096, 64, 8, 64, torch.bfloat16),
                                                (2, 333, 333, 32, 32, 128, torch.float16)])
def test_flash_attn_fwd_fake(b, sq, sk, hq, hk, d, dt):
    with FakeTensorMode():
        out, lse = BW.flash_attn_fwd(_e((b, sq, hq, d), dt), _e((b, sk, hk, d), dt), _e((b, sk, hk, d), dt),
                                     None, 0.125, True)
        assert (tuple(out.shape), out.dtype) == ((b, sq, hq, d), dt)
        assert (tuple(lse.shape), lse.dtype) == ((b, hq, sq), torch.float32)


# ---------------------------------------------------------------- the public API on meta tensors

def _m(shape, dtype):
    return torch.empty(shape, dtype=dtype, device="meta")


def _marlin_weight(n, k, fmt="nvfp4", bias=False):
    from blackwheel.marlin_fp4 import MXFP4_GROUP, NVFP4_GROUP, padded_nk
    g = NVFP4_GROUP if fmt == "nvfp4" else MXFP4_GROUP
    pn, pk = padded_nk(n, k, g)
    sdt = torch.float8_e4m3fn if fmt == "nvfp4" else torch.float8_e8m0fnu
    return MarlinFP4Weight(fmt, _m((pk // 16, 2 * pn), torch.int32), _m((pk // g, pn), sdt),
                           _m((1,), torch.float32) if fmt == "nvfp4" else None,
                           _m((pn,), torch.bfloat16) if bias else None, n, k, pn, pk, torch.bfloat16)


def _calls(m, n, k, sq):
    """One call of every public op (meta tensors); returns (fn, args)."""
    w = _marlin_weight(n, k)
    w_mx = _marlin_weight(n, k, "mxfp4", bias=True)

    def fn(a, b, sa, sb, x, xq, q, kv, a4, b4, sfa, sfb):
        return (ops.scaled_mm(a, b, sa, sb, torch.bfloat16),
                ops.marlin_fp4_gemm(x, w),
                ops.marlin_fp4_gemm(x, w_mx, use_fp32_reduce=False),
                ops.scaled_fp4_quant(xq, sa.reshape(1)),
                ops.cutlass_fp4_gemm(a4, b4, sfa, sfb, 0.5, torch.float16),
                ops.flash_attn_func(q, kv, kv, causal=True, return_lse=True))

    r = ops._round_up
    args = (_m((m, k), torch.float8_e4m3fn), _m((n, k), torch.float8_e4m3fn).t(), _m((1,), torch.float32),
            _m((1, n), torch.float32), _m((2, m, k), torch.bfloat16), _m((m, k), torch.bfloat16),
            _m((1, sq, 8, 64), torch.bfloat16), _m((1, sq + 3, 2, 64), torch.bfloat16),
            _m((m, k // 2), torch.uint8), _m((n, k // 2), torch.uint8),
            _m((r(m, 128), r(k // 16, 4)), torch.float8_e4m3fn), _m((r(n, 128), r(k // 16, 4)), torch.float8_e4m3fn))
    return fn, args


def _flat_meta(res):
    flat = []
    for x in res:
        flat += list(x) if isinstance(x, tuple) else [x]
    return [(tuple(t.shape), t.dtype) for t in flat]


@pytest.mark.parametrize("m,n,k,sq", [(3, 96, 256, 5), (16, 2880, 2880, 1)])
def test_public_ops_on_meta_tensors(m, n, k, sq):
    fn, args = _calls(m, n, k, sq)
    r = ops._round_up
    assert _flat_meta(fn(*args)) == [
        ((m, n), torch.bfloat16), ((2, m, n), torch.bfloat16), ((2, m, n), torch.bfloat16),
        ((m, k // 2), torch.uint8), ((r(m, 128), r(k // 16, 4)), torch.float8_e4m3fn),
        ((m, n), torch.float16), ((1, sq, 8, 64), torch.bfloat16), ((1, 8, sq), torch.float32)]


def test_torch_compile_fullgraph_traces_every_public_op():
    """fullgraph=True: any graph break (an untraceable host-path step) is an error."""
    torch._dynamo.reset()
    counts = {}

    def backend(gm, example_inputs):
        counts["graphs"] = counts.get("graphs", 0) + 1
        counts["ops"] = {n.target.name() for n in gm.graph.nodes
                         if n.op == "call_function" and getattr(n.target, "namespace", "") == "blackwheel"}
        return gm

    for m, n, k, sq in ((3, 96, 256, 5), (16, 2880, 2880, 1)):
        fn, args = _calls(m, n, k, sq)
        compiled = torch.compile(fn, fullgraph=True, backend=backend)
        assert _flat_meta(compiled(*args)) == _flat_meta(fn(*args))
    assert counts["ops"] == {"blackwheel::cutlass_scaled_mm", "blackwheel::marlin_gemm",
                             "blackwheel::scaled_fp4_quant", "blackwheel::cutlass_scaled_fp4_mm",
                             "blackwheel::flash_attn_fwd"}


def test_aot_eager_functionalizes_the_out_ops():
    """aot_eager runs the fakes under FakeTensorMode and functionalizes the two ops
    that write into `out` (Tensor!)."""
    torch._dynamo.reset()
    fn, args = _calls(3, 96, 256, 5)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    assert _flat_meta(compiled(*args)) == _flat_meta(fn(*args))


def test_repack_on_meta():
    out = ops.gptq_marlin_repack(_m((256 // 8, 128), torch.int32), 256, 128)
    assert (tuple(out.shape), out.dtype) == ((16, 256), torch.int32)
