"""Upstream sources: index lookup (PEP 691 JSON and PEP 503 HTML, served for real
on 127.0.0.1), sha256 pinning, strict patches, atomic unpack, offline cache."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from blackwheel_factory.sources import fetch as S
from blackwheel_factory.inputs.config import Inputs, Source, load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _own_source_root(tmp_path, monkeypatch):
    """Every test gets its own source root (never the machine's /tmp/blackwheel-src)."""
    monkeypatch.setenv("BLACKWHEEL_SRC_ROOT", str(tmp_path / "src-root"))
    monkeypatch.delenv("BLACKWHEEL_OFFLINE", raising=False)


def _sdist(path: Path, files: dict[str, str]) -> str:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"demo-1.0/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config(root: Path, sha: str) -> Inputs:
    base = load_config(REPO / "blackwheel.toml")
    src = Source(name="demo", dist="demo", version="1.0", filename="demo-1.0.tar.gz", sha256=sha,
                 why="test")
    return Inputs(path=root / "blackwheel.toml", source_date_epoch=base.source_date_epoch,
                  accepted_archs=base.accepted_archs, cuda_toolkit=base.cuda_toolkit,
                  nvcc_version=base.nvcc_version, sources={"demo": src})


class _Index(http.server.SimpleHTTPRequestHandler):
    files: dict[str, bytes] = {}
    json_mode = True
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        if self.path == "/simple/demo/":
            if type(self).json_mode and "json" in self.headers.get("Accept", ""):
                body = json.dumps({"meta": {"api-version": "1.0"}, "name": "demo", "files": [
                    {"filename": n, "url": f"/files/{n}", "hashes": {}} for n in self.files]}).encode()
                ctype = "application/vnd.pypi.simple.v1+json"
            else:
                body = "".join(f'<a href="../../files/{n}#sha256=x">{n}</a>' for n in self.files).encode()
                ctype = "text/html"
        elif self.path.startswith("/files/") and self.path[7:] in self.files:
            body, ctype = self.files[self.path[7:]], "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture()
def index():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    _Index.files, _Index.hits, _Index.json_mode = {}, [], True
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()


@pytest.mark.parametrize("json_mode", [True, False])
def test_fetch_verify_unpack_patch_from_a_real_index(tmp_path, index, json_mode, monkeypatch):
    sha = _sdist(tmp_path / "demo-1.0.tar.gz", {"a.txt": "one\ntwo\n"})
    _Index.files = {"demo-1.0.tar.gz": (tmp_path / "demo-1.0.tar.gz").read_bytes()}
    _Index.json_mode = json_mode
    cfg = _config(tmp_path, sha)
    (tmp_path / "patches/demo-1.0").mkdir(parents=True)
    (tmp_path / "patches/demo-1.0/0001-two.patch").write_text(
        "why: a test\n\n--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n")
    cache = tmp_path / "cache"
    # route pip's index configuration to the test index
    monkeypatch.setenv("PIP_INDEX_URL", index)
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    dirs = S.prepare(cfg, ["demo"], cache, log=lambda m: None)
    assert (dirs["demo"] / "a.txt").read_text() == "one\nTWO\n"
    assert S.blob_path(cache, cfg.sources["demo"]).is_file()
    # second time: everything is cached, the index is not asked again
    n = len(_Index.hits)
    assert S.prepare(cfg, ["demo"], cache, log=lambda m: None) == dirs
    assert len(_Index.hits) == n


def test_sha_mismatch_is_refused_and_nothing_is_cached(tmp_path, index):
    _sdist(tmp_path / "demo-1.0.tar.gz", {"a.txt": "x"})
    _Index.files = {"demo-1.0.tar.gz": (tmp_path / "demo-1.0.tar.gz").read_bytes()}
    cfg = _config(tmp_path, "0" * 64)
    with pytest.raises(S.SourceError, match="does not match|pins"):
        S.fetch(tmp_path / "cache", cfg.sources["demo"], [index], log=lambda m: None)
    assert not any((tmp_path / "cache").rglob("demo-1.0.tar.gz"))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_missing_file_names_every_index_and_the_fix(tmp_path, index):
    cfg = _config(tmp_path, "0" * 64)
    with pytest.raises(S.SourceError, match=r"cannot find demo-1.0.tar.gz[\s\S]*PIP_INDEX_URL"):
        S.fetch(tmp_path / "cache", cfg.sources["demo"], [index], log=lambda m: None)


def test_patch_that_does_not_apply_names_the_patch_and_leaves_no_tree(tmp_path):
    sha = _sdist(tmp_path / "demo-1.0.tar.gz", {"a.txt": "one\ntwo\n"})
    cfg = _config(tmp_path, sha)
    cache = tmp_path / "cache"
    S.add_blob(cache, cfg.sources["demo"], tmp_path / "demo-1.0.tar.gz")
    (tmp_path / "patches/demo-1.0").mkdir(parents=True)
    (tmp_path / "patches/demo-1.0/0007-stale.patch").write_text(
        "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-three\n+3\n")
    with pytest.raises(S.SourceError, match="0007-stale.patch does not apply"):
        S.prepare(cfg, ["demo"], cache, log=lambda m: None)
    assert not list((tmp_path / "src-root").iterdir())     # the temp dir was removed


def test_offline_with_empty_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("BLACKWHEEL_OFFLINE", "1")
    cfg = _config(tmp_path, "0" * 64)
    with pytest.raises(S.SourceError, match="BLACKWHEEL_OFFLINE"):
        S.fetch(tmp_path / "cache", cfg.sources["demo"], [], log=lambda m: None)


def test_add_blob_checks_the_pin(tmp_path):
    _sdist(tmp_path / "demo-1.0.tar.gz", {"a.txt": "x"})
    cfg = _config(tmp_path, "1" * 64)
    with pytest.raises(S.SourceError, match="does not match the pin"):
        S.add_blob(tmp_path / "cache", cfg.sources["demo"], tmp_path / "demo-1.0.tar.gz")


def test_tree_key_changes_with_patches(tmp_path):
    src = _config(tmp_path, "a" * 64).sources["demo"]
    p = tmp_path / "x.patch"
    p.write_text("one")
    k1 = S.tree_key(src, [p])
    p.write_text("two")
    assert S.tree_key(src, [p]) != k1 and S.tree_key(src, []) not in (k1,)


def test_cache_dir_and_pip_index_config(tmp_path):
    assert S.default_cache_dir({"BLACKWHEEL_CACHE": str(tmp_path)}) == tmp_path
    assert S.default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/blackwheel")
    idx = S.pip_indexes({"PIP_INDEX_URL": "http://a/simple", "PIP_EXTRA_INDEX_URL": "http://b/s http://c/s/",
                         "PIP_CONFIG_FILE": "/dev/null"})
    assert idx == ["http://a/simple/", "http://b/s/", "http://c/s/"]
    assert S.normalize("Flash_Attn") == "flash-attn"


def test_unpack_refuses_unsafe_members(tmp_path):
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("pkg/../../escape.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(S.SourceError, match="unsafe path"):
        S.unpack(tmp_path / "evil.tar.gz", tmp_path / "out")


def test_bundle_holds_only_what_the_build_needs_and_restores_offline(tmp_path, monkeypatch):
    sha = _sdist(tmp_path / "demo-1.0.tar.gz", {"csrc/k.cu": "kernel", "docs/big.md": "docs"})
    cfg = _config(tmp_path, sha)
    cfg.sources["demo"] = Source(**{**cfg.sources["demo"].__dict__, "bundle": ("csrc/",)})
    cache = tmp_path / "cache"
    S.add_blob(cache, cfg.sources["demo"], tmp_path / "demo-1.0.tar.gz")
    S.write_bundle(cfg, ["demo"], cache, tmp_path / "b.tar.gz")
    with tarfile.open(tmp_path / "b.tar.gz") as tf:
        names = tf.getnames()
        assert any(n.endswith("csrc/k.cu") for n in names)
        assert not any("docs/big.md" in n for n in names)
        other = tmp_path / "other-cache"
        tf.extractall(other, filter="data")
    monkeypatch.setenv("BLACKWHEEL_OFFLINE", "1")     # the GPU host: no index, no blob
    dirs = S.prepare(cfg, ["demo"], other, log=lambda m: None)
    assert (dirs["demo"] / "csrc/k.cu").read_text() == "kernel"


def test_stage_tree_is_content_addressed_and_shared_by_checkouts(tmp_path):
    """Two checkouts with the same csrc/ stage to the same path under the source root
    (the real path nvcc hashes into internal symbol names); an edit gives a new path."""
    from blackwheel_factory.sources import fetch as S
    cache = tmp_path / "src-root"
    for co in ("checkout-a", "other/checkout-b"):
        (tmp_path / co / "csrc" / "fam").mkdir(parents=True)
        (tmp_path / co / "csrc" / "fam" / "entry.cu").write_text("__global__ void k() {}\n")
    a = S.stage_tree(tmp_path / "checkout-a" / "csrc", cache, "blackwheel-csrc", log=lambda m: None)
    b = S.stage_tree(tmp_path / "other/checkout-b" / "csrc", cache, "blackwheel-csrc", log=lambda m: None)
    assert a == b and (a / "fam" / "entry.cu").read_text() == "__global__ void k() {}\n"
    assert sorted(p.name for p in cache.iterdir()) == [a.name]   # no temp dirs left
    (tmp_path / "checkout-a" / "csrc" / "fam" / "entry.cu").write_text("// edited\n")
    c = S.stage_tree(tmp_path / "checkout-a" / "csrc", cache, "blackwheel-csrc", log=lambda m: None)
    assert c != a and (c / "fam" / "entry.cu").read_text() == "// edited\n"
    assert (a / "fam" / "entry.cu").read_text() == "__global__ void k() {}\n"   # old copy untouched


# ------------------------------------------------------------------ cache integrity

def _prepared(tmp_path, files=None, patch=True):
    sha = _sdist(tmp_path / "demo-1.0.tar.gz", files or {"csrc/k.cu": "kernel\n", "a.txt": "one\ntwo\n"})
    cfg = _config(tmp_path, sha)
    if patch:
        (tmp_path / "patches/demo-1.0").mkdir(parents=True, exist_ok=True)
        (tmp_path / "patches/demo-1.0/0001-two.patch").write_text(
            "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n")
    cache = tmp_path / "cache"
    S.add_blob(cache, cfg.sources["demo"], tmp_path / "demo-1.0.tar.gz")
    return cfg, cache


def test_an_edited_cached_tree_is_named_set_aside_and_recreated_offline(tmp_path, monkeypatch):
    cfg, cache = _prepared(tmp_path)
    tree = S.prepare(cfg, ["demo"], cache, log=lambda m: None)["demo"]
    assert (tree / "a.txt").read_text() == "one\nTWO\n"
    man = S.read_manifest(S.manifest_path(cache, tree.name))
    assert set(man["files"]) == {"csrc/k.cu", "a.txt"} and man["patches"]
    # the poisoning of issue 14: a line appended to a cached source that still compiles
    (tree / "csrc/k.cu").write_text("kernel\n// planted\n")
    (tree / "extra.h").write_text("#define X 1\n")
    monkeypatch.setenv("BLACKWHEEL_OFFLINE", "1")
    log: list[str] = []
    again = S.prepare(cfg, ["demo"], cache, log=log.append)["demo"]
    text = "\n".join(log)
    assert "changed: csrc/k.cu" in text and "added: extra.h" in text, text
    assert "will not be compiled" in text and "set aside" in text
    assert again == tree
    assert (tree / "csrc/k.cu").read_text() == "kernel\n" and not (tree / "extra.h").exists()
    assert (tree / "a.txt").read_text() == "one\nTWO\n"      # patches applied again
    aside = list((tree.parent / ".set-aside").iterdir())
    assert len(aside) == 1 and (aside[0] / "csrc/k.cu").read_text().endswith("// planted\n")
    # a clean tree is used as is: nothing logged, nothing set aside
    log.clear()
    S.prepare(cfg, ["demo"], cache, log=log.append)
    assert log == [] and len(list((tree.parent / ".set-aside").iterdir())) == 1


def test_a_deleted_file_is_reported_and_restored(tmp_path):
    cfg, cache = _prepared(tmp_path)
    tree = S.prepare(cfg, ["demo"], cache, log=lambda m: None)["demo"]
    (tree / "a.txt").unlink()
    log: list[str] = []
    S.prepare(cfg, ["demo"], cache, log=log.append)
    assert any("missing: a.txt" in m for m in log)
    assert (tree / "a.txt").read_text() == "one\nTWO\n"


def test_a_tree_without_our_manifest_is_proven_from_the_blob(tmp_path):
    """A tree someone else put at the canonical path (another user, an older cache):
    unpacked from our blob and compared before use; a poisoned one is set aside."""
    cfg, cache = _prepared(tmp_path)
    tree = S.prepare(cfg, ["demo"], cache, log=lambda m: None)["demo"]
    S.manifest_path(cache, tree.name).unlink()
    log: list[str] = []
    assert S.prepare(cfg, ["demo"], cache, log=log.append)["demo"] == tree
    assert not any("set aside" in m for m in log)           # the honest tree is kept
    S.manifest_path(cache, tree.name).unlink()
    (tree / "csrc/k.cu").write_text("evil\n")
    S.prepare(cfg, ["demo"], cache, log=log.append)
    assert any("changed: csrc/k.cu" in m for m in log)
    assert (tree / "csrc/k.cu").read_text() == "kernel\n"


def test_an_edited_tree_without_the_blob_offline_is_refused(tmp_path, monkeypatch):
    cfg, cache = _prepared(tmp_path)
    tree = S.prepare(cfg, ["demo"], cache, log=lambda m: None)["demo"]
    S.blob_path(cache, cfg.sources["demo"]).unlink()
    (tree / "csrc/k.cu").write_text("evil\n")
    monkeypatch.setenv("BLACKWHEEL_OFFLINE", "1")
    log: list[str] = []
    with pytest.raises(S.SourceError, match="BLACKWHEEL_OFFLINE"):
        S.prepare(cfg, ["demo"], cache, log=log.append)
    assert any("changed: csrc/k.cu" in m for m in log)
    assert not tree.exists()                    # never left in place to be compiled


def test_a_tampered_bundle_is_refused(tmp_path, monkeypatch):
    cfg, cache = _prepared(tmp_path)
    S.write_bundle(cfg, ["demo"], cache, tmp_path / "b.tar.gz")
    other = tmp_path / "host-cache"
    with tarfile.open(tmp_path / "b.tar.gz") as tf:
        tf.extractall(other, filter="data")
    monkeypatch.setenv("BLACKWHEEL_OFFLINE", "1")
    monkeypatch.setenv("BLACKWHEEL_SRC_ROOT", str(tmp_path / "host-root"))
    bundled = next((other / "trees").iterdir())
    (bundled / "csrc/k.cu").write_text("evil\n")
    with pytest.raises(S.SourceError, match="differs from its manifest"):
        S.prepare(cfg, ["demo"], other, log=lambda m: None)


def test_the_staged_csrc_copy_is_checked_against_the_checkout(tmp_path):
    (tmp_path / "co/csrc/fam").mkdir(parents=True)
    (tmp_path / "co/csrc/fam/entry.cu").write_text("ok\n")
    root = tmp_path / "src-root"
    staged = S.stage_tree(tmp_path / "co/csrc", root, log=lambda m: None)
    (staged / "fam/entry.cu").write_text("ok\n// planted\n")
    log: list[str] = []
    assert S.stage_tree(tmp_path / "co/csrc", root, log=log.append) == staged
    assert any("changed: fam/entry.cu" in m for m in log)
    assert (staged / "fam/entry.cu").read_text() == "ok\n"


def _prepare_in_child(args):
    cfg_root, sha, cache = args
    import os as _os
    _os.environ["BLACKWHEEL_OFFLINE"] = "1"
    cfg = _config(Path(cfg_root), sha)
    return str(S.prepare(cfg, ["demo"], Path(cache), log=lambda m: None)["demo"])


def test_concurrent_builds_sharing_a_cache_agree(tmp_path):
    import multiprocessing as mp
    cfg, cache = _prepared(tmp_path, files={f"csrc/f{i}.cu": f"k{i}\n" * 2000 for i in range(200)},
                           patch=False)
    sha = cfg.sources["demo"].sha256
    with mp.get_context("fork").Pool(4) as pool:
        paths = pool.map(_prepare_in_child, [(str(tmp_path), sha, str(cache))] * 8)
    assert len(set(paths)) == 1
    tree = Path(paths[0])
    assert sorted(p.name for p in tree.parent.iterdir()) == [tree.name]    # no temp dirs left
    assert S.compare_tree(S.file_digests(tree),
                          S.read_manifest(S.manifest_path(cache, tree.name))["files"]) == []


def test_sources_command_reports_the_edited_file(tmp_path, monkeypatch):
    """`python -m blackwheel_factory sources`, offline, the same prepare() a build calls."""
    import os
    import subprocess
    import sys
    cfg, cache = _prepared(tmp_path)
    tree = S.prepare(cfg, ["demo"], cache, log=lambda m: None)["demo"]
    (tree / "csrc/k.cu").write_text("kernel\n// planted\n")
    toml = (REPO / "blackwheel.toml").read_text()
    (tmp_path / "blackwheel.toml").write_text(toml + f'''
[[source]]
name = "demo"
dist = "demo"
version = "1.0"
filename = "demo-1.0.tar.gz"
sha256 = "{cfg.sources['demo'].sha256}"
why = "test"
''')
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"), BLACKWHEEL_OFFLINE="1",
               BLACKWHEEL_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-m", "blackwheel_factory", "sources", "demo",
                        "--config", str(tmp_path / "blackwheel.toml")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "changed: csrc/k.cu" in r.stdout and f"demo: {tree}" in r.stdout
    assert (tree / "csrc/k.cu").read_text() == "kernel\n"


def test_an_edit_that_keeps_size_and_mtime_is_still_found(tmp_path):
    """The stat shortcut (unchanged lstat: no re-hash) includes ctime, which a user
    cannot set back: same size, mtime restored, still detected."""
    import os
    import time
    cfg, cache = _prepared(tmp_path)
    tree = S.prepare(cfg, ["demo"], cache, log=lambda m: None)["demo"]
    S.prepare(cfg, ["demo"], cache, log=lambda m: None)           # stat cache filled
    f = tree / "csrc/k.cu"
    st = f.stat()
    time.sleep(0.05)
    f.write_text("KERNEL\n")                                     # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    log: list[str] = []
    S.prepare(cfg, ["demo"], cache, log=log.append)
    assert any("changed: csrc/k.cu" in m for m in log), log
    assert f.read_text() == "kernel\n"
