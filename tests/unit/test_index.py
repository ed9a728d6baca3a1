"""simple_index (pure: parse, render, decide) and `blackwheel index` (static tree, atomic)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from publish_helpers import make_wheel, run_cli, sha256  # noqa: E402

from blackwheel_factory.publishing import index as ix  # noqa: E402
from blackwheel_factory.publishing import simple_index as si  # noqa: E402

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_project_of_normalizes_and_rejects_bad_names():
    assert si.project_of("Black_Wheel-0.1.0-cp39-abi3-manylinux_2_28_x86_64.whl") == "black-wheel"
    assert si.project_of("torch-2.14.1+cu130-cp312-cp312-manylinux_2_28_x86_64.whl") == "torch"
    assert si.project_of("foo.bar-1.0.tar.gz") == "foo-bar"
    with pytest.raises(si.SimpleIndexError, match="not a valid distribution file name"):
        si.project_of("blackwheel.whl")
    with pytest.raises(si.SimpleIndexError, match="not a wheel"):
        si.project_of("notes.txt")


def test_html_roundtrip_keeps_hash_and_requires_python():
    d = [si.LocalDist("blackwheel-0.1.0-py3-none-any.whl", SHA_A, ">=3.10,<4"),
         si.LocalDist("blackwheel-0.0.9-py3-none-any.whl", SHA_B, None)]
    page = si.render_project_html("BlackWheel", d, "../../")
    assert 'data-requires-python="&gt;=3.10,&lt;4"' in page
    assert f'href="../../blackwheel-0.1.0-py3-none-any.whl#sha256={SHA_A}"' in page
    files = si.parse_project_html(page, "https://idx.example/simple/blackwheel/")
    f = si.find_file(files, "blackwheel-0.1.0-py3-none-any.whl")
    assert f.url == "https://idx.example/blackwheel-0.1.0-py3-none-any.whl"
    assert f.sha256 == SHA_A and f.requires_python == ">=3.10,<4"
    assert si.find_file(files, "blackwheel-0.0.9-py3-none-any.whl").requires_python is None


def test_json_roundtrip_and_content_type_dispatch():
    d = [si.LocalDist("blackwheel-0.1.0-py3-none-any.whl", SHA_A, ">=3.10")]
    doc = si.render_project_json("blackwheel", d, "../../")
    data = json.loads(doc)
    assert data["meta"]["api-version"] == "1.0" and data["name"] == "blackwheel"
    files = si.parse_project_page(doc, "application/vnd.pypi.simple.v1+json", "http://h/simple/blackwheel/")
    assert files[0].sha256 == SHA_A and files[0].requires_python == ">=3.10"
    assert files[0].url == "http://h/blackwheel-0.1.0-py3-none-any.whl"
    html = si.render_project_html("blackwheel", d, "../../")
    assert si.parse_project_page(html, "text/html", "http://h/simple/blackwheel/") == files


def test_parse_html_from_other_servers():
    page = ('<a href="/packages/x-1.0-py3-none-any.whl#md5=abc" data-yanked="">x</a>'
            '<a href="https://cdn.example/x-1.1-py3-none-any.whl#sha256=' + SHA_B.upper() + '">x</a>')
    files = si.parse_project_html(page, "http://h:8080/simple/x/")
    assert files[0].url == "http://h:8080/packages/x-1.0-py3-none-any.whl"
    assert files[0].sha256 is None and files[0].hashes == {"md5": "abc"} and files[0].yanked is True
    assert files[1].sha256 == SHA_B


def test_render_refuses_bad_sha():
    with pytest.raises(si.SimpleIndexError, match="64 lowercase hex"):
        si.render_project_html("x", [si.LocalDist("x-1.0-py3-none-any.whl", "abc")], "")


@pytest.mark.parametrize("remote,downloaded,action", [
    (None, None, si.UPLOAD),
    (si.IndexFile("f.whl", "u", {"sha256": SHA_A}), None, si.NOOP),
    (si.IndexFile("f.whl", "u", {"sha256": SHA_B}), None, si.CONFLICT),
    (si.IndexFile("f.whl", "u", {"md5": "x"}), None, si.DOWNLOAD),
    (si.IndexFile("f.whl", "u", {}), SHA_A, si.NOOP),
    (si.IndexFile("f.whl", "u", {"md5": "x"}), SHA_B, si.CONFLICT),
])
def test_decide(remote, downloaded, action):
    d = si.decide("f.whl", SHA_A.upper(), remote, downloaded)
    assert d.action == action
    if action == si.CONFLICT:
        assert "immutable" in d.reason and SHA_A in d.reason and SHA_B in d.reason


def test_index_command_writes_both_forms(tmp_path):
    w = make_wheel(tmp_path / "dist")
    other = tmp_path / "dist" / "other_pkg-2.0-py3-none-any.whl"
    import zipfile
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("other_pkg-2.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: other_pkg\nVersion: 2.0\n")
    r = run_cli("index", str(tmp_path / "dist"))
    assert r.returncode == 0, r.stderr
    simple = tmp_path / "dist" / "simple"
    root = json.loads((simple / "index.json").read_text())
    assert [p["name"] for p in root["projects"]] == ["blackwheel", "other-pkg"]
    assert 'href="other-pkg/"' in (simple / "index.html").read_text()
    page = (simple / "blackwheel" / "index.html").read_text()
    assert f"#sha256={sha256(w)}" in page and 'data-requires-python="&gt;=3.10"' in page
    files = si.parse_project_json((simple / "blackwheel" / "index.json").read_text(),
                                  (simple / "blackwheel").as_uri() + "/")
    assert files[0].url == w.as_uri() and files[0].sha256 == sha256(w)
    # no temp dirs left behind
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == sorted([w.name, other.name, "simple"])


def test_index_rewrite_is_a_swap_and_drops_removed_files(tmp_path):
    d = tmp_path / "dist"
    w = make_wheel(d)
    out, _ = ix.build_index(d)
    stale = out / "stale-marker"
    stale.write_text("old tree")
    w2 = make_wheel(d, version="0.2.0")
    w.unlink()
    ix.build_index(d)
    assert not stale.exists()
    page = (out / "blackwheel" / "index.html").read_text()
    assert w2.name in page and w.name not in page
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []


def test_index_bad_input_names_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli("index", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no .whl" in r.stderr and "copy the wheels there" in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "junk.whl").write_bytes(b"not a zip")
    r = run_cli("index", str(tmp_path / "bad"))
    assert r.returncode == 2 and "junk.whl" in r.stderr


def test_pip_installs_from_the_static_index(tmp_path):
    """pip itself accepts the tree: download by name through file:// with hash checking."""
    d = tmp_path / "dist"
    w = make_wheel(d, requires=[])
    ix.build_index(d)
    req = tmp_path / "req.txt"
    req.write_text(f"blackwheel==0.1.0 --hash=sha256:{sha256(w)}\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--isolated", "download", "--no-deps",
                        "--require-hashes", "--index-url", (d / "simple").as_uri() + "/",
                        "-r", str(req), "-d", str(tmp_path / "got")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sha256(tmp_path / "got" / w.name) == sha256(w)


def test_index_swap_without_renameat2(tmp_path, monkeypatch):
    d = tmp_path / "dist"
    make_wheel(d)
    out, _ = ix.build_index(d)
    (out / "stale-marker").write_text("old")
    monkeypatch.setattr(ix, "_exchange", lambda a, b: False)
    make_wheel(d, version="0.2.0")
    ix.build_index(d)
    assert not (out / "stale-marker").exists() and "0.2.0" in (out / "blackwheel" / "index.html").read_text()
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []
