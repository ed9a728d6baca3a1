"""The runtime's guard (blackwheel_runtime.guard, the copy every product wheel carries):
build record reading, refusal messages, cheap import."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from blackwheel_runtime import guard as G
from blackwheel_runtime import record as R
from blackwheel_runtime.torch_lock import TorchFacts

REPO = Path(__file__).resolve().parents[2]
LOCK = {"version": "2.14.1+cu130", "git_version": "5c4886908584029761b579af026dcfb627c84070",
        "cuda": "13.0", "cxx11_abi": True, "stable_target": "2.11"}
LOCKED = TorchFacts(LOCK["version"], LOCK["git_version"], "13.0", True)


def info(abi: str) -> dict:
    return {"schema": 1, "abi": abi, "torch": {"lock": dict(LOCK)}}


def test_build_info_absent_is_none(tmp_path):
    assert R.read(tmp_path / "_build_info.json") is None


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"schema": 1}'])
def test_corrupt_build_info_names_fix(tmp_path, text):
    p = tmp_path / "_build_info.json"
    p.write_text(text)
    with pytest.raises(ImportError, match="reinstall blackwheel"):
        R.read(p)


def test_matching_torch_passes():
    G.check_torch(info("classic"), facts=LOCKED)
    G.check_torch(info("stable"), facts=TorchFacts("2.16.0+cu131", "f" * 40, "13.1", False))


def test_classic_drift_refused_with_fix():
    other = TorchFacts("2.14.0+cu130", "e" * 40, "13.0", True, "/site/torch")
    with pytest.raises(ImportError) as e:
        G.check_torch(info("classic"), facts=other)
    msg = str(e.value)
    assert isinstance(e.value, G.TorchMismatchError)
    assert "torch 2.14.0+cu130" in msg and "2.14.1+cu130" in msg
    assert "pip install torch==2.14.1 --index-url https://download.pytorch.org/whl/cu130" in msg
    assert [d.field for d in e.value.drifts] == ["version", "git_version"]


@pytest.mark.parametrize("version,cuda,field", [
    ("2.14.1+cpu", None, "cuda"),
    ("2.14.1+cu128", "12.8", "cuda"),
    ("2.10.0+cu130", "13.0", "version"),
])
def test_stable_drift_refused(version, cuda, field):
    with pytest.raises(G.TorchMismatchError) as e:
        G.check_torch(info("stable"), facts=TorchFacts(version, "x", cuda, True))
    assert [d.field for d in e.value.drifts] == [field]
    assert 'pip install "torch>=2.11" --index-url https://download.pytorch.org/whl/cu130' in str(e.value)


def test_missing_torch_refused_with_fix():
    with pytest.raises(ImportError, match=r"not installed.*pip install torch==2\.14\.1"):
        G.check_torch(info("classic"), facts=None)


def test_incomplete_lock_record():
    with pytest.raises(ImportError, match="reinstall"):
        G.check_torch({"abi": "classic", "torch": {"lock": {"version": "2.14.1"}}}, facts=LOCKED)


def test_check_torch_uses_the_running_torch(monkeypatch):
    """Default path: facts come from importing torch (stubbed here)."""
    monkeypatch.setattr(G, "_installed_torch", lambda: (None, "No module named 'torch'"))
    with pytest.raises(ImportError, match="No module named 'torch'"):
        G.check_torch(info("stable"))


def test_guard_import_is_cheap():
    """Importing the guard (and blackwheel in a checkout) imports neither torch nor the factory."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    code = ("import sys, blackwheel._runtime.guard, blackwheel\n"
            "print('torch' in sys.modules, any(m.startswith('blackwheel_factory') for m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False False"


def test_the_refusal_names_the_product_from_its_record():
    rec = {**info("stable"), "product": {"dist": "flash-attn", "version": "2.8.3.post2+cu130.sm120a"}}
    with pytest.raises(G.TorchMismatchError) as e:
        G.check_torch(rec, facts=TorchFacts("2.13.0+cpu", "x", None, True))
    assert str(e.value).startswith("flash-attn 2.8.3.post2+cu130.sm120a was built for torch>=2.11 "
                                   "built for CUDA 13.x, but the installed torch is torch 2.13.0+cpu")


@pytest.mark.parametrize("argv,env,expected", [
    (["-m", "doctor"], {}, True),
    (["/venv/bin/blackwheel", "info", "--json"], {}, True),
    (["-m", "smoke"], {}, False),
    (["script.py", "doctor"], {}, False),
    (["x"], {"BLACKWHEEL_NO_LOAD": "1"}, True),
])
def test_diagnostic_mode(argv, env, expected):
    assert G.diagnostic_mode(argv, env) is expected
