"""Which built kernel runs on which GPU, and the host path's per-device cache: the
layer under every typed op (``ops.py``, ``marlin_fp4.py``), which import it and
never each other the other way round.

``resolve_target`` (pure) turns the build record and a GPU's capability into the
target that runs, or a KernelUnavailableError naming the fix; ``_op`` is what a
call uses: the op's OpOverload, checked once per (op, device). The argument
helpers every op shares (``_tensor``, ``_dtype``, ``_same_cuda_device``) are here too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from blackwheel import _installed
from blackwheel._runtime.archs import Arch, parse_arch, runnable

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
# The archs each kernel set's code can target: mirrors products/kernel-pack.toml
# [family.*].archs (tests/unit/test_ops.py checks they agree). Used only to
# word the fix when a wheel has no code for the GPU.
FAMILY_ARCHS = {
    "scaled_mm": ("12.0a", "12.0f", "12.1a", "9.0a", "8.9"),
    "nvfp4": ("12.0a", "12.0f", "12.1a"),
    "marlin_fp4": ("12.0a", "12.0f", "12.1a", "9.0a", "8.9", "8.0"),
    "flash_attn": ("12.0a", "12.0f", "12.1a", "9.0a", "8.9", "8.0"),
}
FAMILY_LIMITS = {"nvfp4": "SM_120 only"}


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
    return _installed.INFO


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


def _op(name: str, device: torch.device):
    """The OpOverload of ``name``, after the (cached) check that it runs on ``device``."""
    if device.type == "cuda" and not _is_compiling():
        return _READY.get((name, device.index)) or _ready(name, device)
    try:
        return getattr(torch.ops.blackwheel, name).default
    except (AttributeError, RuntimeError):
        raise KernelUnavailableError(f"op blackwheel::{name} is not registered (no extension loaded: "
                                     f"a source checkout?)") from None


# ---------------------------------------------------------------------------
# argument checks shared by the ops
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
