"""Typed Python API over ``torch.ops.blackwheel.*``.

Every function checks its inputs in Python first (TypeError for a wrong dtype
or type, ValueError for a wrong shape, layout or device), then checks that the
op's kernel set is in this wheel and has code for this GPU (RuntimeError,
``KernelUnavailableError``, naming the fix) and only then calls the op, so a
kernel that cannot run here is refused instead of crashing.

Kernel sets (``BLACKWHEEL_KERNELS``) and their ops:
  scaled_mm   cutlass_scaled_mm, cutlass_scaled_mm_supports_fp8   -> scaled_mm
  nvfp4       scaled_fp4_quant, cutlass_scaled_fp4_mm              -> scaled_fp4_quant, cutlass_fp4_gemm
  marlin_fp4  marlin_gemm, gptq_marlin_repack                      -> marlin_fp4_gemm (+ blackwheel.marlin_fp4)
  flash_attn  flash_attn_fwd                                       -> flash_attn_func
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from blackwheel_factory.plan.archs import Arch, parse_arch, runnable
from blackwheel.marlin_fp4 import (
    ATOMIC_ADD_DEFAULT,
    FLOAT4_E2M1F_ID,
    MAX_BLOCKS_PER_SM,
    MarlinFP4Weight,
    make_workspace,
    should_use_atomic_add,
)

__all__ = ["scaled_mm", "scaled_fp4_quant", "cutlass_fp4_gemm", "marlin_fp4_gemm", "flash_attn_func",
           "KernelUnavailableError", "KernelTarget", "kernel_target", "resolve_target"]

# op -> kernel set
FAMILY_OF_OP = {
    "cutlass_scaled_mm": "scaled_mm",
    "cutlass_scaled_mm_supports_fp8": "scaled_mm",
    "scaled_fp4_quant": "nvfp4",
    "cutlass_scaled_fp4_mm": "nvfp4",
    "marlin_gemm": "marlin_fp4",
    "gptq_marlin_repack": "marlin_fp4",
    "flash_attn_fwd": "flash_attn",
}
KERNEL_SETS = ("scaled_mm", "nvfp4", "marlin_fp4", "flash_attn")
# The archs each kernel set's code can target: mirrors blackwheel.toml
# [kernels.*].archs (tests/unit/test_ops.py checks they agree). Used only to
# word the fix when a wheel has no code for the GPU.
FAMILY_ARCHS = {
    "scaled_mm": ("12.0a", "12.0f", "12.1a", "9.0a", "8.9"),
    "nvfp4": ("12.0a", "12.0f", "12.1a"),
    "marlin_fp4": ("12.0a", "12.0f", "12.1a", "9.0a", "8.9", "8.0"),
    "flash_attn": ("12.0a", "12.0f", "12.1a", "9.0a", "8.9", "8.0"),
}
FAMILY_LIMITS = {"nvfp4": "SM_120 only"}
# blackwheel.toml [kernels.flash_attn].head_dims, used when the build record has none
DEFAULT_FA_HEAD_DIMS = (64, 128)

_FP16_BF16 = (torch.float16, torch.bfloat16)
_FP8, _BF16, _FP16, _F32 = torch.float8_e4m3fn, torch.bfloat16, torch.float16, torch.float32


class KernelUnavailableError(RuntimeError):
    """The op's kernel set is not in this wheel, or has no code for this GPU."""


# ---------------------------------------------------------------------------
# which built target runs here
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelTarget:
    family: str
    arch: Arch
    how: str             # "sass" or "ptx-jit"

    def describe(self) -> str:
        """'sm_90a SASS' or 'compute_80 PTX (JIT)'."""
        if self.how == "sass":
            return f"{self.arch.sm} SASS"
        return f"{self.arch.compute} PTX (JIT)"


def resolve_target(info: dict | None, family: str, capability: tuple[int, int], device_name: str) -> KernelTarget:
    """The built target of ``family`` that a GPU of ``capability`` executes, from the
    build record; KernelUnavailableError (naming the fix) when there is none. Pure."""
    if family not in KERNEL_SETS:
        raise ValueError(f"unknown kernel set {family!r}; known: {', '.join(KERNEL_SETS)}")
    if info is None:
        raise KernelUnavailableError(
            "blackwheel has no built kernels here (no _build_info.json: a source checkout?); "
            "install the wheel (pip install blackwheel) or build one (pip wheel . -w dist)")
    kernels = info.get("kernels") or {}
    if family not in kernels:
        built = [f for f in KERNEL_SETS if f in kernels] + sorted(f for f in kernels if f not in KERNEL_SETS)
        why = (info.get("skipped") or {}).get(family)
        why = f"; skipped at build time: {why}" if why else ""
        want = [f for f in KERNEL_SETS if f in kernels or f == family]
        raise KernelUnavailableError(
            f"kernel set '{family}' is not in this wheel (built: {', '.join(built) or 'none'}{why}); "
            f"rebuild with BLACKWHEEL_KERNELS={','.join(want)}")
    archs = [parse_arch(a) for a in kernels[family].get("archs") or []]
    major, minor = capability
    arch, how = runnable(archs, major, minor)
    if arch is not None:
        return KernelTarget(family, arch, how)
    built = ", ".join(str(a) for a in archs) or "no arch"
    # archs of this family that would run here, the most specific first (12.1a before 12.0f)
    rank = {"a": 2, "f": 1, "": 0}
    fits = sorted((a for a in FAMILY_ARCHS.get(family, ()) if parse_arch(a).runs_on(major, minor)),
                  key=lambda a: (-parse_arch(a).number, -rank[parse_arch(a).suffix]))
    if not fits:
        hint = FAMILY_LIMITS.get(family) or f"its kernels run on {', '.join(FAMILY_ARCHS.get(family, ()))} only"
    else:
        now = ";".join(str(a) for a in archs)
        hint = (f"rebuild with BLACKWHEEL_ARCHS including {' or '.join(fits)} "
                f"(e.g. BLACKWHEEL_ARCHS='{now + ';' if now else ''}{fits[0]}')")
    raise KernelUnavailableError(
        f"{family} was built for {built}; this GPU is sm_{major}{minor} ({device_name}): {hint}")


def _build_info() -> dict | None:
    import blackwheel
    return blackwheel.build_info()


def _device_facts(device: torch.device) -> tuple[tuple[int, int], str]:
    return tuple(torch.cuda.get_device_capability(device)), torch.cuda.get_device_name(device)


def kernel_target(family: str, device: torch.device | str | int | None = None) -> KernelTarget:
    """The built target of ``family`` that runs on ``device`` (default: the current
    CUDA device); raises KernelUnavailableError otherwise. Not cached (the ops use
    ``_ready``, which is)."""
    if not torch.cuda.is_available():
        raise KernelUnavailableError("no CUDA GPU is visible (torch.cuda.is_available() is False)")
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    if isinstance(device, int):
        dev = torch.device("cuda", device)
    cap, name = _device_facts(dev)
    return resolve_target(_build_info(), family, cap, name)


# ---------------------------------------------------------------------------
# the host path: what does not depend on the tensors is resolved once per device
# ---------------------------------------------------------------------------

# (op, device index) -> the op's OpOverload, once its kernel set is known to be built
# for that GPU and the op registered: the build record, the GPU's capability and name
# and the arch strings are read once per device, on the first (eager) call
_READY: dict[tuple[str, int], object] = {}
# device index -> (major, minor, SM count)
_DEVICES: dict[int, tuple[int, int, int]] = {}
# Marlin workspaces (zeroed locks; Marlin resets them after each call, so calls ordered
# on one stream share one; like vLLM's get_marlin_workspace, one per stream, so that
# two streams never race on the locks): (device index, stream id) -> locks, and device
# index -> the device's first one (what a traced graph uses)
_WORKSPACES: dict[tuple[int, int], torch.Tensor] = {}
_DEVICE_WORKSPACE: dict[int, torch.Tensor] = {}
_FA_HEAD_DIMS: tuple[int, ...] | None = None

_is_compiling = torch.compiler.is_compiling


def _ready(name: str, device: torch.device):
    """Eager only: the OpOverload of ``name`` after checking that it runs on ``device``
    (KernelUnavailableError naming the fix otherwise); cached per (op, device)."""
    op = _READY.get((name, device.index))
    if op is not None:
        return op
    family = FAMILY_OF_OP[name]
    kernel_target(family, device)
    try:
        op = getattr(torch.ops.blackwheel, name).default
    except (AttributeError, RuntimeError):
        info = _build_info() or {}
        lib = (info.get("kernels", {}).get(family) or {}).get("library", f"_{family}.abi3.so")
        raise KernelUnavailableError(
            f"op blackwheel::{name} is not registered although this wheel lists kernel set '{family}': "
            f"{lib} did not load; reinstall (pip install --force-reinstall blackwheel) and run "
            f"python -m blackwheel doctor") from None
    _READY[(name, device.index)] = op
    return op


def _device_info(device: torch.device) -> tuple[int, int, int] | None:
    """(major, minor, SM count) of a CUDA device, cached by the first eager call; None
    while tracing a device that never ran eagerly (callers then take the safe choice)."""
    d = _DEVICES.get(device.index)
    if d is None and not _is_compiling():
        p = torch.cuda.get_device_properties(device)
        d = _DEVICES[device.index] = (p.major, p.minor, p.multi_processor_count)
    return d


# while tracing a device that never ran eagerly: locks for up to 1024 SMs
_TRACE_WORKSPACE_BLOCKS = 1024 * MAX_BLOCKS_PER_SM


def _op(name: str, device: torch.device):
    """The OpOverload of ``name``, after the (cached) check that it runs on ``device``."""
    if device.type == "cuda" and not _is_compiling():
        return _READY.get((name, device.index)) or _ready(name, device)
    try:
        return getattr(torch.ops.blackwheel, name).default
    except (AttributeError, RuntimeError):
        raise KernelUnavailableError(f"op blackwheel::{name} is not registered (no extension loaded: "
                                     f"a source checkout?)") from None


def reset_caches() -> None:
    """Forget what the host path cached (tests; after CUDA_VISIBLE_DEVICES changes)."""
    global _FA_HEAD_DIMS
    _READY.clear()
    _DEVICES.clear()
    _WORKSPACES.clear()
    _DEVICE_WORKSPACE.clear()
    _FA_HEAD_DIMS = None


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def _names(dtypes) -> str:
    return " or ".join(str(d) for d in dtypes)


def _tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _dtype(x: torch.Tensor, name: str, allowed, fix: str = "") -> None:
    """``fix`` may name the argument as ``{name}`` (formatted only on error)."""
    if x.dtype not in allowed:
        fix = fix.replace("{name}", name)
        raise TypeError(f"{name} must be {_names(allowed)}, got {x.dtype}" + (f"; {fix}" if fix else ""))


def _out_dtype(out_dtype) -> None:
    if out_dtype not in _FP16_BF16:
        raise TypeError(f"out_dtype must be torch.bfloat16 or torch.float16, got {out_dtype}")


def _same_cuda_device(*named) -> torch.device:
    """``named``: name, tensor-or-None, name, tensor-or-None, ... (the first is a tensor).
    Returns the one CUDA device of them all. Meta tensors are accepted too (shapes and
    dtypes only: the ops' fake implementations run, no kernel)."""
    first_name, first = named[0], named[1]
    device = first.device
    if device.type != "cuda" and device.type != "meta":
        raise ValueError(f"{first_name} is on {device}; blackwheel ops run on a CUDA device "
                         f"(move the inputs with .cuda())")
    for i in range(2, len(named), 2):
        t = named[i + 1]
        if t is not None and t.device != device:
            raise ValueError(f"{named[i]} is on {t.device} but {first_name} is on {device}; "
                             f"put all inputs on one CUDA device")
    return device


def _aligned16(x: torch.Tensor, name: str) -> None:
    # data_ptr() is an eager-only fact (fake and meta tensors have none to check)
    if x.device.type == "cuda" and not _is_compiling() and x.data_ptr() % 16:
        raise ValueError(f"{name} does not start on a 16-byte boundary (a slice?); pass {name}.clone()")


# ---------------------------------------------------------------------------
# FP8 scaled GEMM
# ---------------------------------------------------------------------------

def _check_scaled_mm(a, b, scale_a, scale_b, out_dtype, bias) -> tuple[int, int]:
    """scaled_mm's argument checks, each with its clear error; returns (M, N)."""
    _tensor(a, "a"), _tensor(b, "b"), _tensor(scale_a, "scale_a"), _tensor(scale_b, "scale_b")
    fp8_fix = "quantize with blackwheel.testing.quantize_fp8 (or scale and cast with .to(torch.float8_e4m3fn))"
    _dtype(a, "a", (torch.float8_e4m3fn,), fp8_fix)
    _dtype(b, "b", (torch.float8_e4m3fn,), fp8_fix)
    _out_dtype(out_dtype)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a and b must be 2-D (a [M, K], b [K, N]); got {tuple(a.shape)} and {tuple(b.shape)}"
                         f" (reshape a to [-1, K] first)")
    m, k = a.shape
    if b.shape[0] != k:
        raise ValueError(f"a [M, K] = {tuple(a.shape)} and b [K, N] = {tuple(b.shape)} do not multiply "
                         f"(b must be [K, N]: pass w.t() for a [N, K] weight)")
    n = b.shape[1]
    if k % 16 or n % 16:
        raise ValueError(f"K ({k}) and N ({n}) must be multiples of 16 for CUTLASS alignment; "
                         f"zero-pad the weight (and a's K) to the next multiple of 16")
    if not a.is_contiguous():
        raise ValueError("a must be row-major contiguous [M, K]; pass a.contiguous()")
    if b.stride(0) != 1 or b.stride(1) != k:         # b.t() contiguous, without making the view
        raise ValueError("b must be column-major [K, N], i.e. b.t() contiguous; pass w.t() for a contiguous "
                         "[N, K] weight w (or b.t().contiguous().t())")
    for s, name, want, kind in ((scale_a, "scale_a", (m, 1), "[M, 1] per-token"),
                                (scale_b, "scale_b", (1, n), "[1, N] per-channel")):
        _dtype(s, name, (torch.float32,), "pass {name}.float()")
        if not (s.numel() == 1 or tuple(s.shape) == want or (s.ndim == 1 and s.numel() == want[0] * want[1])):
            raise ValueError(f"{name} must have shape [1] (per-tensor) or {kind} = {list(want)}, "
                             f"got {tuple(s.shape)}")
        if not s.is_contiguous():
            raise ValueError(f"{name} must be contiguous; pass {name}.contiguous()")
    if bias is not None:
        _tensor(bias, "bias")
        if bias.dtype != out_dtype:
            raise TypeError(f"bias must have out_dtype ({out_dtype}), got {bias.dtype}; pass bias.to({out_dtype})")
        if tuple(bias.shape) != (n,):
            raise ValueError(f"bias must have shape [N] = [{n}], got {tuple(bias.shape)}")
        if not bias.is_contiguous():
            raise ValueError("bias must be contiguous; pass bias.contiguous()")
    _same_cuda_device("a", a, "b", b, "scale_a", scale_a, "scale_b", scale_b, "bias", bias)
    return m, n


def scaled_mm(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
              out_dtype: torch.dtype, bias: torch.Tensor | None = None) -> torch.Tensor:
    """FP8 GEMM with scales: ``out = ((a * scale_a) @ (b * scale_b) + bias).to(out_dtype)``.

    a        float8_e4m3fn [M, K], row-major (contiguous)
    b        float8_e4m3fn [K, N], column-major (``w.t()`` of a contiguous [N, K] weight)
    scale_a  float32 [1] (per-tensor) or [M, 1] (per-token)
    scale_b  float32 [1] (per-tensor) or [1, N] (per-channel)
    out_dtype torch.bfloat16 or torch.float16
    bias     out_dtype [N] or None
    K and N must be multiples of 16 (CUTLASS 16-byte alignment). Returns [M, N].
    """
    # Eager fast path: one expression accepts the common well-formed call (a strict
    # subset of what _check_scaled_mm accepts); anything else, and tracing, goes through
    # the checks, which raise the clear error or accept it. A few attribute reads.
    ok = False
    if not _is_compiling():
        try:
            m, k = a.shape
            k_b, n = b.shape
            d = a.get_device()
            ok = (a.dtype is _FP8 and b.dtype is _FP8 and (out_dtype is _BF16 or out_dtype is _FP16)
                  and k_b == k and k % 16 == 0 and n % 16 == 0 and a.is_cuda and a.is_contiguous()
                  and b.stride() == (1, k) and b.get_device() == d
                  and scale_a.dtype is _F32 and scale_a.is_contiguous() and scale_a.get_device() == d
                  and (scale_a.numel() == 1 or scale_a.shape == (m, 1))
                  and scale_b.dtype is _F32 and scale_b.is_contiguous() and scale_b.get_device() == d
                  and (scale_b.numel() == 1 or scale_b.shape == (1, n))
                  and (bias is None or (bias.dtype is out_dtype and bias.shape == (n,)
                                        and bias.is_contiguous() and bias.get_device() == d)))
        except (AttributeError, TypeError, ValueError):
            ok = False
    if ok:                                                   # eager on CUDA: the cached op, the pointers
        device = a.device
        op = _READY.get(("cutlass_scaled_mm", d)) or _ready("cutlass_scaled_mm", device)
        if (a.data_ptr() | b.data_ptr()) & 15:
            _aligned16(a, "a"), _aligned16(b, "b")
    else:
        m, n = _check_scaled_mm(a, b, scale_a, scale_b, out_dtype, bias)
        device = a.device
        op = _op("cutlass_scaled_mm", device)
        _aligned16(a, "a"), _aligned16(b, "b")              # eager CUDA only (it checks)
    out = torch.empty((m, n), dtype=out_dtype, device=device)
    if m == 0:
        return out
    op(out, a, b, scale_a, scale_b, bias)
    return out


def scaled_mm_supports_fp8(capability: int | None = None, device: torch.device | str | None = None) -> bool:
    """vLLM's cutlass_scaled_mm_supports_fp8: whether this build has an FP8 scaled_mm
    for compute capability ``capability`` (e.g. 90; default: the device's)."""
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    if capability is None:
        major, minor = torch.cuda.get_device_capability(dev)
        capability = major * 10 + minor
    if not isinstance(capability, int):
        raise TypeError(f"capability must be an int such as 90 or 120, got {capability!r}")
    return bool(_op("cutlass_scaled_mm_supports_fp8", dev)(capability))


# ---------------------------------------------------------------------------
# NVFP4 (SM_120 only)
# ---------------------------------------------------------------------------

def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _scalar_f32(x, name: str, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, (int, float)):
        # a fill kernel, not a host-to-device copy: allowed inside CUDA-graph capture
        return torch.full((1,), float(x), dtype=torch.float32, device=device)
    _tensor(x, name)
    _dtype(x, name, (torch.float32,), "pass {name}.float()")
    if x.numel() != 1:
        raise ValueError(f"{name} must hold one value, got shape {tuple(x.shape)}")
    return x.reshape(1)


def scaled_fp4_quant(x: torch.Tensor, global_scale: torch.Tensor, *,
                     swizzled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize x to NVFP4 (SM_120 only).

    x            float16/bfloat16 [..., K], K % 16 == 0 (flattened to [M, K])
    global_scale float32, one value; vLLM's convention: ``x ~= e2m1 * block_scale /
                 global_scale``, typically ``448 * 6 / x.abs().max()``
    Returns (packed uint8 [M, K // 2] (element 2i in the low nibble),
             block_scales float8_e4m3fn: swizzled=True -> 128x4-swizzled
             [round_up(M, 128), round_up(K // 16, 4)] (what cutlass_fp4_gemm takes);
             swizzled=False -> linear [M, K // 16]).
    """
    _tensor(x, "x")
    _dtype(x, "x", _FP16_BF16, "cast with x.to(torch.bfloat16)")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last dim, got shape {tuple(x.shape)}")
    k = x.shape[-1]
    if k % 16:
        raise ValueError(f"the last dim of x ({k}) must be a multiple of 16 (NVFP4 group size); zero-pad it")
    gs = _scalar_f32(global_scale, "global_scale", x.device)
    x2 = (x if x.ndim == 2 else x.reshape(-1, k)).contiguous()
    device = _same_cuda_device("x", x2, "global_scale", gs)
    op = _op("scaled_fp4_quant", device)
    packed, sf = op(x2, gs, bool(swizzled))
    # swizzled: int32 [round_up(M, 128), round_up(K // 16, 4) // 4] viewed as bytes is
    # already [round_up(M, 128), round_up(K // 16, 4)]
    return packed, sf.view(torch.float8_e4m3fn)


def cutlass_fp4_gemm(a: torch.Tensor, b: torch.Tensor, a_sf: torch.Tensor, b_sf: torch.Tensor,
                     alpha: torch.Tensor | float, out_dtype: torch.dtype) -> torch.Tensor:
    """NVFP4 x NVFP4 GEMM (SM_120 only): ``out = alpha * A @ B.T``.

    a     uint8 [M, K // 2] packed e2m1, b uint8 [N, K // 2] (weight rows); K % 32 == 0, N % 32 == 0
    a_sf  float8_e4m3fn swizzled [round_up(M, 128), round_up(K // 16, 4)] (from scaled_fp4_quant)
    b_sf  float8_e4m3fn swizzled [round_up(N, 128), round_up(K // 16, 4)]
    alpha float32 (one value): 1 / (global_scale_a * global_scale_b)
    Returns out_dtype (bf16/fp16) [M, N].
    """
    for t, name in ((a, "a"), (b, "b"), (a_sf, "a_sf"), (b_sf, "b_sf")):
        _tensor(t, name)
    _dtype(a, "a", (torch.uint8,), "pass packed e2m1 (two per byte) as from scaled_fp4_quant")
    _dtype(b, "b", (torch.uint8,), "pass packed e2m1 (two per byte) as from scaled_fp4_quant")
    _out_dtype(out_dtype)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a and b must be 2-D packed [rows, K // 2]; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} have different K // 2; b is [N, K // 2]")
    m, n, k = a.shape[0], b.shape[0], a.shape[1] * 2
    if k % 32 or n % 32:
        raise ValueError(f"K ({k}) and N ({n}) must be multiples of 32 for the SM120 FP4 GEMM; zero-pad them")
    sfs = []
    for sf, name, rows in ((a_sf, "a_sf", m), (b_sf, "b_sf", n)):
        if sf.dtype == torch.uint8:
            sf = sf.view(torch.float8_e4m3fn)
        _dtype(sf, name, (torch.float8_e4m3fn,))
        want = (_round_up(rows, 128), _round_up(k // 16, 4))
        if tuple(sf.shape) != want:
            raise ValueError(f"{name} must be the 128x4-swizzled scales of shape {list(want)}, got "
                             f"{tuple(sf.shape)} (use the scales scaled_fp4_quant returns, or "
                             f"blackwheel.testing.swizzle_scales)")
        sfs.append(sf.contiguous())
    al = _scalar_f32(alpha, "alpha", a.device if isinstance(alpha, (int, float)) else None)
    device = _same_cuda_device("a", a, "b", b, "a_sf", sfs[0], "b_sf", sfs[1], "alpha", al)
    op = _op("cutlass_scaled_fp4_mm", device)
    out = torch.empty((m, n), dtype=out_dtype, device=device)
    if m == 0:
        return out
    op(out, a.contiguous(), b.contiguous(), sfs[0], sfs[1], al)
    return out


# ---------------------------------------------------------------------------
# FP4 Marlin (weight-only FP4, fp16/bf16 activations)
# ---------------------------------------------------------------------------

def gptq_marlin_repack(q: torch.Tensor, size_k: int, size_n: int) -> torch.Tensor:
    """4-bit GPTQ-layout int32 [K // 8, N] -> Marlin layout int32 [K // 16, 2 * N]
    (K % 16 == 0, N % 64 == 0). Used by blackwheel.marlin_fp4.prepare_*."""
    _tensor(q, "q")
    _dtype(q, "q", (torch.int32,))
    if tuple(q.shape) != (size_k // 8, size_n) or size_k % 16 or size_n % 64:
        raise ValueError(f"q must be int32 [K // 8, N] with K % 16 == 0 and N % 64 == 0; got {tuple(q.shape)} "
                         f"for K={size_k}, N={size_n} (pad with blackwheel.marlin_fp4.padded_nk)")
    device = _same_cuda_device("q", q)
    op = _op("gptq_marlin_repack", device)
    return op(q.contiguous(), size_k, size_n, 4, False)


def _marlin_workspace(device: torch.device) -> torch.Tensor:
    """The Marlin workspace of the current stream on ``device`` (made on its first
    eager call, then kept: a captured CUDA graph keeps using it). While tracing: the
    device's first workspace, or, for a device that never ran eagerly, a fresh one (a
    zero fill in the graph)."""
    if device.type == "meta":
        return torch.zeros(MAX_BLOCKS_PER_SM, dtype=torch.int32, device=device)
    if _is_compiling():
        ws = _DEVICE_WORKSPACE.get(device.index)
        if ws is None:
            return torch.zeros(_TRACE_WORKSPACE_BLOCKS, dtype=torch.int32, device=device)
        return ws
    key = (device.index, torch._C._cuda_getCurrentStream(device.index)[0])
    ws = _WORKSPACES.get(key)
    if ws is None:
        if torch.cuda.is_current_stream_capturing():
            # a fill recorded into a graph has not run at capture time: never make the
            # locks here; the capture stream shares the device's (zeroed, eager) ones
            ws = _DEVICE_WORKSPACE.get(device.index)
            if ws is None:
                raise RuntimeError("marlin_fp4_gemm: CUDA-graph capture before any eager call on this device; "
                                   "warm up with one eager call before capturing (or pass workspace="
                                   "blackwheel.marlin_fp4.make_workspace(device))")
        else:
            ws = make_workspace(device, _device_info(device)[2])
            _DEVICE_WORKSPACE.setdefault(device.index, ws)
        _WORKSPACES[key] = ws
    return ws


def _check_marlin_fp4_gemm(x, weight, workspace) -> torch.device:
    """marlin_fp4_gemm's argument checks, each with its clear error; returns the device."""
    _tensor(x, "x")
    if not isinstance(weight, MarlinFP4Weight):
        raise TypeError("weight must be a MarlinFP4Weight: prepare it with blackwheel.marlin_fp4."
                        "prepare_nvfp4_weight or prepare_mxfp4_weight")
    _dtype(x, "x", _FP16_BF16, "cast with x.to(torch.bfloat16)")
    if x.dtype != weight.act_dtype:
        raise TypeError(f"x is {x.dtype} but the weight was prepared for {weight.act_dtype} activations "
                        f"(the scale encoding depends on it); cast x or prepare the weight with "
                        f"act_dtype={x.dtype}")
    size_k = weight.size_k
    if x.ndim < 1 or x.shape[-1] != size_k:
        raise ValueError(f"x must be [..., K] with K = {size_k}, got {tuple(x.shape)}")
    device = _same_cuda_device("x", x, "qweight", weight.qweight, "scales", weight.scales,
                               "global_scale", weight.global_scale, "bias", weight.bias)
    if workspace is not None:
        _tensor(workspace, "workspace")
        _dtype(workspace, "workspace", (torch.int32,), "use blackwheel.marlin_fp4.make_workspace(device)")
    return device


def marlin_fp4_gemm(x: torch.Tensor, weight: MarlinFP4Weight, *, workspace: torch.Tensor | None = None,
                    use_fp32_reduce: bool = True, use_atomic_add: bool | None = None) -> torch.Tensor:
    """``x @ W.T (+ bias)`` for an FP4 weight W [N, K] prepared by
    ``blackwheel.marlin_fp4.prepare_nvfp4_weight`` / ``prepare_mxfp4_weight``.

    x               weight.act_dtype (float16/bfloat16; MXFP4: bfloat16) [..., K]
    workspace       int32 zeroed locks (blackwheel.marlin_fp4.make_workspace); default one per device
    use_fp32_reduce reduce the K-split partial sums in fp32 (vLLM's default, True)
    use_atomic_add  reduce with atomicAdd into the output; None: the call heuristic of
                    blackwheel.marlin_fp4.should_use_atomic_add (vLLM 0.33's gate: N < 2048 and
                    K >= 2048, not bf16 before sm_90; on by default only where it measured faster)
    Returns act_dtype [..., N].
    """
    # Eager fast path (a strict subset of what the checks accept): the weight's tensors
    # were found on one CUDA device when it was made (weight._device), so one compare
    # checks them all; anything else, and tracing, goes through the checks.
    ok = False
    if workspace is None and not _is_compiling():
        try:
            d = weight._device
            ok = (d is not None and x.dtype is weight.act_dtype and (x.dtype is _BF16 or x.dtype is _FP16)
                  and x.get_device() == d and x.is_cuda
                  and x.shape[-1] == weight.size_k and type(weight) is MarlinFP4Weight)
        except (AttributeError, IndexError):
            ok = False
    if ok:
        device = x.device
        op = _READY.get(("marlin_gemm", d)) or _ready("marlin_gemm", device)
    else:
        device = _check_marlin_fp4_gemm(x, weight, workspace)
        op = _op("marlin_gemm", device)
    size_k, size_n, padded_k, padded_n = weight.size_k, weight.size_n, weight.padded_k, weight.padded_n
    flat = x.ndim == 2
    x2 = x if flat else x.reshape(-1, size_k)
    m = x2.shape[0]
    if m == 0:
        return x.new_empty((*x.shape[:-1], size_n))
    if padded_k != size_k:
        x2 = torch.nn.functional.pad(x2, (0, padded_k - size_k))
    x2 = x2.contiguous()
    if workspace is None:
        workspace = _WORKSPACES.get((d, torch._C._cuda_getCurrentStream(d)[0])) if ok else None
        if workspace is None:
            workspace = _marlin_workspace(device)
    if use_atomic_add is None:
        # the shape gate first: the capability is only needed where it can say yes
        use_atomic_add = False
        if ATOMIC_ADD_DEFAULT and device.type == "cuda":
            info = _device_info(device)
            use_atomic_add = info is not None and should_use_atomic_add(m, padded_n, padded_k, info[0], x.dtype)
    out = op(x2, None, weight.qweight, weight.bias, weight.scales, None, weight.global_scale, None,
             workspace, FLOAT4_E2M1F_ID, m, padded_n, padded_k, bool(use_atomic_add), bool(use_fp32_reduce),
             False)
    if padded_n != size_n:
        out = out[:, :size_n].contiguous()
    return out if flat else out.reshape((*x.shape[:-1], size_n))


# ---------------------------------------------------------------------------
# FlashAttention-2 forward
# ---------------------------------------------------------------------------

def _fa_head_dims() -> tuple[int, ...]:
    global _FA_HEAD_DIMS
    if _FA_HEAD_DIMS is None:
        info = _build_info() or {}
        dims = (info.get("kernels", {}).get("flash_attn") or {}).get("head_dims")
        _FA_HEAD_DIMS = tuple(int(d) for d in dims) if dims else DEFAULT_FA_HEAD_DIMS
    return _FA_HEAD_DIMS


def _check_flash_attn(q, k, v, softmax_scale):
    """flash_attn_func's argument checks, each with its clear error; returns (op, softmax_scale)."""
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        _tensor(t, name)
        _dtype(t, name, _FP16_BF16, "cast with {name}.to(torch.bfloat16)")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be 4-D [batch, seqlen, heads, head_dim]; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    b, sq, hq, d = q.shape
    if k.shape != v.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape")
    if k.shape[0] != b or k.shape[3] != d:
        raise ValueError(f"k/v [B, Sk, Hkv, D] = {tuple(k.shape)} do not match q [B, Sq, Hq, D] = {tuple(q.shape)}")
    hk = k.shape[2]
    if hk == 0 or hq % hk:
        raise ValueError(f"query heads ({hq}) must be a multiple of kv heads ({hk})")
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dim; pass {name}.contiguous()")
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(d)
    if not isinstance(softmax_scale, (int, float)) or not math.isfinite(softmax_scale):
        raise TypeError(f"softmax_scale must be a finite float, got {softmax_scale!r}")
    device = _same_cuda_device("q", q, "k", k, "v", v)
    op = _op("flash_attn_fwd", device)
    # while tracing, the dims cached by an eager call (the C++ op checks them too)
    dims = _FA_HEAD_DIMS if _is_compiling() else _fa_head_dims()
    if dims is not None and d not in dims:
        raise ValueError(f"head_dim {d} is not built into this wheel (built: {', '.join(map(str, dims))}); "
                         f"rebuild with BLACKWHEEL_FA_HEAD_DIMS={','.join(map(str, sorted({*dims, d})))}")
    return op, softmax_scale


def flash_attn_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
                    causal: bool = False, *, return_lse: bool = False):
    """FlashAttention-2 forward.

    q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D]; float16 or bfloat16 (all the same);
    last dim contiguous; Hq % Hkv == 0 (GQA/MQA); D one of the built head dims
    (default 64, 128). softmax_scale defaults to 1/sqrt(D). causal masks
    bottom-right aligned (query i sees keys j <= i + Sk - Sq).
    Returns out [B, Sq, Hq, D] (q's dtype), or (out, softmax_lse fp32 [B, Hq, Sq])
    with return_lse=True.
    """
    # Eager fast path (a strict subset of what _check_flash_attn accepts); anything else,
    # and tracing, goes through the checks, which raise the clear error or accept it.
    ok = False
    if not _is_compiling():
        try:
            b, sq, hq, d = q.shape
            ks = k.shape
            dev = q.get_device()
            dt = q.dtype
            ok = ((dt is _BF16 or dt is _FP16) and k.dtype is dt and v.dtype is dt and q.is_cuda
                  and ks == v.shape and len(ks) == 4 and ks[0] == b and ks[3] == d and ks[2] > 0
                  and hq % ks[2] == 0 and q.stride()[-1] == 1 and k.stride()[-1] == 1 and v.stride()[-1] == 1
                  and k.get_device() == dev and v.get_device() == dev
                  and d in (_FA_HEAD_DIMS or _fa_head_dims())
                  and (softmax_scale is None or (type(softmax_scale) is float and math.isfinite(softmax_scale))))
        except (AttributeError, TypeError, ValueError):
            ok = False
    if ok:
        op = _READY.get(("flash_attn_fwd", dev)) or _ready("flash_attn_fwd", q.device)
        if softmax_scale is None:
            softmax_scale = 1.0 / math.sqrt(d)
    else:
        op, softmax_scale = _check_flash_attn(q, k, v, softmax_scale)
    out, lse = op(q, k, v, None, float(softmax_scale), bool(causal))
    return (out, lse) if return_lse else out
