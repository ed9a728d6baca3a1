"""CPU tests of the shared kernel cases (blackwheel.testing.cases) and the smoke CLI
plumbing: coverage of the case list, the refusal logic, exit codes without a GPU."""
import argparse
import json

import pytest
import torch

from blackwheel import ops, smoke
from blackwheel_factory.plan.archs import parse_arch
from blackwheel.testing import cases as C
from blackwheel.testing.compare import Check, compare


def test_case_names_unique_and_families_known():
    names = [c.name for c in C.all_cases()]
    assert len(names) == len(set(names))
    assert {c.family for c in C.all_cases()} == set(ops.KERNEL_SETS)


def test_case_list_covers_the_brief():
    cs = C.all_cases()
    mm = [c for c in C.scaled_mm_cases() if c.op == "scaled_mm"]
    assert any("m1k" in c.name for c in mm)
    assert any(("tensor-tensor" in c.name) for c in mm) and any("token-channel" in c.name for c in mm)
    assert any(c.name.endswith("bf16") for c in mm) and any(c.name.endswith("fp16") for c in mm)
    assert any("/bias/" in c.name for c in mm) and any("/nobias/" in c.name for c in mm)
    assert any("k272n1040" in c.name for c in mm)             # not multiples of 128
    marlin = [c.name for c in C.marlin_cases()]
    for want in ("nvfp4/m1k", "nvfp4/m256", "mxfp4/m1k", "mxfp4/m256"):
        assert any(want in n for n in marlin), want
    assert any("nvfp4" in n and n.endswith("fp16") for n in marlin)
    fa = [c.name for c in C.flash_attn_cases()]
    for want in ("sq1sk300", "sq77sk300", "sq300sk300", "d64", "d128", "/causal/", "/full/", "kv1", "bf16", "fp16"):
        assert any(want in n for n in fa), want
    assert any(c.family == "nvfp4" for c in cs)


def test_scaled_mm_cases_respect_cutlass_alignment():
    import re
    for c in C.scaled_mm_cases():
        m = re.search(r"m(\d+)k(\d+)n(\d+)", c.name)
        if m:
            assert int(m.group(2)) % 16 == 0 and int(m.group(3)) % 16 == 0, c.name


def _fake(fn):
    return C.Case("fake/case", "nvfp4", "op", "-", "-", fn)


def _refusing(monkeypatch):
    def target(family, device=None):
        raise ops.KernelUnavailableError(
            "nvfp4 was built for 12.0a; this GPU is sm_90 (NVIDIA H100): SM_120 only")
    monkeypatch.setattr(ops, "kernel_target", target)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)


def test_refusal_passes_only_on_clean_refusal(monkeypatch):
    _refusing(monkeypatch)

    def refuses(dev, g):
        ops.resolve_target({"kernels": {"nvfp4": {"archs": ["12.0a"]}}}, "nvfp4", (9, 0), "NVIDIA H100")
    out = C.run_case(_fake(refuses), "cpu")
    assert out.status == "pass"
    assert out.path == "refused cleanly (sm_120 only: verified statically)"

    out = C.run_case(_fake(lambda dev, g: []), "cpu")
    assert out.status == "fail" and "ran although" in out.message

    def crashes(dev, g):
        raise RuntimeError("CUDA error: an illegal instruction was encountered")
    out = C.run_case(_fake(crashes), "cpu")
    assert out.status == "fail" and "illegal instruction" in out.message


def test_missing_family_is_skipped(monkeypatch):
    def target(family, device=None):
        raise ops.KernelUnavailableError("kernel set 'nvfp4' is not in this wheel (built: scaled_mm); ...")
    monkeypatch.setattr(ops, "kernel_target", target)
    out = C.run_case(_fake(lambda d, g: []), "cpu")
    assert out.status == "skip" and "not in this wheel" in out.message


def test_run_case_reports_path_and_checks(monkeypatch):
    monkeypatch.setattr(ops, "kernel_target",
                        lambda family, device=None: ops.KernelTarget(family, parse_arch("9.0a"), "sass"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    good = C.run_case(_fake(lambda d, g: [compare("out", torch.ones(3), torch.ones(3), 0.0)]), "cpu")
    assert good.status == "pass" and good.path == "sm_90a SASS"
    bad = C.run_case(_fake(lambda d, g: [compare("out", torch.ones(3), torch.zeros(3), 0.5)]), "cpu")
    assert bad.status == "fail" and "3/3 elements" in bad.message


def test_compare_metrics():
    c = compare("x", torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 2.5, 4.0]), 0.25)
    assert not c.passed and c.max_abs == 0.5 and c.max_rel == pytest.approx(0.5 / 4.0)
    inf = float("inf")
    assert compare("lse", torch.tensor([inf, 1.0]), torch.tensor([inf, 1.0]), 1e-3).passed
    assert not compare("lse", torch.tensor([1.0, 1.0]), torch.tensor([inf, 1.0]), 1e-3).passed
    assert not compare("nan", torch.tensor([float("nan")]), torch.tensor([1.0]), 1.0).passed
    assert not compare("shape", torch.ones(2), torch.ones(3), 1.0).passed


def _args(**kw):
    p = argparse.ArgumentParser()
    smoke.add_arguments(p)
    return p.parse_args([a for k, v in kw.items() for a in ((f"--{k}", v) if v is not True else (f"--{k}",))])


def test_smoke_without_gpu_exits_2_with_message(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert smoke.run(_args()) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


def test_smoke_list_and_filter(capsys):
    assert smoke.run(_args(list=True, filter="flash_attn/b1sq1")) == 0
    lines = capsys.readouterr().out.split()
    assert lines and all(n.startswith("flash_attn/b1sq1") for n in lines)
    assert smoke.run(_args(filter="no-such-case")) == 2


def test_smoke_runs_cases_and_writes_json(monkeypatch, tmp_path, capsys):
    """With a (faked) GPU and build record, smoke prints the table, writes JSON and
    exits 1 when a case fails."""
    import blackwheel
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100")
    monkeypatch.setattr(blackwheel, "build_info", lambda: {"blackwheel_version": "0.1.0",
                                                          "kernels": {"nvfp4": {"archs": ["12.0a"]}}})
    fake = [C.Case("a/ok", "scaled_mm", "scaled_mm", "s", "d", lambda d, g: [Check("out", 0.0, 0.0, True)]),
            C.Case("b/bad", "scaled_mm", "scaled_mm", "s", "d", lambda d, g: [Check("out", 1.0, 1.0, False, "x")])]
    monkeypatch.setattr(C, "all_cases", lambda: fake)
    monkeypatch.setattr(C, "run_case", lambda case, dev: C.CaseOutcome(
        "pass" if case.name == "a/ok" else "fail", "sm_90a SASS", case.fn(dev, None), ""))
    out = tmp_path / "r.json"
    assert smoke.run(_args(json=str(out))) == 1
    text = capsys.readouterr().out
    assert "sm_90a SASS" in text and "FAIL" in text and "1 passed, 1 failed" in text
    data = json.loads(out.read_text())
    assert [c["status"] for c in data["cases"]] == ["pass", "fail"] and data["passed"] is False
