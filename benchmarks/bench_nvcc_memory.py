#!/usr/bin/env python3
"""Peak memory of one nvcc job per kernel family (not a test): the data behind
blackwheel_factory.plan.jobs.PEAK_RSS, which decides how many compile jobs fit in memory.

    python benchmarks/bench_nvcc_memory.py --build-dir BUILD [--per-family 1] [--family F] [--json out.json]

BUILD is a configured (ideally already built) blackwheel build directory, e.g. the
`-C build-dir=...` of a `pip wheel --no-build-isolation` run. The compile commands
come from `ninja -t compdb`; the slowest translation units of each family (from
.ninja_log, else the first ones) are compiled again one at a time, without the
compiler-cache launcher, into a scratch object file, and the peak resident set
size of the largest process nvcc ran (cicc, ptxas, cudafe++, the host compiler)
is read from the kernel's rusage accounting (os.wait4). The build dir is untouched.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from blackwheel_factory.plan.jobs import PEAK_RSS  # noqa: E402
from blackwheel_factory.compile.report import parse_ninja_log  # noqa: E402

LAUNCHERS = {"sccache", "ccache"}
FAMILY_RE = re.compile(r"CMakeFiles/bw_([A-Za-z0-9_]+)\.dir/")


def family_of(output: str) -> str | None:
    m = FAMILY_RE.search(output)
    return m.group(1) if m else None


def strip_launcher(argv: list[str]) -> list[str]:
    while argv and Path(argv[0]).name in LAUNCHERS:
        argv = argv[1:]
    return argv


def redirect_output(argv: list[str], obj: str) -> list[str]:
    """The same command writing its object (and no depfile) elsewhere."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "-o":
            out += ["-o", obj]
            skip = True
        elif a in ("-MF", "-MT", "-MQ"):          # depfile flags with a separate argument
            skip = True
        elif a in ("-MD", "-MMD") or a.startswith(("-MF", "-MT", "-MQ")):
            pass
        else:
            out.append(a)
    return out


def pick(entries: list[dict], durations: dict[str, float], per_family: int) -> list[dict]:
    """The `per_family` slowest compile entries of each family (ninja log order if unknown)."""
    by_family: dict[str, list[dict]] = {}
    for e in entries:
        fam = family_of(e.get("output", ""))
        if fam and e.get("file", "").endswith((".cu", ".cpp", ".cc")):
            by_family.setdefault(fam, []).append(e)
    chosen = []
    for fam in sorted(by_family):
        ranked = sorted(by_family[fam], key=lambda e: -durations.get(e["output"], 0.0))
        chosen += [dict(e, family=fam) for e in ranked[:per_family]]
    return chosen


def measure(argv: list[str], cwd: str) -> tuple[int, float, int]:
    """(exit code, wall seconds, peak RSS bytes of the largest process in the job)."""
    t0 = time.monotonic()
    # output to DEVNULL, not a pipe: nobody reads it while waiting, and CUTLASS warnings fill pipes
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - t0, usage.ru_maxrss * 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build-dir", type=Path, required=True)
    p.add_argument("--per-family", type=int, default=1, help="slowest TUs measured per family")
    p.add_argument("--family", action="append", default=[], help="only these families (repeatable)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    build = args.build_dir.resolve()
    if not (build / "build.ninja").is_file():
        raise SystemExit(f"{build}: no build.ninja; configure a build there first "
                         "(pip wheel --no-build-isolation . -C build-dir=DIR)")
    ninja = shutil.which("ninja") or "ninja"
    entries = json.loads(subprocess.run([ninja, "-C", str(build), "-t", "compdb"], check=True,
                                        capture_output=True, text=True).stdout)
    durations = {}
    if (build / ".ninja_log").is_file():
        for step in parse_ninja_log((build / ".ninja_log").read_text()):   # every build in the log:
            for out in step.outputs:                                       # keep each TU's longest
                durations[out] = max(durations.get(out, 0.0), step.duration_ms / 1000)
    chosen = [c for c in pick(entries, durations, args.per_family)
              if not args.family or c["family"] in args.family]
    if not chosen:
        raise SystemExit(f"{build}: no kernel-family compile commands (CMakeFiles/bw_<family>.dir/) found")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_nvcc_mem.") as tmp:
        for e in chosen:
            cmd = redirect_output(strip_launcher(shlex.split(e["command"])), os.path.join(tmp, "out.o"))
            rc, wall, peak = measure(cmd, e["directory"])
            row = {"family": e["family"], "source": Path(e["file"]).name, "rc": rc,
                   "wall_s": round(wall, 1), "peak_rss_mib": round(peak / 2**20),
                   "policy_mib": round(PEAK_RSS.get(e["family"], 0) / 2**20)}
            rows.append(row)
            print(f"{row['family']:<11} {row['source']:<48} {wall:7.1f} s  peak {row['peak_rss_mib']:6d} MiB"
                  f"  policy {row['policy_mib']} MiB (ratio {peak / max(PEAK_RSS.get(e['family'], 1), 1):.2f})"
                  + ("" if rc == 0 else f"  FAILED rc={rc}"), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"build_dir": str(build), "results": rows}, indent=1) + "\n")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
