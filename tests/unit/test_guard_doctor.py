"""doctor and info (blackwheel_runtime, shared by every product): pure diagnosis over
build records, torch facts, GPUs, driver."""
from __future__ import annotations

import argparse
import json

import pytest

from blackwheel_runtime import doctor as D
from blackwheel_runtime import info as I
from blackwheel_runtime.torch_lock import TorchFacts

LOCK = {"version": "2.14.1+cu130", "git_version": "5c4886908584029761b579af026dcfb627c84070",
        "cuda": "13.0", "cxx11_abi": True, "stable_target": "2.11"}
INFO = {
    "schema": 1, "blackwheel_version": "0.1.0", "archs": ["12.0a", "8.0+PTX"], "abi": "stable",
    "kernels": {
        "scaled_mm": {"archs": ["12.0a"], "abi": "stable", "library": "_scaled_mm.abi3.so",
                      "ops": ["cutlass_scaled_mm"]},
        "flash_attn": {"archs": ["8.0+PTX"], "abi": "stable", "library": "_flash_attn.abi3.so",
                       "ops": ["mha_fwd"]},
    },
    "skipped": {"nvfp4": "needs 12.0a/12.0f/12.1a"},
    "torch": {"lock": LOCK, "requirement": "torch>=2.11"},
    "toolchain": {"nvcc_version": "13.0.88", "origin": "pypi", "host_compiler": "g++ 12",
                  "cmake": "4.1"},
    "source_date_epoch": 1793491200,
}
GOOD = TorchFacts("2.14.1+cu130", LOCK["git_version"], "13.0", True)


def lines_of(level, lines):
    return [t for lv, t in lines if lv == level]


def test_rtx50_runs_everything():
    lines = D.diagnose(INFO, GOOD, "", [D.Gpu(0, "RTX 5090", 12, 0)], "", (13, 0))
    assert not lines_of("fail", lines)
    ok = "\n".join(lines_of("ok", lines))
    assert "scaled_mm: runs (sass sm_120a)" in ok
    assert "flash_attn: runs (ptx-jit sm_80)" in ok
    assert any("nvfp4: not built" in t for t in lines_of("info", lines))


def test_hopper_runs_flash_attn_only():
    lines = D.diagnose(INFO, GOOD, "", [D.Gpu(0, "H100", 9, 0)], "", (13, 0))
    # a set that cannot run here is a warning while another set runs ...
    assert not lines_of("fail", lines)
    warns = lines_of("warn", lines)
    assert len(warns) == 1 and "scaled_mm: does not run" in warns[0]
    assert "no code runs on compute capability 9.0" in warns[0]
    # ... and a failure when nothing in the wheel runs on the GPU
    lines = D.diagnose(INFO, GOOD, "", [D.Gpu(0, "T4", 7, 5)], "", (13, 0))
    assert any("no kernel set of this wheel runs on GPU 0" in t for t in lines_of("fail", lines))


def test_old_driver_fails_with_branch():
    lines = D.diagnose(INFO, GOOD, "", [D.Gpu(0, "RTX 5090", 12, 0)], "", (12, 8))
    assert any("driver >= 580" in t for t in lines_of("fail", lines))


def test_no_gpu_no_driver_is_said_not_raised():
    lines = D.diagnose(INFO, GOOD, "", [], "torch.cuda.is_available() is False", None)
    warns = "\n".join(lines_of("warn", lines))
    assert "GPU: none visible (torch.cuda.is_available() is False)" in warns
    assert "no NVIDIA driver found" in warns and "driver >= 580" in warns
    assert not lines_of("fail", lines)


def test_torch_drift_and_missing_torch():
    cpu = TorchFacts("2.14.1+cpu", LOCK["git_version"], None, True)
    fail = lines_of("fail", D.diagnose(INFO, cpu, "", [], "x", None))
    assert len(fail) == 1 and "CPU-only" in fail[0] and "--index-url" in fail[0]
    fail = lines_of("fail", D.diagnose(INFO, None, "No module named 'torch'", None, "x", None))
    assert "not importable (No module named 'torch')" in fail[0] and "pip install" in fail[0]


def test_doctor_runs_here_without_gpu(tmp_path, capsys):
    """The real probe on this machine (no GPU, no driver) reports instead of raising."""
    pytest.importorskip("torch")
    p = tmp_path / "_build_info.json"
    p.write_text(json.dumps(INFO))
    rc = D.run(argparse.Namespace(json=True, path=p, product=None))
    out = json.loads(capsys.readouterr().out)
    texts = [x["text"] for x in out]
    assert any(t.startswith("torch: ") for t in texts)
    assert any(t.startswith("driver: ") for t in texts)
    assert rc in (0, 1)


def test_info_format_and_json(tmp_path, capsys):
    text = I.format_info(INFO)
    assert "torch lock:   2.14.1+cu130" in text and "requires:     torch>=2.11" in text
    assert "scaled_mm" in text and "nvfp4        skipped:" in text
    p = tmp_path / "_build_info.json"
    p.write_text(json.dumps(INFO))
    assert I.run(argparse.Namespace(json=True, path=p, wheel=None, product=None)) == 0
    assert json.loads(capsys.readouterr().out) == INFO


def test_info_without_record_names_fix(tmp_path, capsys):
    assert I.run(argparse.Namespace(json=False, path=tmp_path / "_build_info.json", wheel=None,
                                    product=None)) == 1
    assert "source checkout" in capsys.readouterr().err
