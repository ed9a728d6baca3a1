"""blackwheel_factory.plan.jobs: memory-aware job count (pure) and host fact parsers."""
import pytest

from blackwheel_factory.plan import jobs as J
from blackwheel_factory.plan.jobs import GiB, JobsError, decide_jobs

FA = ["flash_attn"]          # 6 GiB per job
SMM = ["scaled_mm"]          # 5 GiB per job


def test_memory_bound_limits_jobs_below_cores():
    # 16 cores but 13 GiB: (13 - 1 headroom) // 6 = 2 jobs.
    p = decide_jobs({}, 16, 13 * GiB, FA)
    assert (p.jobs, p.nvcc_threads, p.limited_by) == (2, 1, "memory")
    assert p.memory_jobs == 2 and p.per_job_bytes == 6 * GiB
    assert "memory-bound" in p.reason and "cores allow 16" in p.reason


def test_core_bound_when_memory_is_plenty():
    p = decide_jobs({}, 8, 256 * GiB, SMM)
    assert (p.jobs, p.limited_by) == (8, "cores")
    assert "core-bound" in p.reason


def test_worst_family_sets_the_per_job_bound():
    p = decide_jobs({}, 64, 25 * GiB, ["marlin_fp4", "flash_attn"])
    assert p.per_job_bytes == 6 * GiB and p.jobs == 4


def test_unknown_family_gets_conservative_default():
    assert J.per_job_peak(["something_new"]) == J.DEFAULT_PEAK_RSS
    assert J.per_job_peak([]) == J.DEFAULT_PEAK_RSS


def test_less_memory_than_one_job_still_runs_one_and_says_how_to_fix():
    p = decide_jobs({}, 8, 2 * GiB, FA)
    assert p.jobs == 1 and p.memory_jobs == 0 and p.limited_by == "memory"
    assert "BLACKWHEEL_KERNELS" in p.reason


def test_max_jobs_is_a_hard_override_and_warns_above_memory():
    p = decide_jobs({"MAX_JOBS": "12"}, 4, 13 * GiB, FA)
    assert (p.jobs, p.limited_by) == (12, "MAX_JOBS")
    assert "above the memory bound of 2" in p.reason
    assert "oversubscribed" in p.reason


def test_max_jobs_within_bounds_has_no_warning():
    p = decide_jobs({"MAX_JOBS": " 2 "}, 8, 64 * GiB, FA)
    assert p.jobs == 2 and p.reason == "MAX_JOBS=2 (hard override)"


def test_nvcc_threads_divides_cores_and_multiplies_memory():
    # 16 cores / 4 threads = 4 jobs by cores; 6 GiB x 4 = 24 GiB per job: 49 GiB -> 2.
    p = decide_jobs({"NVCC_THREADS": "4"}, 16, 49 * GiB, FA)
    assert (p.jobs, p.nvcc_threads, p.per_job_bytes) == (2, 4, 24 * GiB)
    assert p.limited_by == "memory"
    p = decide_jobs({"NVCC_THREADS": "4"}, 16, 1000 * GiB, FA)
    assert (p.jobs, p.limited_by) == (4, "cores")
    assert p.jobs * p.nvcc_threads <= 16


def test_nvcc_threads_with_max_jobs_reports_oversubscription():
    p = decide_jobs({"MAX_JOBS": "4", "NVCC_THREADS": "2"}, 4, 1000 * GiB, SMM)
    assert (p.jobs, p.nvcc_threads) == (4, 2)
    assert "4 jobs x 2 nvcc threads > 4 cores" in p.reason


@pytest.mark.parametrize("var,value", [("MAX_JOBS", "0"), ("MAX_JOBS", "four"), ("MAX_JOBS", "-2"),
                                       ("NVCC_THREADS", "0"), ("NVCC_THREADS", "2.5")])
def test_bad_values_name_the_variable_and_the_fix(var, value):
    with pytest.raises(JobsError) as e:
        decide_jobs({var: value}, 8, 64 * GiB, FA)
    msg = str(e.value)
    assert f"{var}={value!r}" in msg and "positive integer" in msg and "unset it" in msg


def test_empty_values_mean_unset():
    assert decide_jobs({"MAX_JOBS": "", "NVCC_THREADS": " "}, 8, 1000 * GiB, FA).limited_by == "cores"


def test_parse_meminfo():
    text = "MemTotal:       24684084 kB\nMemFree:  100 kB\nMemAvailable:   24193128 kB\n"
    assert J.parse_meminfo(text) == 24193128 * 1024
    with pytest.raises(JobsError, match="MAX_JOBS"):
        J.parse_meminfo("MemTotal: 1 kB\n")


def test_parse_cgroup_limits_v1_and_v2():
    assert J.parse_cgroup_limit("max\n") is None                      # v2, no limit
    assert J.parse_cgroup_limit("8589934592\n") == 8 * GiB            # v2 / v1 limit
    assert J.parse_cgroup_limit("9223372036854771712\n") is None      # v1 "unlimited"
    with pytest.raises(JobsError, match="MAX_JOBS"):
        J.parse_cgroup_limit("lots")


def test_cgroup_limit_caps_available_memory():
    left = J.cgroup_available(J.parse_cgroup_limit("8589934592"), 2 * GiB)
    assert left == 6 * GiB
    assert J.available_memory(100 * GiB, [None, left]) == 6 * GiB
    assert J.available_memory(4 * GiB, [None, left]) == 4 * GiB
    assert J.cgroup_available(None, 5) is None
    # and it drives the decision: 6 GiB left - 1 headroom = one 5 GiB scaled_mm job
    assert decide_jobs({}, 32, J.available_memory(100 * GiB, [left]), SMM).jobs == 1


def test_host_cgroup_left_reads_v2_files(tmp_path, monkeypatch):
    cg = tmp_path / "cg"
    (cg / "build.slice").mkdir(parents=True)
    (cg / "build.slice" / "memory.max").write_text(f"{10 * GiB}\n")
    (cg / "build.slice" / "memory.current").write_text(f"{3 * GiB}\n")
    real_read = J._read
    monkeypatch.setattr(J, "_read", lambda p: "0::/build.slice\n" if str(p) == "/proc/self/cgroup"
                        else real_read(p))
    assert J.host_cgroup_left(cg) == [7 * GiB]


def test_cmake_lines():
    p = decide_jobs({"MAX_JOBS": "3"}, 8, 64 * GiB, FA)
    text = J.cmake_lines(p)
    assert "set(BLACKWHEEL_JOBS 3)\n" in text and "set(BLACKWHEEL_NVCC_THREADS 1)\n" in text
