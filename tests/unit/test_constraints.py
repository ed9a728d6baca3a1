"""constraints: pins from pip's report (pure) and a real pip resolution over tiny local wheels.

The "torch" here is a 1 kB stand-in wheel in a temp dir: these tests exercise the
resolution and pinning mechanics; the real torch is used by tests/integration.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from publish_helpers import REPO, make_wheel, run_cli, sha256, tiny_wheel  # noqa: E402

from blackwheel_factory.publishing import constraints as C  # noqa: E402
from blackwheel_factory.inputs.config import load_lock  # noqa: E402

LOCK = load_lock(REPO / "torch-lock.toml")


def torch_dir(tmp_path, version="2.14.1", git=LOCK.git_version) -> Path:
    d = tmp_path / "torchwheels"
    tiny_wheel(d, "torch", version, ["fakedep-a>=1", "fakedep-b; python_version < '3'"],
               {"torch/version.py": f"__version__ = '{version}'\ngit_version = '{git}'\n"})
    tiny_wheel(d, "fakedep_a", "1.0")
    tiny_wheel(d, "fakedep_a", "1.2")
    tiny_wheel(d, "fakedep_b", "1.0")
    return d


REPORT = {"version": "1", "install": [
    {"metadata": {"name": "Torch", "version": "2.14.1+cu130"},
     "download_info": {"url": "https://u:p@idx/t/torch-2.14.1%2Bcu130-cp312-cp312-x.whl",
                       "archive_info": {"hash": "sha256=" + "c" * 64}}},
    {"metadata": {"name": "blackwheel", "version": "0.1.0"},
     "download_info": {"url": "file:///d/blackwheel-0.1.0-cp39-abi3-x.whl", "archive_info": {}}},
]}


def test_pins_from_report_sorted_hashed_and_redacted():
    pins = C.pins_from_report(REPORT, {"blackwheel-0.1.0-cp39-abi3-x.whl": "d" * 64})
    assert [(p.name, p.version, p.sha256, p.source) for p in pins] == [
        ("blackwheel", "0.1.0", "d" * 64, "local"), ("torch", "2.14.1+cu130", "c" * 64, "index")]
    assert pins[1].filename == "torch-2.14.1+cu130-cp312-cp312-x.whl"
    assert "u:p@" not in pins[1].url
    assert pins[0].line() == f"blackwheel==0.1.0 \\\n    --hash=sha256:{'d' * 64}"


def test_pins_from_report_without_hash_names_the_fix():
    rep = {"version": "1", "install": [{"metadata": {"name": "x", "version": "1"},
                                        "download_info": {"url": "https://idx/x-1-py3-none-any.whl"}}]}
    with pytest.raises(C.ConstraintsError, match="no sha256.*--hash-algo sha256"):
        C.pins_from_report(rep)


@pytest.mark.parametrize("version,git,ok", [
    ("2.14.1+cu130", LOCK.git_version, True),
    ("2.14.1", None, True),
    ("2.14.1+cpu", None, False),
    ("2.14.0+cu130", None, False),
    ("2.14.1", "0" * 40, False),
])
def test_check_torch_pin(version, git, ok):
    pins = [C.Pin("torch", version, "e" * 64, "torch.whl", "index")]
    if ok:
        assert C.check_torch_pin(pins, LOCK, git).version == version
    else:
        with pytest.raises(C.ConstraintsError):
            C.check_torch_pin(pins, LOCK, git)


def test_check_preinstalled():
    meta = "Metadata-Version: 2.1\nName: blackwheel\nVersion: 0.1.0\n"
    C.check_preinstalled({"w": meta + "Requires-Dist: torch>=2.11\nRequires-Dist: pytest; extra == 'test'\n"}, LOCK)
    with pytest.raises(C.ConstraintsError, match="numpy.*--torch-wheel-dir"):
        C.check_preinstalled({"w": meta + "Requires-Dist: numpy\n"}, LOCK)
    with pytest.raises(C.ConstraintsError, match="locked torch is 2.14.1"):
        C.check_preinstalled({"w": meta + "Requires-Dist: torch==2.13.0\n"}, LOCK)


def test_constraints_resolves_with_pip_from_wheel_dir(tmp_path):
    w = make_wheel(tmp_path / "dist")
    d = torch_dir(tmp_path)
    out = tmp_path / "requirements.lock"
    r = run_cli("constraints", "--wheel", str(w), "--torch-wheel-dir", str(d), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    text = out.read_text()
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert "\n".join(body).strip() == "\n".join([
        f"blackwheel==0.1.0 \\\n    --hash=sha256:{sha256(w)}",
        f"fakedep-a==1.2 \\\n    --hash=sha256:{sha256(d / 'fakedep_a-1.2-py3-none-any.whl')}",
        f"torch==2.14.1 \\\n    --hash=sha256:{sha256(d / 'torch-2.14.1-py3-none-any.whl')}",
    ])  # fakedep-b's marker is false: not installed, not pinned
    assert "torch lock: 2.14.1+cu130" in text


def test_constraints_refuses_another_torch_build(tmp_path):
    w = make_wheel(tmp_path / "dist")
    d = torch_dir(tmp_path, git="0" * 40)
    r = run_cli("constraints", "--wheel", str(w), "--torch-wheel-dir", str(d), "-o", str(tmp_path / "x"))
    assert r.returncode == 1 and "another build" in r.stderr and not (tmp_path / "x").exists()


def test_constraints_reports_missing_dependency(tmp_path):
    w = make_wheel(tmp_path / "dist")
    d = torch_dir(tmp_path)
    for p in d.glob("fakedep_a-*"):
        p.unlink()
    r = run_cli("constraints", "--wheel", str(w), "--torch-wheel-dir", str(d), "-o", str(tmp_path / "x"))
    assert r.returncode == 1 and "could not resolve" in r.stderr and "fakedep" in r.stderr


def test_constraints_preinstalled_pins_only_the_wheels(tmp_path):
    w = make_wheel(tmp_path / "dist")
    out = tmp_path / "requirements.lock"
    r = run_cli("constraints", "--wheel", str(w), "--torch-preinstalled", "-o", str(out))
    assert r.returncode == 0, r.stderr
    body = [line for line in out.read_text().splitlines() if line and not line.startswith("#")]
    assert body == ["blackwheel==0.1.0 \\", f"    --hash=sha256:{sha256(w)}"]
    assert "torch==2.14.1 comes from the base layer" in out.read_text()


def test_constraints_bad_wheel_path(tmp_path):
    r = run_cli("constraints", "--wheel", str(tmp_path / "nope.whl"), "--torch-preinstalled", "-o", str(tmp_path / "x"))
    assert r.returncode == 1 and "not a wheel file" in r.stderr
