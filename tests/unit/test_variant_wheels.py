"""Wheels that say what they are for (issue 14): the version with its PEP 440 local
label comes from the metadata provider (plan archs + torch lock's CUDA); two arch
builds of one version are two files on an index, published, indexed and pinned apart."""
from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from publish_helpers import REPO, make_wheel, run_cli, sha256  # noqa: E402

from blackwheel_factory.compile import metadata as M  # noqa: E402
from blackwheel_factory.publishing import constraints as C  # noqa: E402
from blackwheel_factory.publishing import index as ix  # noqa: E402
from blackwheel_factory.publishing import simple_index as si  # noqa: E402

V120 = "0.1.0+cu130.sm120a"
V90_120 = "0.1.0+cu130.sm90a.sm120a"


@pytest.mark.parametrize("env,want", [
    ({}, V120),                                                  # the default archs
    ({"BLACKWHEEL_ARCHS": "12.0a"}, V120),
    ({"BLACKWHEEL_ARCHS": "12.0a;9.0a"}, V90_120),              # order does not matter
    ({"BLACKWHEEL_ARCHS": "9.0a,12.0a"}, V90_120),
    ({"TORCH_CUDA_ARCH_LIST": "9.0a;12.0a"}, V90_120),
])
def test_the_provider_names_the_variant(env, want):
    assert M.wheel_version(REPO, env) == want
    assert Version(want) in SpecifierSet("==0.1.0")       # `pip install blackwheel==0.1.0` takes either


def test_the_provider_hook_and_pyproject_agree(monkeypatch):
    for k in ("BLACKWHEEL_ARCHS", "TORCH_CUDA_ARCH_LIST", "BLACKWHEEL_KERNELS"):
        monkeypatch.delenv(k, raising=False)
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in py["project"] and "version" in py["project"]["dynamic"]
    table = dict(py["tool"]["scikit-build"]["metadata"]["version"])
    assert table.pop("provider") == "blackwheel_factory.compile.metadata"
    table.pop("provider-path")
    assert M.dynamic_metadata("version", table) == f"{table['public']}+cu130.sm120a"
    with pytest.raises(RuntimeError, match="unknown setting"):
        M.dynamic_metadata("version", {**table, "label": "x"})
    # Requires-Python agrees with the wheel tag cp39-abi3
    assert py["tool"]["scikit-build"]["wheel"]["py-api"] == "cp39"
    assert py["project"]["requires-python"] == ">=3.9"


def test_the_build_record_version_is_the_wheel_version():
    from blackwheel_factory.inputs.config import load_lock
    from blackwheel_factory.plan import cmake_bridge as B
    lock = load_lock(REPO / "torch-lock.toml")
    assert B._version(REPO, ["9.0a", "12.0a"], lock) == V90_120


def test_two_arch_builds_are_two_files_on_the_index(tmp_path):
    d = tmp_path / "dist"
    a, b = make_wheel(d, version=V120), make_wheel(d, version=V90_120)
    assert a.name != b.name and si.project_of(a.name) == si.project_of(b.name) == "blackwheel"
    assert si.version_of(a.name) == V120 and si.version_of(b.name) == V90_120
    r = run_cli("index", str(d))
    assert r.returncode == 0, r.stderr
    page = d / "simple" / "blackwheel"
    files = si.parse_project_json((page / "index.json").read_text(), page.as_uri() + "/")
    assert {f.filename: f.sha256 for f in files} == {a.name: sha256(a), b.name: sha256(b)}
    html_files = si.parse_project_html((page / "index.html").read_text(), page.as_uri() + "/")
    assert {f.filename for f in html_files} == {a.name, b.name}
    assert "%2Bcu130.sm120a" in (page / "index.html").read_text()     # '+' quoted in the URL
    assert {f.url for f in files} == {a.as_uri(), b.as_uri()}


def test_publishing_the_second_arch_build_is_an_upload_not_a_conflict(tmp_path):
    d = tmp_path / "dist"
    a, b = make_wheel(d, version=V120), make_wheel(d, version=V90_120)
    listed = [si.IndexFile(a.name, f"https://idx/f/{a.name}", {"sha256": sha256(a)})]
    assert si.decide(b.name, sha256(b), si.find_file(listed, b.name)).action == si.UPLOAD
    assert si.decide(a.name, sha256(a), si.find_file(listed, a.name)).action == si.NOOP
    # the same variant rebuilt with other bytes is still refused
    c = make_wheel(tmp_path / "other", version=V120, extra={"planted.txt": b"x"})
    assert si.decide(c.name, sha256(c), si.find_file(listed, c.name)).action == si.CONFLICT


def test_constraints_pin_the_exact_variant_file(tmp_path):
    a = make_wheel(tmp_path / "dist", version=V90_120)
    out = tmp_path / "requirements.lock"
    r = run_cli("constraints", "--wheel", str(a), "--torch-preinstalled", "-o", str(out))
    assert r.returncode == 0, r.stderr
    body = [line for line in out.read_text().splitlines() if line and not line.startswith("#")]
    assert body == [f"blackwheel=={V90_120} \\", f"    --hash=sha256:{sha256(a)}"]


def test_constraints_refuse_two_variants_in_one_file(tmp_path):
    d = tmp_path / "dist"
    a, b = make_wheel(d, version=V120), make_wheel(d, version=V90_120)
    with pytest.raises(C.ConstraintsError, match="2 wheels of blackwheel"):
        C.check_one_variant_per_project([a.name, b.name])
    r = run_cli("constraints", "--wheel", str(a), str(b), "--torch-preinstalled", "-o",
                str(tmp_path / "x"))
    assert r.returncode == 1 and "one file per variant" in r.stderr
