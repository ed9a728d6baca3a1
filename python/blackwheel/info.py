"""`python -m blackwheel info`: print the build record of the installed wheel.

Reads ``_build_info.json`` (or --path FILE); needs no GPU and no torch.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def format_info(info: dict) -> str:
    """Human-readable build record (pure)."""
    t = info.get("torch", {})
    lock = t.get("lock", {})
    tc = info.get("toolchain", {})
    lines = [
        f"blackwheel {info.get('blackwheel_version', '?')}  (schema {info.get('schema', '?')})",
        f"archs:        {', '.join(info.get('archs', [])) or '-'}",
        f"abi:          {info.get('abi', '?')}",
        f"torch lock:   {lock.get('version', '?')} (git {str(lock.get('git_version', '?'))[:12]}, "
        f"CUDA {lock.get('cuda') or 'none'}, cxx11_abi={lock.get('cxx11_abi')}, "
        f"stable_target {lock.get('stable_target', '?')})",
        f"requires:     {t.get('requirement', '?')}",
        "kernels:",
    ]
    for name, k in sorted(info.get("kernels", {}).items()):
        if not isinstance(k, dict) or not k:
            continue
        lines.append(f"  {name:<12} abi={k.get('abi', '?'):<8} archs={','.join(k.get('archs', []))}"
                     f"  {k.get('library', '')}")
        if k.get("ops"):
            lines.append(f"  {'':<12} ops: {', '.join(k['ops'])}")
    for name, why in sorted(info.get("skipped", {}).items()):
        lines.append(f"  {name:<12} skipped: {why}")
    if info.get("sources"):
        lines.append("sources:")
        for s in info["sources"]:
            patches = ", ".join(p.get("name", "?") for p in s.get("patches", [])) or "none"
            lines.append(f"  {s.get('name')} {s.get('version')}  sha256 {str(s.get('sha256', ''))[:16]}"
                         f"  patches: {patches}")
    if tc:
        lines.append(f"toolchain:    nvcc {tc.get('nvcc_version', '?')} ({tc.get('nvcc_origin', tc.get('origin', '?'))}), "
                     f"{tc.get('host_compiler', '?')}, cmake {tc.get('cmake', '?')}")
    if "source_date_epoch" in info:
        lines.append(f"SOURCE_DATE_EPOCH: {info['source_date_epoch']}")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the raw build record as JSON")
    p.add_argument("--path", type=Path, default=None,
                   help="a _build_info.json to show (default: the installed package's)")


def run(args) -> int:
    from blackwheel._guard import BUILD_INFO, build_info
    try:
        info = build_info(args.path)
    except ImportError as e:
        print(f"info: {e}", file=sys.stderr)
        return 1
    if info is None:
        where = args.path or BUILD_INFO
        print(f"no build record at {where}: this is a source checkout, not an installed wheel "
              f"(build one with `pip wheel .`, or pass --path FILE)", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else format_info(info))
    return 0
