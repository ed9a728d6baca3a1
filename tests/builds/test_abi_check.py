"""abi-check on real tiny shared libraries (g++, CPU only, seconds): a planted
undefined symbol fails and a clean library passes; a stable-ABI op passes the
stable check and a classic one fails it; wheels are read with their build record."""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_abi import *  # noqa: E402,F401,F403  (fixtures)
from fixtures_abi import run_cli, write_build_info  # noqa: E402

pytestmark = pytest.mark.build


def abi_check(*args: str):
    res = run_cli(sys.executable, ["-m", "blackwheel_factory", "abi-check", *map(str, args), "--json"])
    assert res.returncode in (0, 1), res.stderr          # 2 = bad input
    return res, json.loads(res.stdout)


def kinds(report: dict, i: int = 0) -> set[str]:
    return {p["problem"] for p in report["files"][i]["problems"]}


def test_planted_undefined_symbol_fails(tiny_sos):
    res, report = abi_check(tiny_sos["planted"])
    assert res.returncode == 1 and not report["ok"]
    [p] = report["files"][0]["problems"]
    assert (p["problem"], p["name"]) == ("unresolved", "_ZN10bw_planted16missing_functionEPKci")
    # printed demangled, with the library it was expected in
    assert ("planted.so: undefined symbol bw_planted::missing_function(char const*, int) "
            "(expected in one of libc.so.6)") in res.stderr


def test_statically_linked_cxx_runtime_fails(tiny_sos):
    """The H100 host's g++ had only libstdc++.a: the extensions it linked carried their
    own C++ runtime and the first exception an op threw was a segfault."""
    res, report = abi_check(tiny_sos["static_runtime"])
    assert res.returncode == 1 and "static-runtime" in kinds(report)
    assert "carries its own C++ runtime" in res.stderr and "CXX=/usr/bin/g++" in res.stderr
    res, report = abi_check(tiny_sos["shared_runtime"])      # same source, libstdc++.so.6
    assert res.returncode == 0 and report["ok"], res.stdout + res.stderr


def test_clean_library_passes(tiny_sos):
    res, report = abi_check(tiny_sos["clean"])
    assert res.returncode == 0 and report["ok"], res.stdout
    resolved = report["files"][0]["resolved"]
    assert resolved.get("libc.so.6", 0) >= 1          # strlen etc. resolved, not skipped
    assert sum(resolved.values()) == len(report["files"][0]["symbols"])


def test_classic_library_resolves_against_locked_torch(tiny_sos):
    res, report = abi_check(tiny_sos["classic"])
    assert res.returncode == 0, res.stdout + res.stderr
    providers = {s["provider"] for s in report["files"][0]["symbols"]}
    assert {"libc10.so", "libtorch_cpu.so"} <= providers


def test_stable_library_passes_stable_check(tiny_sos):
    _, report = abi_check(tiny_sos["stable"], "--abi", "stable")
    assert "stable-abi" not in kinds(report) and "unresolved" not in kinds(report)
    torch_syms = [s for s in report["files"][0]["symbols"] if s["kind"] == "torch"]
    assert torch_syms and all(s["name"].startswith(("aoti_torch_", "torch_")) for s in torch_syms)


def test_classic_library_fails_stable_check(tiny_sos):
    res, report = abi_check(tiny_sos["classic"], "--abi", "stable")
    assert res.returncode == 1
    bad = {p["demangled"] for p in report["files"][0]["problems"] if p["problem"] == "stable-abi"}
    assert "c10::utils::unset_env(char const*)" in bad
    assert ("uses classic ABI symbol c10::utils::unset_env(char const*) from libc10.so: "
            "the stable-ABI promise is broken") in res.stderr


def test_wheel_uses_build_record_abi(tmp_path, tiny_sos, locked_torch_dir):
    """In a wheel, each library is checked under the ABI its build record declares."""
    from blackwheel_factory.inputs.config import load_lock
    from fixtures_abi import REPO
    rec = tmp_path / "rec"
    rec.mkdir()
    write_build_info(rec, "stable", load_lock(REPO / "torch-lock.toml").as_dict())
    info = json.loads((rec / "_build_info.json").read_text())
    info["kernels"]["good"] = {"archs": ["12.0a"], "abi": "stable", "library": "_good.abi3.so"}
    info["kernels"]["tiny"]["library"] = "_bad.abi3.so"           # declared stable, is classic
    whl = tmp_path / "blackwheel-0.1.0-cp39-abi3-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("blackwheel/_build_info.json", json.dumps(info))
        zf.write(tiny_sos["stable"], "blackwheel/_good.abi3.so")
        zf.write(tiny_sos["classic"], "blackwheel/_bad.abi3.so")
    res, report = abi_check(whl)
    assert res.returncode == 1
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert by_name["_bad.abi3.so"]["abi"] == "stable"
    assert any(p["problem"] == "stable-abi" for p in by_name["_bad.abi3.so"]["problems"])
    assert not any(p["problem"] in ("stable-abi", "unresolved")
                   for p in by_name["_good.abi3.so"]["problems"])


def test_bad_input_exit_2_names_fix(tmp_path):
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\0" * 64)
    res = run_cli(sys.executable, ["-m", "blackwheel_factory", "abi-check", str(junk)])
    assert res.returncode == 2 and "not an ELF shared library" in res.stderr
    res = run_cli(sys.executable, ["-m", "blackwheel_factory", "abi-check", str(junk), "--torch-dir", str(tmp_path)])
    assert res.returncode == 2 and "pass the torch package directory" in res.stderr
