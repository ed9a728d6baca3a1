#!/usr/bin/env python3
"""Peak memory and wall time of every compile job of a real build (not a test).

As a compiler launcher it runs the compile command it is given, unchanged, and appends
one JSON line per job to $BLACKWHEEL_JOB_LOG: the source, the wall time, and the peak
resident set size of the largest process the job ran (cicc, ptxas, cudafe++, the host
compiler), read from the kernel's rusage accounting of the finished job (os.wait4, which
includes every descendant the job waited for). CMake takes a launcher from the
environment at configure time:

    CMAKE_CUDA_COMPILER_LAUNCHER=$PWD/benchmarks/nvcc_peak_launcher.py \
    BLACKWHEEL_JOB_LOG=/tmp/jobs.jsonl  bash ci/build-flash-attn.sh

Unlike bench_nvcc_memory.py (which recompiles chosen TUs one at a time after a build),
this measures every TU of the build as the build ran it, in parallel with the others.

    python benchmarks/nvcc_peak_launcher.py --summarize /tmp/jobs.jsonl

prints the figures per TU kind (for FlashAttention-2: fwd, fwd_split, bwd, other).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

FA_KIND = re.compile(r"flash_(fwd_split|fwd|bwd)_hdim(\d+)_(fp16|bf16)(_causal)?_sm\d+\.cu")


def source_of(argv: list[str]) -> str:
    for i in range(len(argv) - 2, -1, -1):          # the last "-c SOURCE" (nvcc/gcc have one)
        if argv[i] == "-c":
            return argv[i + 1]
    cands = [a for a in argv if a.endswith((".cu", ".cpp", ".cc", ".c"))]
    return cands[-1] if cands else ""


def kind_of(source: str) -> str:
    m = FA_KIND.search(Path(source).name)
    return m.group(1) if m else "other"


def run(argv: list[str]) -> int:
    log = os.environ.get("BLACKWHEEL_JOB_LOG")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    if log:
        rec = {"source": source_of(argv), "rc": rc, "wall_s": round(wall, 1),
               "peak_rss_mib": round(usage.ru_maxrss / 1024), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}
        with open(log, "a") as f:           # one short write per line: O_APPEND keeps lines whole
            f.write(json.dumps(rec) + "\n")
    return rc


def summarize(path: str) -> str:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(kind_of(r["source"]), []).append(r)
    out = [f"{'kind':<10} {'TUs':>4} {'peak RSS MiB (max)':>19} {'median':>7} "
           f"{'wall s (max)':>13} {'median':>7} {'sum s':>8}  largest"]
    for kind in sorted(by):
        rs = by[kind]
        rss = sorted(r["peak_rss_mib"] for r in rs)
        wall = sorted(r["wall_s"] for r in rs)
        top = max(rs, key=lambda r: r["peak_rss_mib"])
        out.append(f"{kind:<10} {len(rs):>4} {rss[-1]:>19} {rss[len(rss) // 2]:>7} "
                   f"{wall[-1]:>13} {wall[len(wall) // 2]:>7} {sum(wall):>8.0f}  {Path(top['source']).name}")
    failed = [r for r in rows if r["rc"] != 0]
    if failed:
        out.append(f"{len(failed)} job(s) failed: " + ", ".join(Path(r['source']).name for r in failed))
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--summarize":
        print(summarize(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) < 2:
        sys.exit("usage: nvcc_peak_launcher.py COMPILER ARGS...  |  --summarize LOG")
    sys.exit(run(sys.argv[1:]))
