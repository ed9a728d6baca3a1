"""`python -m blackwheel_factory repair` on a tiny wheel whose .so needs libcudart.so.13."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_verify_build import DATA, SM90, SM120, build_info, cli, compile_so, make_wheel  # noqa: E402
from blackwheel_factory.packaging import repair  # noqa: E402

pytestmark = pytest.mark.build

pytest.importorskip("auditwheel")


def needed(so: Path) -> list[str]:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    with open(so, "rb") as f:
        for s in ELFFile(f).iter_sections():
            if isinstance(s, DynamicSection):
                return [t.needed for t in s.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    return []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("repair")
    so = compile_so(DATA / "verify_tiny.cu", d / "t.so", SM120 + SM90, link_cudart=True)
    assert "libcudart.so.13" in needed(so)
    return make_wheel(d / "dist", {"_scaled_mm.abi3.so": so},
                      build_info({"scaled_mm": (["12.0a", "9.0a"], "_scaled_mm.abi3.so")}))


def test_repair_tags_manylinux_without_vendoring_cuda(wheel, tmp_path):
    r = cli("repair", str(wheel), "-w", str(tmp_path / "out"))
    assert r.returncode == 0, r.stdout + r.stderr
    (repaired,) = (tmp_path / "out").glob("*.whl")
    plat = repair.load_policy().plat
    assert repaired.name == f"blackwheel-0.1.0-cp39-abi3-{plat}.whl"
    assert f"platform tag: {plat}" in r.stdout
    names = zipfile.ZipFile(repaired).namelist()
    assert not [n for n in names if ".libs/" in n], names
    assert not [n for n in names if "cudart" in n or "libtorch" in n]
    show = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(repaired)],
                          capture_output=True, text=True)
    assert show.returncode == 0
    text = " ".join(show.stdout.split())
    assert text.startswith(repaired.name)                          # the tag, as auditwheel shows it
    # auditwheel show ignores --exclude: libcudart stays "external", so its verdict is
    # linux_x86_64, while the symbol versions allow an older manylinux than 2_28
    assert 'constrains the platform tag to "manylinux_' in text
    assert "symbol versions allow manylinux_" in r.stdout
    assert "external by policy (not vendored): libcudart.so.13" in r.stdout
    # still depends on the runtime it did not vendor
    so = tmp_path / "x.so"
    so.write_bytes(zipfile.ZipFile(repaired).read("blackwheel/_scaled_mm.abi3.so"))
    assert "libcudart.so.13" in needed(so)
    # and verify still passes on the repaired wheel
    assert cli("verify", str(repaired)).returncode == 0


def test_repair_is_reproducible(wheel, tmp_path):
    shas = []
    for i in range(2):
        out = tmp_path / f"o{i}"
        r = cli("repair", str(wheel), "-w", str(out))
        assert r.returncode == 0, r.stderr
        (w,) = out.glob("*.whl")
        shas.append(hashlib.sha256(w.read_bytes()).hexdigest())
    assert shas[0] == shas[1]


def test_repair_rejects_non_wheel(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("")
    r = cli("repair", str(p), "-w", str(tmp_path))
    assert r.returncode == 1 and "not a wheel file" in r.stderr
