"""Torch drift reproduced for real: a tiny classic-ABI extension built against the
locked torch 2.14.1+cu130, then met by torch 2.13.0+cpu in a clean venv.

Without the guard, loading it fails with a bare "undefined symbol"; with it,
`import blackwheel` refuses with an ImportError that names both torches and the
pip fix; abi-check against the other torch's lib/ lists the missing symbols; and
`lock --check` (also `--for-build`) reports each difference.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_abi import *  # noqa: E402,F401,F403  (fixtures)
from fixtures_abi import (FACTORY_MODULES, PYTHON_DIR, REPO, assert_drift_refusal,  # noqa: E402
                          run_cli, write_build_info)

pytestmark = pytest.mark.build


@pytest.fixture(scope="module")
def locked() -> dict:
    from blackwheel_factory.inputs.config import load_lock
    return load_lock(REPO / "torch-lock.toml").as_dict()


@pytest.fixture(scope="module")
def other_torch_dir(other_torch_venv) -> Path:
    res = run_cli(other_torch_venv, ["-c", "import torch, os; print(os.path.dirname(torch.__file__))"],
                  pythonpath="")
    assert res.returncode == 0, res.stderr
    return Path(res.stdout.strip())


def test_without_guard_the_drift_is_a_bare_undefined_symbol(tiny_sos, other_torch_venv):
    """The failure the guard exists to prevent, observed for real."""
    code = ("import ctypes, torch\n"
            f"ctypes.CDLL({str(tiny_sos['classic'])!r})\n")
    res = run_cli(other_torch_venv, ["-c", code], pythonpath="")
    assert res.returncode != 0
    assert "undefined symbol: _ZN3c105utils9unset_envEPKc" in res.stderr


def _installed_layout(tmp_path, package: str = "blackwheel"):
    """site/ as the product's wheel installs it, without a build record: the package with
    its own copy of the runtime (<package>/_runtime, the checkout's symlink followed) and
    no build factory beside it."""
    site = tmp_path / "site"
    pkg = site / package
    shutil.copytree(PYTHON_DIR / package, pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "_build_info.json"))
    assert not (pkg / "_runtime").is_symlink() and (pkg / "_runtime" / "guard.py").is_file()
    return site, pkg


def test_import_blackwheel_refuses_drifted_torch(tmp_path, tiny_sos, other_torch_venv, locked):
    site, pkg = _installed_layout(tmp_path)
    shutil.copy(tiny_sos["classic"], pkg / "_tiny.abi3.so")
    write_build_info(pkg, "classic", locked)
    res = run_cli(other_torch_venv, ["-c", "import blackwheel"], pythonpath=site, cwd=tmp_path)
    assert res.returncode == 1
    err = res.stderr
    assert "TorchMismatchError" in err and "undefined symbol" not in err
    assert "2.13.0+cpu" in err                      # installed
    assert locked["version"] in err                 # required
    assert "pip install torch==2.14.1 --index-url https://download.pytorch.org/whl/cu130" in err
    # each difference is named
    for field in ("version:", "git_version:", "cuda:"):
        assert field in err


def test_stable_build_refuses_cpu_torch_but_not_by_version(tmp_path, other_torch_venv, locked):
    """A stable-ABI cu13 build accepts 2.13 >= 2.11 by version, but not a CPU-only torch."""
    site, pkg = _installed_layout(tmp_path)
    write_build_info(pkg, "stable", locked)
    res = run_cli(other_torch_venv, ["-c", "import blackwheel"], pythonpath=site, cwd=tmp_path)
    assert res.returncode == 1
    assert "cuda: required CUDA 13.x, found CPU-only (no CUDA)" in res.stderr
    assert "version:" not in res.stderr


@pytest.mark.parametrize("package,what", [("blackwheel", "blackwheel 0.1.0"),
                                          ("flash_attn_2_cuda", "flash-attn 2.8.3.post2+cu130.sm120a")])
def test_every_product_refuses_the_drift_with_the_same_error(tmp_path, other_torch_venv, locked,
                                                            package, what):
    """One guard for every product: the same record schema, the same refusal."""
    site, pkg = _installed_layout(tmp_path, package)
    path = write_build_info(pkg, "stable", locked)
    if package != "blackwheel":
        info = json.loads(path.read_text())
        info["product"] = {"name": "flash-attn", "dist": "flash-attn",
                           "version": "2.8.3.post2+cu130.sm120a"}
        path.write_text(json.dumps(info))
    res = run_cli(other_torch_venv, ["-c", f"import {package}"], pythonpath=site, cwd=tmp_path)
    assert res.returncode == 1
    assert_drift_refusal(res.stderr, what)
    # and its doctor says the same, instead of raising
    res = run_cli(other_torch_venv, ["-m", package, "doctor"], pythonpath=site, cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"[info] {what}: archs 12.0a ({package}/_build_info.json)" in res.stdout
    assert "[fail] torch: torch 2.13.0+cpu" in res.stdout and "found CPU-only" in res.stdout


def test_importing_the_kernel_pack_imports_no_factory_module(tmp_path, locked):
    """With the locked torch, in a layout that has no factory to find."""
    site, pkg = _installed_layout(tmp_path)
    write_build_info(pkg, "stable", locked)
    info = json.loads((pkg / "_build_info.json").read_text())
    info["kernels"] = {}                           # nothing to load in this layout
    (pkg / "_build_info.json").write_text(json.dumps(info))
    res = run_cli(sys.executable, ["-c", "import blackwheel; " + FACTORY_MODULES],
                  pythonpath=site, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_abi_check_lists_symbols_missing_from_other_torch(tiny_sos, other_torch_dir):
    res = run_cli(sys.executable, ["-m", "blackwheel_factory", "abi-check", str(tiny_sos["classic"]),
                                   "--torch-dir", str(other_torch_dir / "lib"), "--json"])
    assert res.returncode == 1, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert not report["ok"]
    assert any("2.13.0+cpu" in line for line in report["context"])
    problems = report["files"][0]["problems"]
    missing = {p["demangled"]: p["expected"] for p in problems if p["problem"] == "unresolved"}
    # exactly the symbol the loader complained about in the test above
    assert missing == {"c10::utils::unset_env(char const*)": "libc10.so"}
    assert ("undefined symbol c10::utils::unset_env(char const*) (expected in libc10.so)"
            in res.stderr)


def test_abi_check_cuda_only_symbols_against_cpu_torch(tiny_sos, other_torch_dir, locked_torch_dir):
    res = run_cli(sys.executable, ["-m", "blackwheel_factory", "abi-check", str(tiny_sos["classic_cuda"]),
                                   "--torch-dir", str(other_torch_dir), "--json"])
    assert res.returncode == 1
    problems = json.loads(res.stdout)["files"][0]["problems"]
    got = {(p["problem"], p["demangled"] or p["name"], p["expected"]) for p in problems}
    assert ("unresolved", "c10::cuda::device_count()", "libc10_cuda.so") in got
    assert ("missing-library", "libc10_cuda.so", "libc10_cuda.so") in got
    ok = run_cli(sys.executable, ["-m", "blackwheel_factory", "abi-check", str(tiny_sos["classic_cuda"]),
                                  "--torch-dir", str(locked_torch_dir)])
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_abi_check_same_so_resolves_against_locked_torch(tiny_sos, locked_torch_dir):
    """Control: the same .so is clean against the torch it was built with."""
    res = run_cli(sys.executable, ["-m", "blackwheel_factory", "abi-check", str(tiny_sos["classic"]),
                                   "--torch-dir", str(locked_torch_dir), "--abi", "classic"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 problem(s)" in res.stdout


def test_lock_check_reports_each_difference(other_torch_venv):
    res = run_cli(other_torch_venv, ["-m", "blackwheel_factory", "lock", "--check"])
    assert res.returncode == 1
    for field in ("version: required 2.14.1+cu130, found 2.13.0+cpu", "git_version:",
                  "cuda: required CUDA 13.0, found CPU-only"):
        assert field in res.stderr, res.stderr


def test_configure_check_names_no_build_isolation_fix(other_torch_venv):
    res = run_cli(other_torch_venv, ["-m", "blackwheel_factory", "lock", "--check", "--for-build"])
    assert res.returncode == 1
    assert ("you built with --no-build-isolation against torch 2.13.0+cpu" in res.stderr)
    assert "pip install torch==2.14.1 --index-url https://download.pytorch.org/whl/cu130" in res.stderr
    assert "python -m blackwheel_factory lock" in res.stderr
