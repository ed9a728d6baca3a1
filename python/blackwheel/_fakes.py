"""Fake (meta) implementations of every ``torch.ops.blackwheel.*`` tensor op, so that
``torch.compile`` (FakeTensorMode, meta tensors, AOT autograd) can trace them.

The schemas are defined in C++ (``STABLE_TORCH_LIBRARY_FRAGMENT(blackwheel, m)`` in
csrc/*/), and torch only accepts a fake for an op whose schema exists
(``register_fake`` on an undefined op raises "operator ... does not exist", measured
on torch 2.14.1). So ``register(families)`` runs right after the extensions are
loaded (``blackwheel/__init__``), for the kernel sets that loaded.

``SCHEMAS`` repeats the C++ schema strings: tests/unit/test_fakes.py checks that they
equal the ones in csrc/ (so the copy cannot drift) and uses ``define_schemas`` to
define them in Python where no extension is loaded (a source checkout or CPU CI),
then checks every fake under FakeTensorMode and torch.compile(fullgraph=True).
"""
from __future__ import annotations

import warnings

import torch

# op -> (kernel set, schema as written in csrc/<set>/*)
SCHEMAS: dict[str, tuple[str, str]] = {
    "cutlass_scaled_mm": (
        "scaled_mm",
        "cutlass_scaled_mm(Tensor! out, Tensor a, Tensor b, Tensor a_scales, Tensor b_scales, "
        "Tensor? bias) -> ()"),
    "cutlass_scaled_mm_supports_fp8": (
        "scaled_mm", "cutlass_scaled_mm_supports_fp8(int cuda_device_capability) -> bool"),
    "scaled_fp4_quant": (
        "nvfp4",
        "scaled_fp4_quant(Tensor input, Tensor input_scale, bool is_sf_swizzled_layout) -> (Tensor, Tensor)"),
    "cutlass_scaled_fp4_mm": (
        "nvfp4",
        "cutlass_scaled_fp4_mm(Tensor! out, Tensor a, Tensor b, Tensor block_scale_a, Tensor block_scale_b, "
        "Tensor alpha) -> ()"),
    "cutlass_scaled_mm_supports_fp4": (
        "nvfp4", "cutlass_scaled_mm_supports_fp4(int cuda_device_capability) -> bool"),
    "marlin_gemm": (
        "marlin_fp4",
        "marlin_gemm(Tensor a, Tensor? c_or_none, Tensor b_q_weight, Tensor? b_bias_or_none, Tensor b_scales, "
        "Tensor? a_scales, Tensor? global_scale, Tensor? b_zeros_or_none, Tensor workspace, int b_type_id, "
        "SymInt size_m, SymInt size_n, SymInt size_k, bool use_atomic_add, bool use_fp32_reduce, "
        "bool is_zp_float) -> Tensor"),
    "gptq_marlin_repack": (
        "marlin_fp4",
        "gptq_marlin_repack(Tensor b_q_weight, SymInt size_k, SymInt size_n, int num_bits, bool is_a_8bit) "
        "-> Tensor"),
    "flash_attn_fwd": (
        "flash_attn",
        "flash_attn_fwd(Tensor q, Tensor k, Tensor v, Tensor? out, float softmax_scale, bool is_causal) "
        "-> (Tensor, Tensor)"),
}

# ops without tensor arguments: their CompositeExplicitAutograd kernel runs for any
# backend (Meta included), so they need no fake
NO_FAKE = frozenset({"cutlass_scaled_mm_supports_fp8", "cutlass_scaled_mm_supports_fp4"})


def _round_up(x, m: int):
    return (x + m - 1) // m * m


# ---------------------------------------------------------------------------
# the fakes: output shapes and dtypes only, no device work
# ---------------------------------------------------------------------------

def _cutlass_scaled_mm(out, a, b, a_scales, b_scales, bias):
    torch._check(out.shape[0] == a.shape[0] and out.shape[1] == b.shape[1],
                 lambda: "blackwheel.cutlass_scaled_mm: out must be [M, N]")
    return None


def _scaled_fp4_quant(input, input_scale, is_sf_swizzled_layout):
    n = input.shape[-1]
    m = input.numel() // n
    packed = input.new_empty((m, n // 2), dtype=torch.uint8)
    if is_sf_swizzled_layout:
        sf = input.new_empty((_round_up(m, 128), _round_up(n // 16, 4) // 4), dtype=torch.int32)
    else:
        sf = input.new_empty((m, n // 16), dtype=torch.uint8)
    return packed, sf


def _cutlass_scaled_fp4_mm(out, a, b, block_scale_a, block_scale_b, alpha):
    torch._check(out.shape[0] == a.shape[0] and out.shape[1] == b.shape[0],
                 lambda: "blackwheel.cutlass_scaled_fp4_mm: out must be [M, N]")
    return None


def _marlin_gemm(a, c_or_none, b_q_weight, b_bias_or_none, b_scales, a_scales, global_scale,
                 b_zeros_or_none, workspace, b_type_id, size_m, size_n, size_k, use_atomic_add,
                 use_fp32_reduce, is_zp_float):
    # vLLM's _marlin_gemm_fake: the output has the activations' dtype (fp16/bf16),
    # else (8-bit activations) the scales' dtype
    dtype = a.dtype if a.dtype in (torch.float16, torch.bfloat16) else b_scales.dtype
    return a.new_empty((size_m, size_n), dtype=dtype)


def _gptq_marlin_repack(b_q_weight, size_k, size_n, num_bits, is_a_8bit):
    pack_factor = 32 // num_bits
    return b_q_weight.new_empty((size_k // 16, size_n * 16 // pack_factor), dtype=torch.int32)


def _flash_attn_fwd(q, k, v, out, softmax_scale, is_causal):
    b, sq, hq, _ = q.shape
    return torch.empty_like(q), q.new_empty((b, hq, sq), dtype=torch.float32)


FAKES = {
    "cutlass_scaled_mm": _cutlass_scaled_mm,
    "scaled_fp4_quant": _scaled_fp4_quant,
    "cutlass_scaled_fp4_mm": _cutlass_scaled_fp4_mm,
    "marlin_gemm": _marlin_gemm,
    "gptq_marlin_repack": _gptq_marlin_repack,
    "flash_attn_fwd": _flash_attn_fwd,
}

_LIB: torch.library.Library | None = None          # fakes of ops the extensions define
_SCHEMA_LIB: torch.library.Library | None = None   # schemas (and their fakes) defined here
_DEFINED_HERE: set[str] = set()
_REGISTERED: set[str] = set()
FAILED: dict[str, str] = {}                        # op -> why its fake could not be registered


def _lib() -> torch.library.Library:
    global _LIB
    if _LIB is None:
        _LIB = torch.library.Library("blackwheel", "FRAGMENT")
    return _LIB


def hasattr_op(op: str) -> bool:
    try:
        getattr(torch.ops.blackwheel, op)
    except (AttributeError, RuntimeError):
        return False
    return True


def register(families=None) -> list[str]:
    """Register the fake of every op of ``families`` (default: all) whose schema is
    defined (i.e. whose extension loaded). Idempotent; returns the ops registered."""
    done = []
    for op, (family, _) in SCHEMAS.items():
        if op in NO_FAKE or op in _REGISTERED or (families is not None and family not in families):
            continue
        if not hasattr_op(op):
            continue
        lib = _SCHEMA_LIB if op in _DEFINED_HERE else _lib()
        try:
            torch.library.register_fake(f"blackwheel::{op}", FAKES[op], lib=lib)
        except Exception as e:  # noqa: BLE001 - eager use must not depend on it
            FAILED[op] = f"{type(e).__name__}: {e}"
            warnings.warn(f"blackwheel: no fake implementation for blackwheel::{op} ({FAILED[op]}); "
                          f"eager calls work, torch.compile cannot trace this op", RuntimeWarning,
                          stacklevel=2)
            continue
        _REGISTERED.add(op)
        done.append(op)
    return done


def define_schemas(families=None) -> list[str]:
    """Define in Python the schemas of ops that no loaded extension defines (source
    checkout, CPU CI: shapes, dtypes and tracing only; calling such an op on real
    tensors raises "no kernel"). ``undefine_schemas`` takes them back. Returns the
    ops defined."""
    global _SCHEMA_LIB
    done = []
    for op, (family, schema) in SCHEMAS.items():
        if families is not None and family not in families:
            continue
        if hasattr_op(op):
            continue
        if _SCHEMA_LIB is None:
            _SCHEMA_LIB = torch.library.Library("blackwheel", "FRAGMENT")
        _SCHEMA_LIB.define(schema)
        _DEFINED_HERE.add(op)
        done.append(op)
    return done


def undefine_schemas() -> None:
    """Remove what define_schemas defined (with the fakes registered on it)."""
    global _SCHEMA_LIB
    if _SCHEMA_LIB is not None:
        _SCHEMA_LIB._destroy()
        _SCHEMA_LIB = None
    _REGISTERED.difference_update(_DEFINED_HERE)
    _DEFINED_HERE.clear()
