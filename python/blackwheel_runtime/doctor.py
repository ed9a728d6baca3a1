"""`doctor`: for every installed product (found by its build record), the archs
it was built for, whether this GPU and driver run them, whether the running torch
fits. One code path for every product: ``python -m blackwheel doctor`` and
``python -m flash_attn_2_cuda doctor`` give the same answer.

Pure core: ``diagnose(info, facts, torch_error, gpus, gpu_note, driver_cuda)`` ->
list of (level, text) for one record; ``diagnose_all`` over several. Effects (the
torch import, CUDA queries: ``gpu.probe``) are gathered first and work without a
GPU or driver: absence is reported, not raised.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import archs as A
from . import record as R
from . import torch_lock as L
from .gpu import MIN_DRIVER, Gpu, Machine, cubin_cuda, probe

__all__ = ["diagnose", "diagnose_all", "Gpu", "add_arguments", "run"]


def diagnose(info: dict, facts, torch_error: str, gpus: list[Gpu] | None, gpu_note: str,
             driver_cuda: tuple[int, int] | None) -> list[tuple[str, str]]:
    """(level, line) for one build record: level is ok | warn | fail | info."""
    out: list[tuple[str, str]] = []
    try:
        lock = L.lock_from_dict(info["torch"]["lock"])
    except (KeyError, TypeError, ValueError) as e:
        return [("fail", f"build record: no usable torch lock ({e}); reinstall the wheel")]
    abi = info.get("abi", "classic")
    if abi not in ("classic", "stable"):
        abi = "classic"
    # torch
    drifts = L.compare(lock, facts, abi)
    fix = L.pip_fix(lock, abi)
    if facts is None:
        out.append(("fail", f"torch: not importable ({torch_error}); fix: {fix}"))
    elif drifts:
        out.append(("fail", f"torch: {facts.describe()} does not fit this build "
                            f"(needs {L.required_label(lock, abi)}): "
                            + "; ".join(str(d) for d in drifts) + f"; fix: {fix}"))
    else:
        out.append(("ok", f"torch: {facts.describe()} fits {L.required_label(lock, abi)}"))
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
        for fam, k in sorted((info.get("kernels") or {}).items()):
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
                                 f"{A.rebuild_hint(g.major, g.minor)}"))
        out.extend(rows)
    for fam, why in sorted((info.get("skipped") or {}).items()):
        out.append(("info", f"  {fam}: not built ({why})"))
    return out


def diagnose_all(records: list[tuple[str, dict]], machine: Machine) -> list[tuple[str, str, str]]:
    """(product, level, line) for every (where, record): a heading per product, then
    its diagnosis against the one machine."""
    out = []
    for where, info in records:
        name = R.label(info)
        out.append((name, "info", f"{name}: archs {', '.join(info.get('archs', [])) or '-'} "
                                  f"({where})"))
        out += [(name, lv, t) for lv, t in diagnose(info, machine.facts, machine.torch_error,
                                                     machine.gpus, machine.gpu_note,
                                                     machine.driver_cuda)]
    return out


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--path", type=Path, default=None,
                   help="one _build_info.json (default: every installed product's)")
    p.add_argument("--product", default=None,
                   help=f"only this installed product ({', '.join(R.PRODUCTS)})")


def _records(args) -> list[tuple[str, dict]]:
    if args.path:
        info = R.read(args.path)
        if info is None:
            raise R.RecordError(f"no build record at {args.path}")
        return [(str(args.path), info)]
    found = [R.installed_product(args.product)] if args.product else R.installed()
    records = [(f"{p.package}/{R.RECORD_NAME}", p.info) for p in found if p.info is not None]
    if not records:
        where = ", ".join(f"{p.folder}" for p in found) or "none importable"
        raise R.RecordError(f"no installed product has a build record (packages found: {where}; "
                            f"a source checkout?); install a wheel, or pass --path FILE")
    return records


def run(args) -> int:
    try:
        records = _records(args)
    except ImportError as e:
        print(f"doctor: {e}", file=sys.stderr)
        return 1
    lines = diagnose_all(records, probe())
    if args.json:
        print(json.dumps([{"product": p, "level": lv, "text": t} for p, lv, t in lines], indent=2))
    else:
        for _, lv, t in lines:
            print(f"[{lv:>4}] {t}")
    return 1 if any(lv == "fail" for _, lv, _ in lines) else 0
