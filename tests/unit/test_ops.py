"""CPU tests of blackwheel.ops: argument checks (before any op is called) and the
decision of which built target runs on which GPU (from the build record)."""
import sys
from pathlib import Path

import pytest
import torch

from blackwheel import ops
from blackwheel.marlin_fp4 import MarlinFP4Weight

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def _info(**families):
    return {"schema": 1, "kernels": {f: {"archs": a} for f, a in families.items()}, "skipped": {}}


# ---------------------------------------------------------------- targets

def test_nvfp4_on_h100_is_refused_with_the_fix():
    info = _info(scaled_mm=["9.0a", "12.0a"], nvfp4=["12.0a"])
    with pytest.raises(RuntimeError) as e:
        ops.resolve_target(info, "nvfp4", (9, 0), "NVIDIA H100 80GB HBM3")
    assert isinstance(e.value, ops.KernelUnavailableError)
    assert str(e.value) == "nvfp4 was built for 12.0a; this GPU is sm_90 (NVIDIA H100 80GB HBM3): SM_120 only"


def test_family_not_in_wheel_names_built_sets_and_env():
    info = _info(scaled_mm=["12.0a"], marlin_fp4=["12.0a"], flash_attn=["12.0a"])
    info["skipped"] = {"nvfp4": "no 12.x arch requested"}
    with pytest.raises(ops.KernelUnavailableError) as e:
        ops.resolve_target(info, "nvfp4", (12, 0), "NVIDIA GeForce RTX 5090")
    msg = str(e.value)
    assert msg.startswith("kernel set 'nvfp4' is not in this wheel (built: scaled_mm, marlin_fp4, flash_attn")
    assert "no 12.x arch requested" in msg
    assert msg.endswith("rebuild with BLACKWHEEL_KERNELS=scaled_mm,nvfp4,marlin_fp4,flash_attn")


def test_source_checkout_has_no_kernels():
    with pytest.raises(ops.KernelUnavailableError, match="no _build_info.json"):
        ops.resolve_target(None, "scaled_mm", (12, 0), "x")


def test_arch_missing_but_possible_suggests_rebuild():
    info = _info(scaled_mm=["12.0a"])
    with pytest.raises(ops.KernelUnavailableError) as e:
        ops.resolve_target(info, "scaled_mm", (9, 0), "NVIDIA H100")
    assert "scaled_mm was built for 12.0a; this GPU is sm_90 (NVIDIA H100)" in str(e.value)
    assert "BLACKWHEEL_ARCHS including 9.0a" in str(e.value)
    assert "BLACKWHEEL_ARCHS='12.0a;9.0a'" in str(e.value)


def test_scaled_mm_has_no_code_for_ampere():
    with pytest.raises(ops.KernelUnavailableError, match="run on 12.0a, 12.0f, 12.1a, 9.0a, 8.9 only"):
        ops.resolve_target(_info(scaled_mm=["12.0a", "9.0a"]), "scaled_mm", (8, 0), "NVIDIA A100")


@pytest.mark.parametrize("cap,want", [((9, 0), "sm_90a SASS"), ((12, 0), "sm_120a SASS")])
def test_target_per_gpu(cap, want):
    info = _info(marlin_fp4=["9.0a", "12.0a"])
    assert ops.resolve_target(info, "marlin_fp4", cap, "gpu").describe() == want


def test_ptx_jit_and_family_targets():
    t = ops.resolve_target(_info(flash_attn=["8.0+PTX"]), "flash_attn", (9, 0), "H100")
    assert t.how == "ptx-jit" and t.describe() == "compute_80 PTX (JIT)"
    t = ops.resolve_target(_info(nvfp4=["12.0f"]), "nvfp4", (12, 1), "GB10")
    assert t.describe() == "sm_120f SASS"
    with pytest.raises(ops.KernelUnavailableError, match="12.1a or 12.0f"):
        ops.resolve_target(_info(nvfp4=["12.0a"]), "nvfp4", (12, 1), "GB10")


def test_unknown_family_is_a_value_error():
    with pytest.raises(ValueError, match="unknown kernel set"):
        ops.resolve_target(_info(), "int8", (9, 0), "x")


def test_family_archs_mirror_the_kernel_pack_product_file():
    cfg = tomllib.loads((ROOT / "products/kernel-pack.toml").read_text())
    kernels = cfg["family"]
    assert set(ops.KERNEL_SETS) == set(kernels)
    for fam in ops.KERNEL_SETS:
        assert set(ops.FAMILY_ARCHS[fam]) == set(kernels[fam]["archs"]), fam
    assert tuple(kernels["flash_attn"]["head_dims"]) == ops.DEFAULT_FA_HEAD_DIMS


def test_every_op_belongs_to_a_known_family():
    assert set(ops.FAMILY_OF_OP.values()) == set(ops.KERNEL_SETS)


def test_kernel_target_wiring(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    from blackwheel import _dispatch
    monkeypatch.setattr(_dispatch, "_device_facts", lambda dev: ((9, 0), "NVIDIA H100"))
    monkeypatch.setattr(_dispatch, "_build_info", lambda: _info(nvfp4=["12.0a"], scaled_mm=["9.0a", "12.0a"]))
    assert ops.kernel_target("scaled_mm", "cuda:0").describe() == "sm_90a SASS"
    with pytest.raises(RuntimeError, match="SM_120 only"):
        ops.kernel_target("nvfp4", "cuda:0")


def test_kernel_target_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ops.KernelUnavailableError, match="no CUDA GPU"):
        ops.kernel_target("scaled_mm")


# ---------------------------------------------------------------- scaled_mm checks

def _fp8(*shape):
    return torch.randn(*shape).to(torch.float8_e4m3fn)


def _mm_args(m=4, k=32, n=48):
    return _fp8(m, k), _fp8(n, k).t(), torch.ones(1), torch.ones(1)


def test_scaled_mm_wrong_dtype():
    a, b, sa, sb = _mm_args()
    with pytest.raises(TypeError, match="a must be torch.float8_e4m3fn"):
        ops.scaled_mm(a.float(), b, sa, sb, torch.bfloat16)
    with pytest.raises(TypeError, match="out_dtype"):
        ops.scaled_mm(a, b, sa, sb, torch.float32)
    with pytest.raises(TypeError, match="scale_a must be torch.float32"):
        ops.scaled_mm(a, b, sa.half(), sb, torch.bfloat16)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        ops.scaled_mm(a, b, 1.0, sb, torch.bfloat16)


def test_scaled_mm_layout_and_shapes():
    a, b, sa, sb = _mm_args()
    with pytest.raises(ValueError, match="column-major"):
        ops.scaled_mm(a, b.contiguous(), sa, sb, torch.bfloat16)
    with pytest.raises(ValueError, match="row-major"):
        ops.scaled_mm(a.t().contiguous().t(), b, sa, sb, torch.bfloat16)
    with pytest.raises(ValueError, match="multiples of 16"):
        ops.scaled_mm(_fp8(4, 24), _fp8(48, 24).t(), sa, sb, torch.bfloat16)
    with pytest.raises(ValueError, match="do not multiply"):
        ops.scaled_mm(a, _fp8(48, 64).t(), sa, sb, torch.bfloat16)
    with pytest.raises(ValueError, match=r"\[M, 1\] per-token"):
        ops.scaled_mm(a, b, torch.ones(3, 1), sb, torch.bfloat16)
    with pytest.raises(ValueError, match=r"\[1, N\] per-channel"):
        ops.scaled_mm(a, b, sa, torch.ones(48, 1), torch.bfloat16)
    with pytest.raises(TypeError, match="bias must have out_dtype"):
        ops.scaled_mm(a, b, sa, sb, torch.bfloat16, torch.zeros(48))
    with pytest.raises(ValueError, match=r"bias must have shape \[N\]"):
        ops.scaled_mm(a, b, sa, sb, torch.bfloat16, torch.zeros(47, dtype=torch.bfloat16))


def test_scaled_mm_valid_cpu_input_asks_for_cuda():
    a, b, sa, sb = _mm_args()
    with pytest.raises(ValueError, match="CUDA device"):
        ops.scaled_mm(a, b, torch.ones(4, 1), torch.ones(1, 48), torch.float16,
                      torch.zeros(48, dtype=torch.float16))


# ---------------------------------------------------------------- nvfp4 checks

def test_scaled_fp4_quant_checks():
    with pytest.raises(TypeError, match="x must be torch.float16 or torch.bfloat16"):
        ops.scaled_fp4_quant(torch.randn(4, 32), torch.ones(1))
    with pytest.raises(ValueError, match="multiple of 16"):
        ops.scaled_fp4_quant(torch.randn(4, 24, dtype=torch.bfloat16), torch.ones(1))
    with pytest.raises(TypeError, match="global_scale must be torch.float32"):
        ops.scaled_fp4_quant(torch.randn(4, 32, dtype=torch.bfloat16), torch.ones(1, dtype=torch.half))
    with pytest.raises(ValueError, match="CUDA device"):
        ops.scaled_fp4_quant(torch.randn(4, 32, dtype=torch.bfloat16), torch.ones(1))


def test_cutlass_fp4_gemm_checks():
    a = torch.zeros(3, 32, dtype=torch.uint8)
    b = torch.zeros(64, 32, dtype=torch.uint8)
    sa = torch.zeros(128, 4, dtype=torch.float8_e4m3fn)
    sb = torch.zeros(128, 4, dtype=torch.float8_e4m3fn)
    with pytest.raises(ValueError, match=r"a_sf must be the 128x4-swizzled scales of shape \[128, 4\]"):
        ops.cutlass_fp4_gemm(a, b, torch.zeros(3, 4, dtype=torch.float8_e4m3fn), sb, 1.0, torch.bfloat16)
    with pytest.raises(ValueError, match="multiples of 32"):
        ops.cutlass_fp4_gemm(a, torch.zeros(48, 32, dtype=torch.uint8), sa, sb, 1.0, torch.bfloat16)
    with pytest.raises(TypeError, match="a must be torch.uint8"):
        ops.cutlass_fp4_gemm(a.float(), b, sa, sb, 1.0, torch.bfloat16)
    with pytest.raises(ValueError, match="CUDA device"):
        ops.cutlass_fp4_gemm(a, b, sa, sb, 1.0, torch.bfloat16)


# ---------------------------------------------------------------- marlin checks

def test_marlin_fp4_gemm_checks():
    w = MarlinFP4Weight("nvfp4", torch.zeros(1, dtype=torch.int32), torch.zeros(1), torch.ones(1), None,
                        64, 128, 64, 128, torch.bfloat16)
    with pytest.raises(TypeError, match="MarlinFP4Weight"):
        ops.marlin_fp4_gemm(torch.randn(2, 128, dtype=torch.bfloat16), object())
    with pytest.raises(TypeError, match="prepared for torch.bfloat16"):
        ops.marlin_fp4_gemm(torch.randn(2, 128, dtype=torch.float16), w)
    with pytest.raises(ValueError, match="K = 128"):
        ops.marlin_fp4_gemm(torch.randn(2, 64, dtype=torch.bfloat16), w)
    with pytest.raises(ValueError, match="CUDA device"):
        ops.marlin_fp4_gemm(torch.randn(2, 128, dtype=torch.bfloat16), w)


def test_gptq_marlin_repack_checks():
    with pytest.raises(ValueError, match="N % 64"):
        ops.gptq_marlin_repack(torch.zeros(2, 48, dtype=torch.int32), 16, 48)


# ---------------------------------------------------------------- flash_attn checks

def _attn(b=1, sq=5, sk=7, hq=4, hk=2, d=64, dtype=torch.bfloat16):
    return (torch.randn(b, sq, hq, d, dtype=dtype), torch.randn(b, sk, hk, d, dtype=dtype),
            torch.randn(b, sk, hk, d, dtype=dtype))


def test_flash_attn_checks():
    q, k, v = _attn()
    with pytest.raises(TypeError, match="one dtype"):
        ops.flash_attn_func(q, k.half(), v)
    with pytest.raises(TypeError, match="q must be torch.float16 or torch.bfloat16"):
        ops.flash_attn_func(q.float(), k, v)
    with pytest.raises(ValueError, match="4-D"):
        ops.flash_attn_func(q[0], k, v)
    with pytest.raises(ValueError, match="multiple of kv heads"):
        ops.flash_attn_func(*_attn(hq=3, hk=2))
    with pytest.raises(ValueError, match="contiguous last dim"):
        ops.flash_attn_func(q.transpose(-1, -2).contiguous().transpose(-1, -2), k, v)
    with pytest.raises(ValueError, match="same shape"):
        ops.flash_attn_func(q, k, v[:, :3])
    with pytest.raises(ValueError, match="CUDA device"):
        ops.flash_attn_func(q, k, v, causal=True)
