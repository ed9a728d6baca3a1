"""The pure parts of the image build: platform tags, buildah argv, the lock in the image,
failure diagnosis; and compare/scan over small real layer tars in both export layouts."""
from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
from blackwheel_factory.image import layers as L  # noqa: E402
from blackwheel_factory.image import plan as P  # noqa: E402


def test_platform_tags_cover_every_manylinux_up_to_the_glibc_like_pip():
    tags = P.platform_tags((2, 36))
    assert tags[0] == "manylinux_2_36_x86_64" and tags[-1] == "linux_x86_64"
    for t in ("manylinux_2_27_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64",
              "manylinux2010_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64"):
        assert t in tags
    assert "manylinux_2_37_x86_64" not in tags
    assert tags.index("manylinux_2_17_x86_64") + 1 == tags.index("manylinux2014_x86_64")
    with pytest.raises(P.ImageError):
        P.platform_tags((2, 3))


def test_probe_and_driver_choice():
    assert P.parse_probe("3.11 glibc 2.36\n") == ("3.11", (2, 36))
    with pytest.raises(P.ImageError, match="--python-version and --glibc"):
        P.parse_probe("sh: python3: not found")
    assert P.choose_driver("auto", "nodev\tproc\nnodev\toverlay\n") == "overlay"
    assert P.choose_driver("auto", "nodev\tproc\n\text4\n") == "vfs"
    assert P.choose_driver("vfs", "nodev\toverlay\n") == "vfs"
    with pytest.raises(P.ImageError):
        P.choose_driver("btrfs", "")


def test_bud_argv_is_reproducible_and_passes_the_index_only_as_a_secret(tmp_path):
    plan = P.BudPlan(Path("/r/ci/Dockerfile.base"), tmp_path, "localhost/b:1", "localhost/os:1",
                     1793491200, tmp_path / "s" / "index_url")
    argv = plan.argv()
    assert argv[:2] == ["buildah", "bud"]
    assert ["--timestamp", "1793491200"] == argv[argv.index("--timestamp"):argv.index("--timestamp") + 2]
    assert "SOURCE_DATE_EPOCH=1793491200" in argv and "BASE_IMAGE=localhost/os:1" in argv
    assert f"id=index_url,src={tmp_path / 's' / 'index_url'}" in argv
    assert "--layers=false" in argv and "--pull=false" in argv and "chroot" in argv
    assert not any("INDEX_URL=" in a for a in argv)
    env = P.buildah_env({"PIP_INDEX_URL": "x", "TWINE_PASSWORD": "y", "BLACKWHEEL_INDEX_URL": "z",
                         "PATH": "/bin"}, Path("/s/storage.conf"))
    assert env == {"PATH": "/bin", "BUILDAH_ISOLATION": "chroot", "CONTAINERS_STORAGE_CONF": "/s/storage.conf"}
    assert 'driver = "vfs"' in P.storage_conf("vfs", Path("/s"))


LOCK = """# Written by `python -m blackwheel constraints`; install with
# resolved from http://127.0.0.1:40123/simple/
blackwheel==0.1.0+cu130.sm120a \\
    --hash=sha256:aa
torch==2.14.1 \\
    --hash=sha256:bb
"""


def test_the_lock_in_the_image_does_not_depend_on_where_it_was_resolved():
    a = P.image_lock_text(LOCK)
    b = P.image_lock_text(LOCK.replace("40123", "51234"))
    assert a == b and "127.0.0.1" not in a and "--hash=sha256:bb" in a
    with pytest.raises(P.ImageError, match="constraints"):
        P.image_lock_text("torch==2.14.1\n")
    assert P.pinned(LOCK) == {"blackwheel": "0.1.0+cu130.sm120a", "torch": "2.14.1"}
    assert P.lock_torch_warning(LOCK, "2.14.1+cu130") is None
    w = P.lock_torch_warning(LOCK.replace("torch==2.14.1", "torch==2.13.0+cpu"), "2.14.1+cu130")
    assert "torch==2.13.0+cpu" in w and "import guard" in w
    assert "+cpu" in P.lock_torch_warning(LOCK.replace("torch==2.14.1", "torch==2.14.1+cpu"), "2.14.1+cu130")


def test_failures_are_explained():
    assert "tampered" in P.diagnose("ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.")
    assert "import guard" in P.diagnose("blackwheel.TorchMismatchError: blackwheel was built for torch ...")
    assert "not on the index" in P.diagnose("ERROR: No matching distribution found for torch==2.14.1")
    assert P.diagnose("something else") is None
    with pytest.raises(P.ImageError, match="kernel pack"):
        P.check_wheels(["flash_attn-2.8.3.post2-cp39-abi3-manylinux_2_34_x86_64.whl"])
    P.check_wheels(["blackwheel-0.1.0-cp39-abi3-manylinux_2_28_x86_64.whl"])
    assert P.default_tag(["blackwheel-0.1.0+cu130.sm120a-cp39-abi3-x.whl"], "2.14.1+cu130") \
        == "localhost/blackwheel-base:0.1.0-cu130.sm120a-torch2.14.1-cu130"


# --------------------------------------------------------------------------- layers

def _tar(files: dict[str, tuple[bytes, int, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, (data, mode, mtime) in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, mtime
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _export(d: Path, layers: list[bytes], config: dict, oci: bool = False) -> Path:
    d.mkdir(parents=True)
    blobs = {}

    def put(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        if oci:
            (d / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            (d / "blobs" / "sha256" / h).write_bytes(data)
        else:
            (d / h).write_bytes(data)
        blobs[h] = data
        return "sha256:" + h
    cfg = json.dumps(config).encode()
    manifest = {"schemaVersion": 2, "config": {"digest": put(cfg), "size": len(cfg)},
                "layers": [{"digest": put(l), "size": len(l)} for l in layers]}
    m = json.dumps(manifest).encode()
    if oci:
        (d / "index.json").write_text(json.dumps({"manifests": [{"digest": put(m)}]}))
    else:
        (d / "manifest.json").write_bytes(m)
    return d


def test_compare_names_the_layer_and_the_files_that_differ(tmp_path):
    os_layer = _tar({"etc/os-release": (b"bookworm\n", 0o644, 0)})
    a = _tar({"opt/venv/x.py": (b"x = 1\n", 0o644, 100), "opt/venv/x.pyc": (b"pyc-a", 0o644, 100)})
    b = _tar({"opt/venv/x.py": (b"x = 1\n", 0o644, 100), "opt/venv/x.pyc": (b"pyc-b", 0o644, 100),
              "tmp/stray": (b"", 0o755, 100)})
    cfg = {"config": {"Env": ["PATH=/x"]}, "history": [{"created": "2026-11-01T00:00:00Z"}]}
    ea = L.read_export(_export(tmp_path / "a", [os_layer, a], cfg))
    eb = L.read_export(_export(tmp_path / "b", [os_layer, b], dict(cfg, history=[{"created": "2026-12-07T03:00:00Z"}]),
                               oci=True))
    assert L.compare(ea, ea) == []
    text = "\n".join(L.compare(ea, eb))
    assert "layer 0: identical" in text
    assert "layer 1:" in text and "1 files differ" in text and "opt/venv/x.pyc: size 5 != 5" not in text
    assert "opt/venv/x.pyc: sha256" in text and "only in B: tmp/stray" in text
    assert ".history[0].created" in text


def test_scan_finds_a_secret_anywhere_even_across_read_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "_CHUNK", 64)
    secret = b"Sup3r-Secret-Pa55"
    clean = _tar({"a": (b"nothing here" * 50, 0o644, 0)})
    dirty = _tar({"b": (b"." * 60 + b"pip.conf: https://u:" + secret + b"@idx/" + b"." * 100, 0o644, 0)})
    ex = L.read_export(_export(tmp_path / "e", [clean, dirty], {"history": [{"created_by": "RUN pip"}]}))
    found = L.scan(ex, [secret])
    assert [label.split()[0:2] for label, _ in found] == [["layer", "1"]]
    ex2 = L.read_export(_export(tmp_path / "f", [clean], {"history": [{"created_by": "ARG U=" + secret.decode()}]}))
    assert [label.split()[0] for label, _ in L.scan(ex2, [secret])] == ["config"]
    assert L.scan(ex2, [b"absent-secret"]) == []
