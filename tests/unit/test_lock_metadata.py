"""The wheel's torch requirement (scikit-build-core dynamic metadata provider)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from blackwheel_factory.compile import metadata as M
from blackwheel_factory.inputs.config import load_lock
from blackwheel_factory.plan.plan import PlanError

REPO = Path(__file__).resolve().parents[2]


def with_classic(tmp_path: Path, family: str) -> Path:
    """A checkout copy where one kernel family of products/kernel-pack.toml is classic-ABI."""
    text = (REPO / "products/kernel-pack.toml").read_text()
    text, n = re.subn(rf'(\[family\.{family}\](?:(?!\n\[).)*?)abi = "stable"',
                      r'\1abi = "classic"', text, flags=re.S)
    assert n == 1
    (tmp_path / "products").mkdir()
    (tmp_path / "products/kernel-pack.toml").write_text(text)
    for name in ("blackwheel.toml", "torch-lock.toml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    return tmp_path


@pytest.fixture
def mixed_root(tmp_path):
    return with_classic(tmp_path, "flash_attn")


def test_repo_default_is_stable_requirement(monkeypatch):
    monkeypatch.delenv("BLACKWHEEL_KERNELS", raising=False)
    monkeypatch.delenv("BLACKWHEEL_ARCHS", raising=False)
    monkeypatch.chdir(REPO)
    lock = load_lock(REPO / "torch-lock.toml")
    assert M.dynamic_metadata("dependencies", {}) == [f"torch>={lock.stable_target}"]


def test_any_classic_family_pins_exact(mixed_root, monkeypatch):
    monkeypatch.delenv("BLACKWHEEL_KERNELS", raising=False)
    monkeypatch.delenv("BLACKWHEEL_ARCHS", raising=False)
    lock = load_lock(mixed_root / "torch-lock.toml")
    assert M.dynamic_metadata("dependencies", {"root": str(mixed_root)}) == [
        f"torch=={lock.public_version}"]


def test_selection_decides(mixed_root, monkeypatch):
    monkeypatch.setenv("BLACKWHEEL_KERNELS", "scaled_mm,nvfp4")   # stable ones only
    assert M.dynamic_metadata("dependencies", {"root": str(mixed_root)}) == ["torch>=2.11"]
    monkeypatch.setenv("BLACKWHEEL_KERNELS", "scaled_mm flash_attn")
    assert M.dynamic_metadata("dependencies", {"root": str(mixed_root)}) == ["torch==2.14.1"]


def test_skipped_classic_family_does_not_count(tmp_path, monkeypatch):
    # nvfp4 (made classic here) has no 9.0a target: the plan skips it -> all stable
    root = with_classic(tmp_path, "nvfp4")
    monkeypatch.delenv("BLACKWHEEL_KERNELS", raising=False)
    monkeypatch.setenv("BLACKWHEEL_ARCHS", "9.0a")
    assert M.dynamic_metadata("dependencies", {"root": str(root)}) == ["torch>=2.11"]
    monkeypatch.setenv("BLACKWHEEL_ARCHS", "12.0a")
    assert M.dynamic_metadata("dependencies", {"root": str(root)}) == ["torch==2.14.1"]


def test_unknown_kernel_set_names_choices(monkeypatch):
    monkeypatch.setenv("BLACKWHEEL_KERNELS", "scaled_mm,nope")
    with pytest.raises(PlanError, match="unknown kernel set.*nope.*choose from"):
        M.dynamic_metadata("dependencies", {"root": str(REPO)})


def test_bad_field_and_setting():
    with pytest.raises(RuntimeError, match="'dependencies' and 'version' only"):
        M.dynamic_metadata("name", {})
    with pytest.raises(RuntimeError, match="unknown setting"):
        M.dynamic_metadata("dependencies", {"colour": "blue"})


def test_scikit_build_core_loads_provider_from_pyproject(monkeypatch):
    """Through scikit-build-core's own loader, with the table pyproject.toml declares."""
    loader = pytest.importorskip("scikit_build_core.builder._load_provider")
    process_legacy_dynamic_metadata = loader.process_legacy_dynamic_metadata
    from blackwheel_factory.inputs.config import tomllib
    monkeypatch.delenv("BLACKWHEEL_KERNELS", raising=False)
    monkeypatch.delenv("BLACKWHEEL_ARCHS", raising=False)
    monkeypatch.chdir(REPO)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = process_legacy_dynamic_metadata(pyproject["project"],
                                              pyproject["tool"]["scikit-build"]["metadata"])
    assert project["dependencies"] == ["torch>=2.11"]
    assert "dependencies" not in project["dynamic"]
    assert project["version"] == "0.1.0+cu130.sm120a" and "version" not in project["dynamic"]


def test_provider_imports_without_torch():
    code = ("import sys, blackwheel_factory.compile.metadata as m\n"
            "m.dynamic_metadata('dependencies', {})\n"
            "print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    env.pop("BLACKWHEEL_KERNELS", None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
