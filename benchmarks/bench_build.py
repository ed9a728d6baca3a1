#!/usr/bin/env python3
"""Time a build three ways: cold, warm cache, no-op rebuild (not a test).

    python benchmarks/bench_build.py [--build-dir build] [--env K=V ...] [--json out.json] \
        -- pip wheel -v . --no-build-isolation -w dist

  cold       build dir removed, compiler cache emptied (a private SCCACHE_DIR/CCACHE_DIR
             unless --keep-cache-dir), then COMMAND
  warm-cache build dir removed, cache kept (full), then COMMAND
  no-op      COMMAND again with build dir and cache as they are
Reports wall seconds and ratios to cold, and the build report of each run.
The command and its environment are arguments, so the same script times the tiny
test project or the real kernel set (e.g. --env BLACKWHEEL_KERNELS=scaled_mm).
For `pip wheel` runs keep `-Cbuild-dir=...`/the default build/{wheel_tag} and pass the
parent (build/) as --build-dir; with build isolation on, sccache must be on PATH or in
the build env (see cmake/CompilerCache.cmake).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def stop_sccache(env: dict[str, str]) -> None:
    prog = shutil.which("sccache", path=env.get("PATH"))
    if prog:  # the server keeps the config it started with: restart it per phase
        subprocess.run([prog, "--stop-server"], env=env, capture_output=True)


def run_phase(name: str, cmd: list[str], env: dict[str, str], build_dir: Path, cwd: Path,
              log: Path) -> dict:
    stop_sccache(env)
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"{name}: `{' '.join(cmd)}` failed with exit code {rc}; see {log}")
    report = None
    target = build_dir
    if not (build_dir / ".ninja_log").is_file():   # pip: build/<wheel_tag>/.ninja_log
        logs = sorted(build_dir.glob("*/.ninja_log"), key=lambda q: q.stat().st_mtime)
        target = logs[-1].parent if logs else None
    if target is not None:
        rep = subprocess.run([sys.executable, "-m", "blackwheel_factory", "build-report", str(target),
                              "--json"], env=env, cwd=cwd, capture_output=True, text=True)
        if rep.returncode == 0:
            report = json.loads(rep.stdout)
    stop_sccache(env)
    return {"phase": name, "wall_s": round(wall, 2), "log": str(log), "report": report}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build-dir", type=Path, default=Path("build"),
                   help="removed before the cold and warm runs (default: build)")
    p.add_argument("--cwd", type=Path, default=Path.cwd(), help="where COMMAND runs")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for COMMAND (repeatable)")
    p.add_argument("--keep-cache-dir", action="store_true",
                   help="use the caller's SCCACHE_DIR/CCACHE_DIR (cold is then not cold)")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("give the build command after --, e.g. -- pip wheel -v . -w dist")
    env = {**os.environ, **parse_env(args.env)}
    work = Path(tempfile.mkdtemp(prefix="bench_build."))
    if not args.keep_cache_dir:
        env["SCCACHE_DIR"] = str(work / "sccache")
        env["CCACHE_DIR"] = str(work / "ccache")
    build_dir = args.build_dir if args.build_dir.is_absolute() else args.cwd / args.build_dir

    results = []
    for name in ("cold", "warm-cache", "no-op"):
        if name != "no-op":
            shutil.rmtree(build_dir, ignore_errors=True)
        results.append(run_phase(name, cmd, env, build_dir, args.cwd, work / f"{name}.log"))
        print(f"{name:11} {results[-1]['wall_s']:8.1f} s", flush=True)
    cold = results[0]["wall_s"] or 1e-9
    for r in results:
        r["ratio_to_cold"] = round(r["wall_s"] / cold, 3)
        cache = (r["report"] or {}).get("cache") or {}
        hits = f", cache hit rate {cache['hit_rate']:.0%}" if cache.get("hit_rate") is not None else ""
        print(f"  {r['phase']:11} {r['wall_s']:8.1f} s  x{r['ratio_to_cold']:.3f} of cold{hits}")
    out = {"command": cmd, "env": parse_env(args.env), "cache_dir": str(work), "results": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(f"logs and cache: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
