"""`python -m blackwheel smoke [--json OUT] [--filter TEXT]`: run every op of this wheel
on this GPU against a plain-torch reference and print one row per case:
op, shapes, dtypes, the built target that ran (e.g. "sm_90a SASS"), max abs /
rel error, pass/fail. Exit 0 when every case passed (or was skipped because the
wheel does not contain its kernel set), 1 on any failure, 2 when nothing can
run (no GPU, no built kernels).

The cases are blackwheel.testing.cases (shared with tests/gpu).
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--filter", "-k", metavar="TEXT", action="append", default=[],
                        help="run only cases whose name contains TEXT (repeatable: any of them)")
    parser.add_argument("--device", default=None, help="CUDA device (default: the current one)")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    return f"{x:.2e}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def run(args: argparse.Namespace) -> int:
    from blackwheel.testing.cases import all_cases, run_case

    cases = all_cases()
    if args.filter:
        cases = [c for c in cases if any(f in c.name for f in args.filter)]
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    if not cases:
        print(f"smoke: no case matches {args.filter}", file=sys.stderr)
        return 2

    import torch
    if not torch.cuda.is_available():
        print("smoke: no CUDA GPU is visible (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, CUDA {torch.version.cuda}); run it on the GPU host", file=sys.stderr)
        return 2
    import blackwheel
    info = blackwheel.build_info()
    if info is None:
        print("smoke: this blackwheel has no built kernels (no _build_info.json: a source checkout?); "
              "install the wheel and run it from outside the source tree", file=sys.stderr)
        return 2

    dev = torch.device(args.device) if args.device else torch.device("cuda", torch.cuda.current_device())
    major, minor = torch.cuda.get_device_capability(dev)
    gpu = f"{torch.cuda.get_device_name(dev)} (sm_{major}{minor})"
    built = ", ".join(f"{f} [{'; '.join(v.get('archs', []))}]" for f, v in (info.get("kernels") or {}).items())
    print(f"blackwheel {info.get('blackwheel_version', '?')} on {gpu}, torch {torch.__version__}")
    print(f"built: {built or 'nothing'}\n")

    rows, records = [], []
    failed = 0
    t0 = time.perf_counter()
    for case in cases:
        t = time.perf_counter()
        res = run_case(case, dev)
        dt = time.perf_counter() - t
        max_abs = max((c.max_abs for c in res.checks), default=None) if res.checks else None
        max_rel = max((c.max_rel for c in res.checks), default=None) if res.checks else None
        if res.status == "fail":
            failed += 1
        rows.append([case.op, case.shapes, case.dtypes, res.path, _fmt(max_abs), _fmt(max_rel),
                     res.status.upper() if res.status == "fail" else res.status])
        records.append({"name": case.name, "family": case.family, "op": case.op, "shapes": case.shapes,
                        "dtypes": case.dtypes, "path": res.path, "status": res.status,
                        "message": res.message, "seconds": round(dt, 4),
                        "checks": [c.as_dict() for c in res.checks]})
    print(_table(rows, ["op", "shapes", "dtypes", "arch path", "max abs", "max rel", "result"]))
    problems = [(r["name"], r["message"]) for r in records if r["status"] != "pass" and r["message"]]
    if problems:
        print()
        for name, msg in problems:
            print(f"{name}: {msg}")
    n = len(records)
    skipped = sum(r["status"] == "skip" for r in records)
    print(f"\n{n - failed - skipped} passed, {failed} failed, {skipped} skipped "
          f"in {time.perf_counter() - t0:.1f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu, "capability": [major, minor], "torch": torch.__version__,
                       "blackwheel_version": info.get("blackwheel_version"), "cases": records,
                       "passed": failed == 0}, f, indent=2)
            f.write("\n")
    return 1 if failed else 0
