"""How many compile jobs a build may run at once: cores, memory, MAX_JOBS, NVCC_THREADS.

Pure core: ``decide_jobs(env, cores, mem_available_bytes, families) -> JobPlan``.
Effects (reading /proc/meminfo, cgroup files, the CPU affinity) are in
``host_facts()`` and only feed the pure function.

Policy: a job may use up to ``PEAK_RSS[family] * nvcc_threads`` bytes (nvcc
--threads T runs up to T device compilations of one TU at once); the default job
count is the largest number that fits both the cores (jobs x nvcc_threads <= cores)
and the memory left after ``HEADROOM_BYTES``, so a default build never OOMs the host.
MAX_JOBS is a hard override (honoured even above the memory bound; the reason says so).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping

GiB = 1 << 30
MiB = 1 << 20

# Peak resident memory of ONE nvcc job (one TU, one device compilation at a time),
# per kernel family: the family's worst TU, measured, plus a margin.
#   measured 2026-11-26 (nvcc 13.0.88, sm_120a, -O3; benchmarks/bench_nvcc_memory.py:
#   the largest process nvcc runs, from the kernel's rusage):
#     scaled_mm   scaled_mm_sm120_fp8.cu              9,148 MiB  (70.7 s on one core)
#     nvfp4       nvfp4_scaled_mm_sm120_kernels.cu    7,187 MiB  (49.3 s)
#     flash_attn  flash_fwd_hdim128_bf16_causal_sm80  3,889 MiB  (26.1 s); hdim64 3,042 MiB
#     marlin_fp4  marlin.cu                             511 MiB  (generated FP4 TUs 380-403 MiB)
#     tiny        tests/builds/cuda_tiny axpy.cu         184 MiB
#   Not measured: the sm_90a/8.9 TUs and FA2 head dims 192/256 (flash_attn keeps a
#   larger margin for them). Re-measure after a pin or flag change.
PEAK_RSS: dict[str, int] = {
    "scaled_mm": 10 * GiB,    # CUTLASS 3.x/4.x SM120 collective GEMMs
    "nvfp4": 8 * GiB,         # CUTLASS SM120 block-scaled FP4 GEMM
    "marlin_fp4": 1 * GiB,    # generated Marlin instantiations
    "flash_attn": 6 * GiB,    # FA2 fwd, one head dim per TU, CUTLASS/cute
    "flash_attn_2": 7 * GiB,  # complete FA2 (every feature compiled in); measured per job on
                              # 9.0a: bwd <= 6.6 GiB (hdim256), fwd <= 4.5, split-KV <= 3.8
                              # (docs/results/h200-2026-12-02-complete/flash-attn/jobs-summary.txt)
    "tiny": 256 * MiB,        # tests/builds/cuda_tiny
    "vllm": 10 * GiB,         # vLLM's own build (products/vllm.toml): its largest TU is the
                              # same scaled_mm_sm120_fp8.cu as the scaled_mm set (9,148 MiB)
}
# A family not in the table gets this (conservative) bound.
DEFAULT_PEAK_RSS = 6 * GiB
# Memory left for the OS, the linker, ninja, pip and everything else on the host.
HEADROOM_BYTES = 1 * GiB


class JobsError(ValueError):
    """A job setting is invalid; the message names the variable and the fix."""


@dataclass(frozen=True)
class JobPlan:
    jobs: int                 # ninja compile pool size (blackwheel_job_pools(<jobs>))
    nvcc_threads: int         # nvcc --threads per job (1 = no --threads flag)
    reason: str               # one line for the log: what bound it and why
    limited_by: str           # "MAX_JOBS" | "cores" | "memory"
    cores: int
    mem_available_bytes: int
    per_job_bytes: int        # memory bound of one job (peak RSS x nvcc_threads)
    memory_jobs: int          # how many jobs the memory allows (0 = not even one)

    def as_dict(self) -> dict:
        return asdict(self)


def _positive_int(env: Mapping[str, str], name: str, example: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise JobsError(f"{name}={raw!r} is not a positive integer; set e.g. {name}={example} "
                        f"or unset it to let blackwheel choose from cores and memory")
    return value


def per_job_peak(families: Iterable[str]) -> int:
    """Peak RSS bound of one nvcc job for a build of these families (their worst TU)."""
    peaks = [PEAK_RSS.get(f, DEFAULT_PEAK_RSS) for f in families]
    return max(peaks) if peaks else DEFAULT_PEAK_RSS


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def decide_jobs(env: Mapping[str, str], cores: int, mem_available_bytes: int,
                families: Iterable[str]) -> JobPlan:
    """The compile job count and nvcc --threads for a build of ``families``."""
    if cores < 1:
        raise JobsError(f"cores={cores}: the host reported no usable CPU")
    families = list(families)
    max_jobs = _positive_int(env, "MAX_JOBS", "4")
    threads_set = _positive_int(env, "NVCC_THREADS", "2")
    threads = threads_set or 1
    per_job = per_job_peak(families) * threads
    usable = max(0, mem_available_bytes - HEADROOM_BYTES)
    memory_jobs = usable // per_job
    core_jobs = max(1, cores // threads)
    fams = ",".join(families) or "unknown families"
    mem_txt = (f"{_gib(mem_available_bytes)} available - {_gib(HEADROOM_BYTES)} headroom, "
               f"{_gib(per_job)} per job ({fams}"
               + (f", x{threads} nvcc threads" if threads > 1 else "") + ")")

    if max_jobs is not None:
        notes = []
        if max_jobs > memory_jobs:
            notes.append(f"above the memory bound of {memory_jobs} ({mem_txt}): may run out of memory")
        if max_jobs * threads > cores:
            notes.append(f"{max_jobs} jobs x {threads} nvcc threads > {cores} cores: oversubscribed")
        reason = f"MAX_JOBS={max_jobs} (hard override)" + ("; " + "; ".join(notes) if notes else "")
        return JobPlan(max_jobs, threads, reason, "MAX_JOBS", cores, mem_available_bytes,
                       per_job, memory_jobs)

    thread_txt = f" / {threads} nvcc threads" if threads > 1 else ""
    if memory_jobs < core_jobs:
        jobs = max(1, memory_jobs)
        limited_by = "memory"
        reason = f"{jobs} jobs: memory-bound ({mem_txt}); cores allow {core_jobs}"
        if memory_jobs == 0:
            reason += ("; memory is below one job's bound, running 1 job anyway: free memory, "
                       "or build fewer kernel sets (BLACKWHEEL_KERNELS)")
            if threads > 1:
                reason += ", or lower NVCC_THREADS"
    else:
        jobs = core_jobs
        limited_by = "cores"
        reason = (f"{jobs} jobs: core-bound ({cores} cores{thread_txt}); "
                  f"memory allows {memory_jobs} ({mem_txt})")
    return JobPlan(jobs, threads, reason, limited_by, cores, mem_available_bytes, per_job,
                   memory_jobs)


# ---------------------------------------------------------------------------
# Host facts (pure parsers + thin readers)
# ---------------------------------------------------------------------------

def parse_meminfo(text: str) -> int:
    """MemAvailable from /proc/meminfo, in bytes."""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                unit = parts[2].lower() if len(parts) > 2 else "kb"
                if unit != "kb":
                    raise JobsError(f"/proc/meminfo: unexpected unit {parts[2]!r} for MemAvailable")
                return int(parts[1]) * 1024
    raise JobsError("/proc/meminfo has no MemAvailable line (Linux >= 3.14 needed); "
                    "set MAX_JOBS=N to choose the job count yourself")


# cgroup v1 reports "no limit" as a huge page-aligned number (2^63 - 4096 on x86_64).
_CGROUP_V1_UNLIMITED = 1 << 62


def parse_cgroup_limit(text: str) -> int | None:
    """A cgroup memory limit file (v2 memory.max or v1 memory.limit_in_bytes):
    bytes, or None when there is no limit."""
    value = text.strip()
    if value == "max" or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise JobsError(f"cgroup memory limit {value!r} is neither 'max' nor a number of bytes; "
                        f"set MAX_JOBS=N to choose the job count yourself") from None
    if n < 0 or n >= _CGROUP_V1_UNLIMITED:
        return None
    return n


def parse_cgroup_usage(text: str) -> int:
    return int(text.strip())


def cgroup_available(limit: int | None, usage: int | None) -> int | None:
    """Bytes the cgroup still allows, or None without a limit."""
    if limit is None:
        return None
    return max(0, limit - (usage or 0))


def available_memory(meminfo_available: int, cgroup_left: Iterable[int | None]) -> int:
    """The smallest of MemAvailable and what each cgroup level still allows."""
    values = [meminfo_available] + [c for c in cgroup_left if c is not None]
    return min(values)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _own_cgroup_dirs(root: Path, proc_cgroup: str) -> list[tuple[str, Path]]:
    """(version, dir) of this process's memory cgroup and its ancestors, v2 and v1."""
    out: list[tuple[str, Path]] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.strip().lstrip("/")
        if controllers == "":
            base, ver = root, "v2"
        elif "memory" in controllers.split(","):
            base, ver = root / "memory", "v1"
        else:
            continue
        d = base / rel if rel else base
        while True:
            out.append((ver, d))
            if d == base:
                break
            d = d.parent
    return out


def host_cgroup_left(root: Path = Path("/sys/fs/cgroup")) -> list[int | None]:
    proc = _read(Path("/proc/self/cgroup")) or ""
    left: list[int | None] = []
    for ver, d in _own_cgroup_dirs(root, proc):
        lim_file, use_file = (("memory.max", "memory.current") if ver == "v2"
                              else ("memory.limit_in_bytes", "memory.usage_in_bytes"))
        lim = _read(d / lim_file)
        if lim is None:
            continue
        use = _read(d / use_file)
        left.append(cgroup_available(parse_cgroup_limit(lim),
                                     parse_cgroup_usage(use) if use else None))
    return left


def host_cores() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    quota = _read(Path("/sys/fs/cgroup/cpu.max"))  # cgroup v2 CPU quota: "max 100000" / "200000 100000"
    if quota:
        q, _, period = quota.strip().partition(" ")
        if q != "max" and q.isdigit() and period.isdigit() and int(period) > 0:
            n = min(n, max(1, int(q) // int(period)))
    return max(1, n)


def host_facts() -> tuple[int, int]:
    """(cores, available memory in bytes) of this host/container."""
    text = _read(Path("/proc/meminfo"))
    if text is None:
        raise JobsError("cannot read /proc/meminfo (not Linux?); set MAX_JOBS=N")
    return host_cores(), available_memory(parse_meminfo(text), host_cgroup_left())


def decide_for_host(env: Mapping[str, str] | None = None,
                    families: Iterable[str] = ()) -> JobPlan:
    """decide_jobs() with this host's facts (for `plan` and the CLI)."""
    env = os.environ if env is None else env
    if _positive_int(env, "MAX_JOBS", "4") is not None:
        try:
            cores, mem = host_facts()
        except JobsError:
            cores, mem = host_cores(), 0
    else:
        cores, mem = host_facts()
    return decide_jobs(env, cores, mem, families)


def cmake_lines(plan: JobPlan) -> str:
    """plan.cmake fragment: the values CMake passes to blackwheel_job_pools()."""
    reason = plan.reason.replace("\\", "/").replace('"', "'")
    return (f"set(BLACKWHEEL_JOBS {plan.jobs})\n"
            f"set(BLACKWHEEL_NVCC_THREADS {plan.nvcc_threads})\n"
            f'set(BLACKWHEEL_JOBS_REASON "{reason}")\n')


# `python -m blackwheel_factory jobs [--json] [--kernels a,b]` (register in cli.COMMANDS as
# "jobs": ("blackwheel_factory.plan.jobs", "memory-aware compile job count")).
def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the JobPlan as JSON")
    parser.add_argument("--kernels", default="",
                        help="kernel families (comma-separated); default: BLACKWHEEL_KERNELS "
                             "or every family of products/kernel-pack.toml")


def run(args) -> int:
    import json
    import sys

    names = [k for k in (args.kernels or os.environ.get("BLACKWHEEL_KERNELS", "")).replace(";", ",").split(",") if k.strip()]
    if not names or names == ["all"]:
        try:
            from blackwheel_factory.inputs.products import KERNEL_PACK, load_product
            names = list(load_product(KERNEL_PACK)[1].default_kernels)
        except Exception:  # no checkout: the conservative default bound applies
            names = []
    try:
        plan = decide_for_host(families=[n.strip() for n in names])
    except JobsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.as_dict(), indent=2))
    else:
        print(f"jobs={plan.jobs} nvcc_threads={plan.nvcc_threads}: {plan.reason}")
    return 0
