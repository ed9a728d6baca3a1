#!/usr/bin/env python3
"""The farm's fixed costs on this host: toolchain upload to a new server, and the
round trip each distributed job adds (loopback; a real network adds its latency).

Starts a scheduler and one build server on 127.0.0.1 (blackwheel_factory.farm.cluster)
and a private sccache client (own port, cache dir, config), then compiles tiny .cu
files (one kernel each, distinct, so every compile misses the cache) for --arch:
  first:   the first distributed compile: packages and uploads the toolchain
           (cudafe++, cicc, ptxas, the host g++) to the new server
  dist:    the next N distributed compiles (toolchain already there)
  local:   the same N compiles with plain nvcc, no sccache
and prints upload = first - median(dist), overhead per job = median(dist) - median(local),
checking from sccache's stats that the dist compiles really ran on the server.
Needs root, overlayfs, bubblewrap. Everything it starts is stopped by pid at the end.

    python benchmarks/bench_farm.py [--n 6] [--arch 120a] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from blackwheel_factory.farm import cluster as F  # noqa: E402
from blackwheel_factory.farm import status as FS  # noqa: E402


def nvcc() -> str:
    import nvidia
    for p in nvidia.__path__:
        c = Path(p) / "cu13" / "bin" / "nvcc"
        if c.is_file():
            return str(c)
    sys.exit("no nvcc: pip install cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==13.0.3.0")


def compile_once(cmd: list[str], env: dict) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--arch", default="120a")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-farm-"))
    farm = tmp / "farm"
    F.write_farm(farm, servers=1)
    sccache = F.find_program("sccache")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")}
    env.update(SCCACHE_CONF=str(farm / "client.toml"), SCCACHE_SERVER_PORT=str(F.free_port()),
               SCCACHE_DIR=str(tmp / "cache"), SCCACHE_IDLE_TIMEOUT="0",
               SCCACHE_ERROR_LOG=str(tmp / "client.log"), SCCACHE_LOG="warn")
    nv = nvcc()
    gencode = ["-gencode", f"arch=compute_{args.arch},code=sm_{args.arch}"]

    def src(i: int) -> Path:
        p = tmp / f"k{i}.cu"
        p.write_text(f"__global__ void k{i}(float* y) {{ y[threadIdx.x] *= {i}.f; }}\n")
        return p

    try:
        state = F.start(farm)
        subprocess.run([sccache, "--start-server"], env=env, check=True, capture_output=True)
        status = FS.query_dist_status(sccache, env)
        assert status.usable, status.describe()
        first = compile_once([sccache, nv, *gencode, "-c", str(src(0)), "-o", str(tmp / "k0.o")], env)
        dist = [compile_once([sccache, nv, *gencode, "-c", str(src(i)), "-o", str(tmp / f"k{i}.o")], env)
                for i in range(1, args.n + 1)]
        local = [compile_once([nv, *gencode, "-c", str(src(100 + i)), "-o", str(tmp / f"l{i}.o")], env)
                 for i in range(1, args.n + 1)]
        stats = FS.parse_dist_stats(subprocess.run(
            [sccache, "--show-stats", "--stats-format=json"], env=env, check=True,
            capture_output=True, text=True).stdout)
        assert stats.errors == 0 and stats.local == 0 and stats.distributed == stats.misses, stats
        jobs_per_compile = stats.distributed / (args.n + 1)
        res = {"arch": args.arch, "n": args.n, "first_s": round(first, 2),
               "dist_median_s": round(statistics.median(dist), 2),
               "local_median_s": round(statistics.median(local), 2),
               "upload_s": round(first - statistics.median(dist), 2),
               "overhead_per_compile_s": round(statistics.median(dist) - statistics.median(local), 2),
               "remote_jobs_per_compile": jobs_per_compile,
               "server": state["servers"][0], "stats": stats.as_dict()}
        print(json.dumps(res, indent=1))
        if args.json:
            args.json.write_text(json.dumps(res, indent=1) + "\n")
    finally:
        subprocess.run([sccache, "--stop-server"], env=env, capture_output=True)
        F.stop(farm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
