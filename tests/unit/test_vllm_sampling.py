"""tests/upstream/vllm_sampling.py (the stated sample of vLLM's kernel tests on the GPU
host) and summarize.py --per-file, run on a small parametrized test file."""
import os
import subprocess
import sys
from pathlib import Path

UPSTREAM = Path(__file__).resolve().parents[1] / "upstream"

pytest_plugins = ["pytester"]

TEST_FILE = """
import pytest
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("n", range(20))
def test_a(dtype, n):
    pass
@pytest.mark.parametrize("n", range(5))
def test_b(n):
    assert n != 3
"""


def _run(pytester, *args, per_group="3"):
    pytester.makepyfile(test_kern=TEST_FILE)
    env = dict(os.environ, PYTHONPATH=f"{UPSTREAM}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               BW_VLLM_PER_GROUP=per_group, BW_VLLM_SAMPLE_REPORT=str(pytester.path / "sample.txt"))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "vllm_sampling", "-p", "no:cacheprovider",
                           "-v", *args], cwd=pytester.path, env=env, capture_output=True, text=True)


def _ran(result):
    return sorted(line.split(" ")[0] for line in result.stdout.splitlines()
                  if "::test_" in line and ("PASSED" in line or "FAILED" in line))


def test_keeps_n_per_function_and_dtype_the_same_each_run(pytester):
    first = _run(pytester)
    ran = _ran(first)
    # test_a: 2 dtype groups x 3; test_b: one group of 3 (of 5)
    assert len([r for r in ran if "test_a" in r]) == 6
    assert len([r for r in ran if "test_b" in r]) == 3
    assert {r.rstrip("]").split("-")[-1] for r in ran if "test_a" in r} == {"float16", "bfloat16"}
    report = (pytester.path / "sample.txt").read_text()
    assert "test_kern.py" in report and "kept     9 of    45" in report
    second = _run(pytester)
    assert _ran(second) == ran
    assert "deselected" in first.stdout


def test_per_group_zero_keeps_all_and_summary_counts_per_file(pytester):
    r = _run(pytester, "--junitxml=out.xml", per_group="0")
    assert "1 failed, 44 passed" in r.stdout
    s = subprocess.run([sys.executable, str(UPSTREAM / "summarize.py"), str(pytester.path / "out.xml"), "--per-file"],
                       capture_output=True, text=True, check=True).stdout
    row = next(line for line in s.splitlines() if line.startswith("test_kern.py"))
    assert row.split()[1:] == ["44", "1", "0"]


def test_gpu_host_requirements_are_exact_single_pins():
    """ci/vllm-gpu-requirements.txt is what travels as wheels to the GPU host (no network):
    every line one exact pin, each distribution once (two pins of anthropic once let the
    carried wheels differ from the file)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    path = Path(__file__).resolve().parents[2] / "ci" / "vllm-gpu-requirements.txt"
    seen = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"line {n}: {line!r} is not an exact pin"
        name = canonicalize_name(req.name)
        assert name not in seen, f"line {n}: {req.name} pinned again (first on line {seen[name]})"
        assert name != "torch", "the host's torch is the one under test: never carried"
        seen[name] = n
    assert len(seen) > 20
