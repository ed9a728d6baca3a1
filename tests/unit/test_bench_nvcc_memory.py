"""The pure parts of benchmarks/bench_nvcc_memory.py: which compile commands it re-runs
and how it rewrites them (the measurement itself needs nvcc: see the benchmark)."""
import importlib.util
import sys
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_nvcc_memory.py"
_spec = importlib.util.spec_from_file_location("bench_nvcc_memory", _path)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_family_from_cmake_object_path():
    assert bench.family_of("CMakeFiles/bw_scaled_mm.dir/root/x/scaled_mm_sm120_fp8.cu.o") == "scaled_mm"
    assert bench.family_of("CMakeFiles/bw_flash_attn.dir/a.cu.o") == "flash_attn"
    assert bench.family_of("_scaled_mm.abi3.so") is None


def test_launcher_stripped_and_output_redirected():
    argv = ["/v/bin/sccache", "/v/nvcc", "-MD", "-MT", "a.o", "-MF", "a.o.d", "-x", "cu",
            "-c", "src.cu", "-o", "CMakeFiles/x.o"]
    out = bench.redirect_output(bench.strip_launcher(argv), "/tmp/o.o")
    assert out == ["/v/nvcc", "-x", "cu", "-c", "src.cu", "-o", "/tmp/o.o"]
    assert bench.strip_launcher(["ccache", "sccache", "g++", "-c"]) == ["g++", "-c"]


def test_pick_takes_the_slowest_per_family():
    e = lambda fam, name: {"output": f"CMakeFiles/bw_{fam}.dir/{name}.o", "file": f"/s/{name}",
                           "command": "nvcc", "directory": "/b"}
    entries = [e("nvfp4", "a.cu"), e("nvfp4", "b.cu"), e("flash_attn", "c.cu"),
               {"output": "CMakeFiles/other.dir/d.cu.o", "file": "/s/d.cu"}]
    durations = {"CMakeFiles/bw_nvfp4.dir/b.cu.o": 50.0, "CMakeFiles/bw_nvfp4.dir/a.cu.o": 10.0}
    got = [(c["family"], Path(c["file"]).name) for c in bench.pick(entries, durations, 1)]
    assert got == [("flash_attn", "c.cu"), ("nvfp4", "b.cu")]
    assert len(bench.pick(entries, durations, 2)) == 3


def test_missing_build_dir_names_the_fix(tmp_path):
    with pytest.raises(SystemExit, match="no build.ninja; configure a build there first"):
        bench.main(["--build-dir", str(tmp_path)])
