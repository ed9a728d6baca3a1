"""Torch lock: comparison (every drift kind), messages, lock file round trip,
pyproject pin rewrite, and the `lock` command on temporary copies."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from blackwheel_factory.inputs import lock as L
from blackwheel_factory.inputs.config import ConfigError, TorchLock, format_lock, load_lock, parse_lock

REPO = Path(__file__).resolve().parents[2]
LOCK = TorchLock("2.14.1+cu130", "5c4886908584029761b579af026dcfb627c84070", "13.0", True, "2.11")
SAME = L.facts_from_lock(LOCK)


def facts(**kw) -> L.TorchFacts:
    return replace(SAME, **kw)


# --- compare: classic -------------------------------------------------------------
def test_identical_torch_has_no_drift():
    assert L.compare(LOCK, SAME, "classic") == []
    assert L.compare(LOCK, SAME, "stable") == []


@pytest.mark.parametrize("change,field", [
    (dict(version="2.14.1+cu128"), "version"),
    (dict(version="2.14.0+cu130"), "version"),
    (dict(git_version="0" * 40), "git_version"),
    (dict(cuda="12.8"), "cuda"),
    (dict(cuda=None), "cuda"),
    (dict(cxx11_abi=False), "cxx11_abi"),
])
def test_classic_each_drift_kind(change, field):
    drifts = L.compare(LOCK, facts(**change), "classic")
    assert [d.field for d in drifts] == [field]
    assert drifts[0].required != drifts[0].found


def test_classic_lists_every_difference():
    other = L.TorchFacts("2.13.0+cpu", "a" * 40, None, False)
    assert [d.field for d in L.compare(LOCK, other, "classic")] == [
        "version", "git_version", "cuda", "cxx11_abi"]


def test_unknown_cxx11_flag_is_not_a_drift():
    # facts read from torch/version.py cannot know the flag
    assert L.compare(LOCK, facts(cxx11_abi=None), "classic") == []


def test_missing_torch():
    assert L.compare(LOCK, None, "classic") == [L.Drift("torch", "2.14.1+cu130", "not installed")]
    assert L.compare(LOCK, None, "stable")[0].required == ">=2.11"


# --- compare: stable ----------------------------------------------------------------
@pytest.mark.parametrize("version,cuda,ok", [
    ("2.15.0+cu130", "13.0", True),          # newer torch, other git hash: fine
    ("2.11.0+cu130", "13.0", True),          # the target itself
    ("2.14.1+cu131", "13.1", True),          # same CUDA major
    ("2.10.1+cu130", "13.0", False),         # older than the target
    ("2.11.0.dev20260101+cu130", "13.0", False),   # a pre-release of the target is older
    ("2.14.1+cu128", "12.8", False),         # cu12 torch for a cu13 wheel
    ("2.14.1+cpu", None, False),             # CPU-only torch for a cu13 wheel
])
def test_stable_rules(version, cuda, ok):
    got = L.compare(LOCK, facts(version=version, cuda=cuda, git_version="x" * 40,
                                cxx11_abi=False), "stable")
    assert (got == []) is ok, got


def test_stable_cpu_lock_accepts_any_cuda():
    cpu_lock = replace(LOCK, version="2.14.1+cpu", cuda=None)
    assert L.compare(cpu_lock, facts(version="2.14.1+cu130"), "stable") == []


def test_version_fallback_without_packaging(monkeypatch):
    monkeypatch.setitem(sys.modules, "packaging.version", None)   # import fails
    assert L.version_at_least("2.14.1", "2.11")
    assert L.version_at_least("2.11", "2.11.0")
    assert not L.version_at_least("2.9.1", "2.11")


def test_bad_abi_kind():
    with pytest.raises(ValueError, match="classic.*stable"):
        L.compare(LOCK, SAME, "other")


# --- fixes and messages ---------------------------------------------------------------
def test_pip_fix_uses_lock_index():
    assert L.pip_fix(LOCK) == ("pip install torch==2.14.1 --index-url "
                               "https://download.pytorch.org/whl/cu130")
    assert L.pip_fix(LOCK, "stable") == ('pip install "torch>=2.11" --index-url '
                                         "https://download.pytorch.org/whl/cu130")
    assert L.pip_fix(replace(LOCK, version="2.14.1")) == "pip install torch==2.14.1"


def test_build_message_no_isolation_names_both_and_fixes():
    other = L.TorchFacts("2.13.0+cpu", "a" * 40, None, True)
    msg = L.build_message(LOCK, other, L.compare(LOCK, other), isolated=False)
    assert "you built with --no-build-isolation against torch 2.13.0+cpu" in msg
    assert "2.14.1+cu130" in msg
    assert L.pip_fix(LOCK) in msg
    assert "run `python -m blackwheel_factory lock` to re-lock" in msg


def test_build_message_isolated_wrong_index():
    other = facts(version="2.14.1+cpu", cuda=None)
    msg = L.build_message(LOCK, other, L.compare(LOCK, other), isolated=True)
    assert "isolated build environment got torch 2.14.1+cpu" in msg
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu130" in msg


@pytest.mark.parametrize("isolated,fix", [
    (True, "[build-system].requires must list torch==2.14.1"),
    (False, L.pip_fix(LOCK)),
])
def test_build_message_missing_torch(isolated, fix):
    msg = L.build_message(LOCK, None, L.compare(LOCK, None), isolated=isolated)
    assert "torch is not installed" in msg and fix in msg


def test_runtime_message():
    other = L.TorchFacts("2.13.0+cpu", "a" * 40, None, True, "/x/torch")
    msg = L.runtime_message(LOCK, other, L.compare(LOCK, other), "classic")
    assert "2.13.0+cpu" in msg and "2.14.1+cu130" in msg and L.pip_fix(LOCK) in msg
    assert "  - version: required 2.14.1+cu130, found 2.13.0+cpu" in msg
    missing = L.runtime_message(LOCK, None, L.compare(LOCK, None), "classic")
    assert "not installed" in missing and L.pip_fix(LOCK) in missing


@pytest.mark.parametrize("path,env,isolated", [
    ("/tmp/pip-build-env-abc123/overlay/lib/python3.11/site-packages/torch", {}, True),
    ("/tmp/build-env-xyz/lib/python3.11/site-packages/torch", {}, True),
    ("/home/u/.venv/lib/python3.11/site-packages/torch", {}, False),
    (None, {"PYTHONPATH": "/tmp/pip-build-env-1/site"}, True),
    (None, {}, False),
])
def test_build_isolation_detection(path, env, isolated):
    assert L.build_isolated(path, env) is isolated


# --- lock file and pyproject -------------------------------------------------------------
def test_lock_round_trip():
    for lk in (LOCK, replace(LOCK, version="2.15.0.dev20260301+cu130", cuda=None, cxx11_abi=False)):
        assert parse_lock(format_lock(lk)) == lk


def test_repo_lock_and_pin_agree():
    lock = load_lock(REPO / "torch-lock.toml")
    assert L.pyproject_pin((REPO / "pyproject.toml").read_text()) == f"torch=={lock.public_version}"


def test_rewrite_pin_changes_only_the_torch_line():
    text = (REPO / "pyproject.toml").read_text()
    new = L.rewrite_torch_pin(text, "2.15.0.dev20260301")
    assert L.pyproject_pin(new) == "torch==2.15.0.dev20260301"
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert len(changed) == 1 and len(text.splitlines()) == len(new.splitlines())
    assert L.rewrite_torch_pin(new, "2.14.1") == text


def test_rewrite_pin_leaves_project_dependencies_alone():
    text = ('[build-system]\nrequires = [\n  "torch>=2.0",\n  "ninja",\n]\n\n'
            '[project]\ndependencies = ["torch==1.0"]\n')
    new = L.rewrite_torch_pin(text, "2.14.1")
    assert '"torch==2.14.1"' in new and '["torch==1.0"]' in new


@pytest.mark.parametrize("text,match", [
    ('[project]\nname = "x"\n', "no \\[build-system\\]"),
    ('[build-system]\nrequires = ["ninja"]\n', 'add "torch==2.14.1"'),
    ('[build-system]\nrequires = ["torch==1", "torch==2"]\n', "exactly one torch pin"),
])
def test_rewrite_pin_errors_name_the_fix(text, match):
    with pytest.raises(ConfigError, match=match):
        L.rewrite_torch_pin(text, "2.14.1")


def test_rewrite_pin_refuses_local_version():
    with pytest.raises(ValueError, match="public version"):
        L.rewrite_torch_pin((REPO / "pyproject.toml").read_text(), "2.14.1+cu130")


def test_write_lock_is_all_or_nothing(tmp_path):
    lock_path, py = tmp_path / "torch-lock.toml", tmp_path / "pyproject.toml"
    lock_path.write_text(format_lock(LOCK))
    py.write_text('[build-system]\nrequires = ["ninja"]\n')        # no torch pin
    other = L.TorchFacts("2.15.0+cu130", "b" * 40, "13.0", True)
    with pytest.raises(ConfigError):
        L.write_lock(other, lock_path, py, "2.11")
    assert parse_lock(lock_path.read_text()) == LOCK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyproject.toml", "torch-lock.toml"]


def test_atomic_write_keeps_mode_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.toml"
    p.write_text("old")
    os.chmod(p, 0o640)
    L.atomic_write(p, "new")
    assert p.read_text() == "new" and (p.stat().st_mode & 0o777) == 0o640
    assert [x.name for x in tmp_path.iterdir()] == ["f.toml"]


def test_facts_from_torch_dir(tmp_path):
    (tmp_path / "version.py").write_text(
        "from typing import Optional\n__version__ = '2.13.0+cpu'\n"
        "cuda: Optional[str] = None\ngit_version = 'abc'\n")
    f = L.facts_from_torch_dir(tmp_path)
    assert (f.version, f.cuda, f.git_version, f.cxx11_abi) == ("2.13.0+cpu", None, "abc", None)
    assert L.facts_from_torch_dir(tmp_path / "nope") is None


# --- the command, on copies (imports the venv's torch) -----------------------------------------
def _args(**kw):
    ns = argparse.Namespace(check=False, for_build=False, abi="classic", lock=None,
                            pyproject=None, stable_target=None)
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


@pytest.fixture
def drifted_checkout(tmp_path):
    """A checkout copy whose lock and pin name a torch this environment does not have."""
    old = replace(LOCK, version="2.12.0+cu126", git_version="c" * 40, cuda="12.6")
    (tmp_path / "torch-lock.toml").write_text(format_lock(old))
    (tmp_path / "pyproject.toml").write_text(
        L.rewrite_torch_pin((REPO / "pyproject.toml").read_text(), "2.12.0"))
    return tmp_path


def test_lock_command_writes_lock_and_pin(drifted_checkout, capsys):
    pytest.importorskip("torch")
    import torch
    rc = L.run(_args(lock=drifted_checkout / "torch-lock.toml"))
    assert rc == 0, capsys.readouterr().err
    lk = load_lock(drifted_checkout / "torch-lock.toml")
    assert (lk.version, lk.git_version, lk.cuda, lk.cxx11_abi, lk.stable_target) == (
        torch.__version__, torch.version.git_version, torch.version.cuda,
        torch._C._GLIBCXX_USE_CXX11_ABI, "2.11")
    pin = L.pyproject_pin((drifted_checkout / "pyproject.toml").read_text())
    assert pin == f"torch=={torch.__version__.split('+')[0]}"
    assert L.run(_args(check=True, lock=drifted_checkout / "torch-lock.toml")) == 0


def test_lock_check_prints_each_difference(drifted_checkout, capsys):
    pytest.importorskip("torch")
    rc = L.run(_args(check=True, lock=drifted_checkout / "torch-lock.toml"))
    err = capsys.readouterr().err
    assert rc == 1
    assert "version: required 2.12.0+cu126" in err and "git_version: required cccc" in err
    assert "cuda: required CUDA 12.6" in err
    assert "Fix: pip install torch==2.12.0 --index-url https://download.pytorch.org/whl/cu126" in err


def test_for_build_check_catches_stale_pyproject_pin(tmp_path, capsys):
    pytest.importorskip("torch")
    (tmp_path / "torch-lock.toml").write_text((REPO / "torch-lock.toml").read_text())
    (tmp_path / "pyproject.toml").write_text(
        L.rewrite_torch_pin((REPO / "pyproject.toml").read_text(), "2.12.0"))
    rc = L.run(_args(check=True, for_build=True, lock=tmp_path / "torch-lock.toml"))
    assert rc == 1
    assert "pyproject.toml pins torch==2.12.0" in capsys.readouterr().err


def test_for_build_without_torch_names_the_fix(tmp_path):
    """A Python without torch (the system one) runs the configure check."""
    py = "/usr/bin/python3"
    probe = subprocess.run([py, "-c", "import tomllib, torch"], capture_output=True)
    if not Path(py).exists() or b"No module named 'torch'" not in probe.stderr:
        pytest.skip("needs a Python >= 3.11 without torch at /usr/bin/python3")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO / "python")
    res = subprocess.run([py, "-m", "blackwheel_factory", "lock", "--check", "--for-build"],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 1
    assert "torch is not installed in the build environment" in res.stderr
    assert L.pip_fix(load_lock(REPO / "torch-lock.toml")) in res.stderr


def test_build_requires_are_exact_and_match_the_test_environment():
    """Every build input is pinned with == (the build record names their versions, and
    a range once resolved to two cmake releases for two builds minutes apart); the test
    venv (ci/requirements-test.txt) builds with --no-build-isolation on the same pins."""
    import tomllib
    from packaging.requirements import Requirement
    build = [Requirement(r) for r in
             tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]]
    loose = [str(r) for r in build if not str(r.specifier).startswith("==")]
    assert not loose, f"pin these exactly in build-system.requires: {loose}"
    test_reqs = {}
    for line in (REPO / "ci" / "requirements-test.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            r = Requirement(line)
            test_reqs[r.name.lower()] = str(r.specifier)
    differ = {r.name: (str(r.specifier), test_reqs.get(r.name.lower())) for r in build
              if test_reqs.get(r.name.lower()) != str(r.specifier)}
    assert not differ, f"ci/requirements-test.txt differs from build-system.requires: {differ}"
