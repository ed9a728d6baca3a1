"""`info`: print a build record: of the installed kernel pack (default), of an
installed product (--product flash-attn), of a wheel file (--wheel W.whl) or of
--path FILE. Needs no GPU and no torch."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import record as R


def format_info(info: dict) -> str:
    """Human-readable build record (pure)."""
    t = info.get("torch", {})
    lock = t.get("lock", {})
    tc = info.get("toolchain", {})
    product = info.get("product") or {}
    head = (f"{product['dist']} {product.get('version', '?')}  (built by blackwheel "
            f"{info.get('blackwheel_version', '?')}, schema {info.get('schema', '?')})"
            if product.get("version") else
            f"blackwheel {info.get('blackwheel_version', '?')}  (schema {info.get('schema', '?')})")
    lines = [
        head,
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
        for opt in ("head_dims", "directions", "dtypes"):
            if k.get(opt):
                lines.append(f"  {'':<12} {opt}: {', '.join(map(str, k[opt]))}")
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
                   help="a _build_info.json to show (default: the installed kernel pack's)")
    p.add_argument("--wheel", type=Path, default=None, help="show the build record inside a wheel file")
    p.add_argument("--product", default=None,
                   help=f"an installed product instead of the kernel pack ({', '.join(R.PRODUCTS)})")


def run(args) -> int:
    where = args.path
    try:
        if getattr(args, "wheel", None):
            where, info = args.wheel, R.from_wheel(args.wheel)
        elif args.path:
            info = R.read(args.path)
        else:
            p = R.installed_product(getattr(args, "product", None) or "blackwheel")
            where, info = p.record_path, p.info
    except ImportError as e:
        print(f"info: {e}", file=sys.stderr)
        return 1
    if info is None:
        print(f"no build record at {where}: this is a source checkout, not an installed wheel "
              f"(build one, or pass --path FILE)", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else format_info(info))
    return 0
