"""Plan a farm on paper: the wall time of a measured build on N servers x C cores (pure).

Input: a job log of a real build, one JSON line per compile job as written by
benchmarks/nvcc_peak_launcher.py ({"source", "wall_s", "cpu_s", "rc", ...}).

Model (a small discrete-event simulation, the jobs in the log's order, as ninja
starts them from its pool):
  - ninja's compile pool admits ``pool`` jobs at once (the farm's cores: what
    configure picks for a farm);
  - each job first runs its client part on one of ``client_cores`` (preprocessing,
    the sccache hash, fatbinary: ``local_fraction`` of its measured time), then its
    remote part on the earliest free farm core, plus ``overhead_s`` per job
    (upload of the preprocessed input, download of the outputs, scheduling);
  - the first job on each server waits for the toolchain upload (``upload_s``, once
    per server, all servers at once);
  - the client steps outside the compiles (configure, link, ABI check, packaging:
    ``client_s``) add to the wall time; the link waits for the last compile.
A local build is the same model with one server, no overhead, no upload and
local_fraction 0. The critical path is the longest job plus the client steps: no
farm is faster than that.
"""
from __future__ import annotations

import heapq
import json
from dataclasses import dataclass


class PlanError(ValueError):
    """A job log that cannot be planned; the message names the fix."""


@dataclass(frozen=True)
class Job:
    source: str
    seconds: float


def parse_job_log(text: str, skip_probes: bool = True) -> list[Job]:
    """nvcc_peak_launcher JSONL -> jobs in log order (CMake's compiler-probe jobs dropped)."""
    jobs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            src, wall = str(rec["source"]), float(rec["wall_s"])
        except (ValueError, KeyError, TypeError) as e:
            raise PlanError(f"job log line {n}: not an nvcc_peak_launcher record ({e}): "
                            f"{line[:120]!r}") from None
        if skip_probes and "CMakeCUDACompilerABI" in src:
            continue
        if rec.get("rc", 0) != 0:
            raise PlanError(f"job log line {n}: {src} failed (rc {rec['rc']}): plan from a "
                            f"build whose jobs all succeeded")
        jobs.append(Job(src, wall))
    if not jobs:
        raise PlanError("the job log holds no compile job: record one with "
                        "CMAKE_CUDA_COMPILER_LAUNCHER=benchmarks/nvcc_peak_launcher.py "
                        "BLACKWHEEL_JOB_LOG=jobs.jsonl")
    return jobs


@dataclass(frozen=True)
class FarmModel:
    servers: int
    cores: int                      # per server
    overhead_s: float = 0.0         # per distributed job
    local_fraction: float = 0.0     # share of a job's time spent on the client
    client_cores: int = 2
    upload_s: float = 0.0           # toolchain upload to a new server
    client_s: float = 0.0           # configure + link + ABI check + packaging
    speed: float = 1.0              # farm core speed relative to the logged machine

    def __post_init__(self):
        if self.servers < 1 or self.cores < 1 or self.client_cores < 1:
            raise PlanError("servers, cores and client cores must be >= 1")
        if not 0.0 <= self.local_fraction < 1.0:
            raise PlanError("local_fraction must be in [0, 1)")
        if self.speed <= 0:
            raise PlanError("speed must be > 0")


@dataclass(frozen=True)
class Prediction:
    servers: int
    cores: int
    wall_s: float
    compile_s: float               # first compile start to last compile end
    critical_path_s: float
    busy_s: float                  # sum of job times (as run on the farm)

    @property
    def efficiency(self) -> float:
        return self.busy_s / (self.compile_s * self.servers * self.cores) if self.compile_s else 0.0


def local_model(cores: int, client_s: float = 0.0) -> FarmModel:
    """A build on this one machine (what the job log's host did)."""
    return FarmModel(servers=1, cores=cores, client_cores=cores, client_s=client_s)


def predict(jobs: list[Job], m: FarmModel, pool: int | None = None) -> Prediction:
    slots = m.servers * m.cores
    pool = pool or slots
    tokens = [0.0] * pool                              # ninja pool: when a token frees
    client = [0.0] * m.client_cores
    # each farm core, tagged with its server; a server's first job pays the upload
    farm = [(0.0, s) for s in range(m.servers) for _ in range(m.cores)]
    heapq.heapify(farm)
    uploaded: set[int] = set()
    end_all = 0.0
    busy = 0.0
    for job in jobs:
        t = heapq.heappop(tokens)
        remote = job.seconds * (1.0 - m.local_fraction) / m.speed
        local = job.seconds * m.local_fraction
        c = heapq.heappop(client)
        local_end = max(t, c) + local
        heapq.heappush(client, local_end)
        free, server = heapq.heappop(farm)
        start = max(local_end, free)
        if m.upload_s and server not in uploaded:
            uploaded.add(server)
            start = max(start, m.upload_s)
        end = start + remote + m.overhead_s
        heapq.heappush(farm, (end, server))
        heapq.heappush(tokens, end)
        end_all = max(end_all, end)
        busy += local + remote + m.overhead_s
    longest = max(j.seconds for j in jobs)
    critical = (max(m.upload_s, longest * m.local_fraction)
                + longest * (1 - m.local_fraction) / m.speed + m.overhead_s + m.client_s)
    return Prediction(m.servers, m.cores, end_all + m.client_s, end_all, critical, busy)


def curve(jobs: list[Job], cores: int, servers: range, **model) -> list[Prediction]:
    return [predict(jobs, FarmModel(servers=n, cores=cores, **model)) for n in servers]


def format_curve(preds: list[Prediction], title: str) -> str:
    out = [title, f"{'servers':>7} {'cores':>6} {'wall s':>8} {'wall min':>8} {'speedup':>7} "
                  f"{'farm use':>8}"]
    base = preds[0].wall_s if preds else 0.0
    for p in preds:
        out.append(f"{p.servers:>7} {p.servers * p.cores:>6} {p.wall_s:>8.0f} "
                   f"{p.wall_s / 60:>8.1f} {base / p.wall_s:>6.1f}x {p.efficiency * 100:>7.0f}%")
    if preds:
        out.append(f"critical path (longest job + client steps): {preds[-1].critical_path_s:.0f} s")
    return "\n".join(out)
