"""`python -m blackwheel doctor`: GPUs, torch and driver against what was built.

Pure core: ``diagnose(info, facts, gpus, driver_cuda)`` -> list of (level, text)
lines. Effects (torch import, CUDA queries) are gathered first and work without
a GPU or driver: absence is reported, not raised.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

# Minimum driver branch per CUDA major: cubins built by any 13.x nvcc run on a
# driver >= 580 (CUDA minor version compatibility; PTX JIT needs the matching
# minor). Source: CUDA Toolkit release notes, "CUDA Driver" table.
MIN_DRIVER = {13: "580", 12: "525"}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    major: int
    minor: int


def _parse_cuda(v: str | None) -> tuple[int, int] | None:
    if not v:
        return None
    parts = str(v).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def cubin_cuda(info: dict) -> tuple[int, int] | None:
    """CUDA version of the cubins: the nvcc that built them (else the lock's CUDA)."""
    return (_parse_cuda(info.get("toolchain", {}).get("nvcc_version"))
            or _parse_cuda(info.get("torch", {}).get("lock", {}).get("cuda")))


def diagnose(info: dict, facts, torch_error: str, gpus: list[Gpu] | None, gpu_note: str,
             driver_cuda: tuple[int, int] | None) -> list[tuple[str, str]]:
    """(level, line): level is ok | warn | fail | info."""
    from blackwheel_factory.plan import archs as A
    from blackwheel_factory.inputs.lock import compare, lock_from_dict, pip_fix, required_label
    out: list[tuple[str, str]] = []
    lock = lock_from_dict(info["torch"]["lock"])
    abi = info.get("abi", "classic")
    # torch
    drifts = compare(lock, facts, abi)
    if facts is None:
        out.append(("fail", f"torch: not importable ({torch_error}); fix: {pip_fix(lock, abi)}"))
    elif drifts:
        out.append(("fail", f"torch: {facts.describe()} does not fit this build "
                            f"(needs {required_label(lock, abi)}): "
                            + "; ".join(str(d) for d in drifts) + f"; fix: {pip_fix(lock, abi)}"))
    else:
        out.append(("ok", f"torch: {facts.describe()} fits {required_label(lock, abi)}"))
    # driver
    need = cubin_cuda(info)
    if driver_cuda is None:
        out.append(("warn", "driver: no NVIDIA driver found (cudaDriverGetVersion unavailable or 0)"
                            + (f"; the cubins need CUDA {need[0]}.{need[1]} support, i.e. driver >= "
                               f"{MIN_DRIVER.get(need[0], '?')}" if need else "")))
    elif need and driver_cuda < (need[0], 0):
        out.append(("fail", f"driver: supports CUDA {driver_cuda[0]}.{driver_cuda[1]}, the cubins "
                            f"are CUDA {need[0]}.{need[1]}: install driver >= "
                            f"{MIN_DRIVER.get(need[0], '?')}"))
    else:
        out.append(("ok", f"driver: supports CUDA {driver_cuda[0]}.{driver_cuda[1]}"
                          + (f" (cubins: CUDA {need[0]}.{need[1]})" if need else "")))
    # GPUs x families
    if not gpus:
        out.append(("warn", f"GPU: none visible ({gpu_note}); no op can run here"))
        return out
    for g in gpus:
        out.append(("info", f"GPU {g.index}: {g.name}, compute capability {g.major}.{g.minor}"))
        rows, runs = [], 0
        for fam, k in sorted(info.get("kernels", {}).items()):
            if not isinstance(k, dict) or "archs" not in k:
                continue
            target, how = A.runnable(A.parse_arch_list(k["archs"]), g.major, g.minor)
            ops = ", ".join(k.get("ops", [])) or "its ops"
            if target is None:
                # e.g. SM_120-only NVFP4 on an H100: expected, its ops refuse cleanly
                rows.append(("warn", f"  {fam}: does not run ({how}): {ops}"))
            else:
                runs += 1
                rows.append(("ok", f"  {fam}: runs ({how} {target.sm}): {ops}"))
        if rows and not runs:
            rows.append(("fail", f"  no kernel set of this wheel runs on GPU {g.index} "
                                 f"(sm_{g.major}{g.minor}); rebuild with BLACKWHEEL_ARCHS including "
                                 f"{g.major}.{g.minor}{'a' if g.major >= 9 else ''}"))
        out.extend(rows)
    for fam, why in sorted(info.get("skipped", {}).items()):
        out.append(("info", f"  {fam}: not built ({why})"))
    return out


# --- effects -------------------------------------------------------------------
def probe() -> tuple[object, str, list[Gpu] | None, str, tuple[int, int] | None]:
    """(facts, torch_error, gpus, gpu_note, driver_cuda) of this machine."""
    from blackwheel_factory.inputs.lock import import_torch_facts
    facts, err = import_torch_facts()
    if facts is None:
        return None, err, None, "torch is not importable", _driver_via_ctypes()
    import torch
    gpus: list[Gpu] = []
    note = ""
    try:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                major, minor = torch.cuda.get_device_capability(i)
                gpus.append(Gpu(i, torch.cuda.get_device_name(i), major, minor))
        else:
            note = ("torch.cuda.is_available() is False" +
                    ("" if torch.version.cuda else ": this torch is CPU-only"))
    except Exception as e:  # a driver that fails to initialise
        note = f"CUDA initialisation failed: {e}"
    return facts, "", gpus, note, _driver_via_ctypes()


def _driver_via_ctypes() -> tuple[int, int] | None:
    """cudaDriverGetVersion through the CUDA runtime torch loads (0 = no driver)."""
    import ctypes
    for name in ("libcudart.so.13", "libcudart.so.12", "libcuda.so.1"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        fn = getattr(lib, "cudaDriverGetVersion", None) or getattr(lib, "cuDriverGetVersion", None)
        if fn is None:
            continue
        v = ctypes.c_int(0)
        if fn(ctypes.byref(v)) == 0 and v.value > 0:
            return v.value // 1000, (v.value % 1000) // 10
    return None


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--path", type=Path, default=None, help="a _build_info.json (default: installed)")


def run(args) -> int:
    from blackwheel._guard import BUILD_INFO, build_info
    try:
        info = build_info(args.path)
    except ImportError as e:
        print(f"doctor: {e}", file=sys.stderr)
        return 1
    if info is None:
        print(f"doctor: no build record at {args.path or BUILD_INFO} (source checkout); "
              f"build and install a wheel, or pass --path FILE", file=sys.stderr)
        return 1
    facts, err, gpus, note, driver = probe()
    lines = diagnose(info, facts, err, gpus, note, driver)
    if args.json:
        print(json.dumps([{"level": lv, "text": t} for lv, t in lines], indent=2))
    else:
        for lv, t in lines:
            print(f"[{lv:>4}] {t}")
    return 1 if any(lv == "fail" for lv, _ in lines) else 0
