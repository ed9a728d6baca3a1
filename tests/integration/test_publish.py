"""publish -> index -> install, against a real pypiserver on 127.0.0.1 with auth on.

Torch in the fresh venv: installing torch 2.14.1 + CUDA wheels afresh is ~5 GB and
minutes, so the fresh venv (no system site-packages, no blackwheel) gets one .pth line
that makes the torch already installed for this interpreter importable, i.e. the
"torch comes from the base layer" case (`constraints --torch-preinstalled`).
blackwheel itself comes only from the private index, with --require-hashes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from publish_helpers import PKG, PyPIServer, build_info, make_wheel, run_cli, sha256, tiny_wheel  # noqa: E402

pytest.importorskip("pypiserver", reason="pip install pypiserver passlib (ci test requirements)")
pytest.importorskip("passlib", reason="pip install pypiserver passlib (ci test requirements)")

USER, PASSWORD = "publisher", "s3cret-Pa55-word"
CREDS = {"TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD}


@pytest.fixture
def server(tmp_path):
    s = PyPIServer(tmp_path / "server", users={USER: PASSWORD}).start()
    yield s
    s.stop()


def publish(server, *wheels, env=CREDS, url=None):
    return run_cli("publish", *map(str, wheels), "--repository-url", url or server.url, "--skip-verify", env=env)


def test_publish_then_identical_republish_is_a_noop(server, tmp_path):
    w = make_wheel(tmp_path / "dist")
    r = publish(server, w)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "read back" in r.stdout and f"sha256 {sha256(w)} matches" in r.stdout
    assert server.stored() == [w.name]
    assert sha256(server.root / "packages" / w.name) == sha256(w)
    stamp = (server.root / "packages" / w.name).stat().st_mtime_ns

    r = publish(server, w)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no-op" in r.stdout and "same sha256" in r.stdout and "uploading" not in r.stdout
    assert (server.root / "packages" / w.name).stat().st_mtime_ns == stamp


def test_conflicting_republish_is_refused(server, tmp_path):
    w1 = make_wheel(tmp_path / "a")
    w2 = make_wheel(tmp_path / "b", extra={"REBUILT": b"other bytes, same name\n"})
    assert w1.name == w2.name and sha256(w1) != sha256(w2)
    assert publish(server, w1).returncode == 0
    r = publish(server, w2)
    assert r.returncode == 1
    assert "different content" in r.stderr and "immutable" in r.stderr and "bump the version" in r.stderr
    assert sha256(server.root / "packages" / w1.name) == sha256(w1)


def test_bad_credentials_clear_error_without_password(server, tmp_path):
    w = make_wheel(tmp_path / "dist")
    bad = "Wr0ng-Secret-xyz"
    for env, url in [({"TWINE_USERNAME": USER, "TWINE_PASSWORD": bad}, None),
                     ({}, server.url_with(USER, bad))]:
        r = publish(server, w, env=env, url=url)
        out = r.stdout + r.stderr
        assert r.returncode == 1
        assert "refused the credentials" in out and "TWINE_USERNAME/TWINE_PASSWORD" in out
        assert bad not in out and PASSWORD not in out
    assert server.stored() == []


def test_twine_failure_output_is_scrubbed(tmp_path):
    """Reads are anonymous here, uploads need auth: the refusal comes from twine itself."""
    s = PyPIServer(tmp_path / "server", users={USER: PASSWORD}, auth="update").start()
    try:
        w = make_wheel(tmp_path / "dist")
        bad = "Sec!ret@with:chars"
        r = run_cli("publish", str(w), "--repository-url", s.url_with(USER, bad), "--skip-verify")
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert "twine upload of" in out and "failed" in out and "refused the credentials" in out
        from urllib.parse import quote
        assert bad not in out and quote(bad, safe="") not in out and PASSWORD not in out
        assert s.stored() == []
    finally:
        s.stop()


def test_scrubber_removes_secrets_tokens_and_userinfo():
    from blackwheel_factory.publishing.publish import Credentials, Scrubber
    c = Credentials("alice", "p@ss:w/rd")
    token = c.header()["Authorization"].split()[1]
    text = (f"POST https://alice:p%40ss%3Aw%2Frd@idx/ failed; password p@ss:w/rd; "
            f"Authorization: Basic {token}; ftp://x:y@h/z")
    out = Scrubber(creds=c)(text)
    assert "p@ss" not in out and "p%40ss" not in out and token not in out and "x:y@" not in out
    assert "https://****@idx/" in out and "ftp://****@h/z" in out


def test_verify_failure_blocks_upload(server, tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from blackwheel_factory.publishing import publish as P
    w = make_wheel(tmp_path / "dist")
    monkeypatch.setenv("TWINE_USERNAME", USER)
    monkeypatch.setenv("TWINE_PASSWORD", PASSWORD)
    seen = []

    def verifier(path):
        seen.append(Path(path).name)
        return SimpleNamespace(ok=False, messages=["sm_120a: no cubin for scaled_mm"])

    monkeypatch.setattr(P, "load_verifier", lambda: verifier)
    args = SimpleNamespace(wheels=[w], repository_url=server.url, index_url=None, skip_verify=False)
    assert P.run(args) == 1
    err = capsys.readouterr().err
    assert "verify failed" in err and "no cubin for scaled_mm" in err and seen == [w.name]
    assert server.stored() == []
    monkeypatch.setattr(P, "load_verifier", lambda: (lambda p: SimpleNamespace(ok=True, messages=[])))
    assert P.run(args) == 0 and server.stored() == [w.name]
    monkeypatch.setattr(P, "load_verifier", lambda: None)
    assert P.run(args) == 1 and "--skip-verify" in capsys.readouterr().err


def test_constraints_resolves_against_the_authenticated_index(server, tmp_path):
    """--torch-index: hashes come from the index's #sha256= fragments; no credential in the lock."""
    from blackwheel_factory.inputs.config import load_lock
    git = load_lock(Path(__file__).resolve().parents[2] / "torch-lock.toml").git_version
    pkgs = server.root / "packages"
    torch = tiny_wheel(pkgs, "torch", "2.14.1", ["fakedep-a"],
                       {"torch/version.py": f"git_version = '{git}'\n"})   # stand-in, 1 kB
    dep = tiny_wheel(pkgs, "fakedep_a", "1.0")
    w = make_wheel(tmp_path / "dist")
    out = tmp_path / "requirements.lock"
    r = run_cli("constraints", "--wheel", str(w), "--torch-index", server.url_with(USER, PASSWORD) + "simple/",
                "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    text = out.read_text()
    assert f"torch==2.14.1 \\\n    --hash=sha256:{sha256(torch)}" in text
    assert f"fakedep-a==1.0 \\\n    --hash=sha256:{sha256(dep)}" in text
    assert f"blackwheel==0.1.0 \\\n    --hash=sha256:{sha256(w)}" in text
    assert PASSWORD not in text + r.stdout + r.stderr and f"resolved from {server.simple}" in text
    r = run_cli("constraints", "--wheel", str(w), "--torch-index", server.simple, "-o", str(out))
    assert r.returncode == 1 and "could not resolve" in r.stderr


def test_real_verify_blocks_a_wheel_it_cannot_check(server, tmp_path):
    """No _build_info.json: `blackwheel verify` exits non-zero, so nothing is uploaded."""
    pytest.importorskip("blackwheel_factory.checks.verify")
    import zipfile
    w = make_wheel(tmp_path / "dist")
    stripped = tmp_path / "stripped" / w.name
    stripped.parent.mkdir()
    with zipfile.ZipFile(w) as src, zipfile.ZipFile(stripped, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("_build_info.json"):
                dst.writestr(item, src.read(item))
    r = run_cli("publish", str(stripped), "--repository-url", server.url, env=CREDS)
    assert r.returncode == 1 and "verify failed" in r.stderr and "not uploading" in r.stderr
    assert server.stored() == []


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=False, system_site_packages=False, clear=True).create(path)
    py = path / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    torch_site = sysconfig.get_paths()["purelib"]            # where this interpreter's torch is
    assert (Path(torch_site) / "torch").is_dir()
    (Path(site) / "_base_layer_torch.pth").write_text(torch_site + "\n")
    return py


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "TWINE_"))}


def _pip(py: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "--isolated", *args],
                          capture_output=True, text=True, env=_clean_env(), timeout=300)


@pytest.mark.skipif(not (PKG / "_loader.py").exists() or not (PKG / "ops.py").exists(),
                    reason="blackwheel._loader / blackwheel.ops not in this checkout yet")
def test_fresh_venv_installs_with_require_hashes_and_guard_passes(server, tmp_path):
    w = make_wheel(tmp_path / "dist")
    r = run_cli("publish", str(w), "--repository-url", server.url, env=CREDS)   # real verify
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verify: ok" in r.stdout
    lock = tmp_path / "requirements.lock"
    r = run_cli("constraints", "--wheel", str(w), "--torch-preinstalled", "-o", str(lock))
    assert r.returncode == 0, r.stderr

    py = _fresh_venv(tmp_path / "venv")
    index = server.url_with(USER, PASSWORD) + "simple/"
    r = _pip(py, "install", "--require-hashes", "--only-binary=:all:", "--index-url", index, "-r", str(lock))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Successfully installed blackwheel-0.1.0" in r.stdout

    probe = ("import blackwheel, torch; i = blackwheel.build_info(); "
             "print(blackwheel.__file__); print(torch.__version__, sorted(i['kernels']), i['torch']['lock']['version'])")
    r = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, env=_clean_env(),
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    where, facts = r.stdout.strip().splitlines()[-2:]
    assert where.startswith(str(tmp_path / "venv"))               # from the index, not the checkout
    assert facts == "2.14.1+cu130 [] 2.14.1+cu130"

    # The lock really pins: a tampered hash makes pip refuse before installing anything.
    bad = lock.read_text().replace(sha256(w), "0" * 64)
    (tmp_path / "bad.lock").write_text(bad)
    r = _pip(py, "install", "--force-reinstall", "--require-hashes", "--index-url", index,
             "-r", str(tmp_path / "bad.lock"))
    assert r.returncode != 0 and "DO NOT MATCH THE HASHES" in r.stdout + r.stderr


@pytest.mark.skipif(not (PKG / "_loader.py").exists(), reason="blackwheel._loader not in this checkout yet")
def test_guard_refuses_a_wheel_built_for_another_torch(tmp_path):
    """The import in the test above really went through the guard: a drifted record fails."""
    info = build_info(abi="classic")
    info["torch"]["lock"].update(version="2.13.0+cpu", git_version="1" * 40, cuda=None)
    info["torch"]["requirement"] = "torch==2.13.0"
    w = make_wheel(tmp_path / "dist", info=info, requires=[])
    py = _fresh_venv(tmp_path / "venv")
    r = _pip(py, "install", "--no-deps", "--no-index", str(w))
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(py), "-c", "import blackwheel"], capture_output=True, text=True,
                       env=_clean_env(), cwd=tmp_path, timeout=300)
    assert r.returncode != 0 and "ImportError" in r.stderr and "2.13.0" in r.stderr
