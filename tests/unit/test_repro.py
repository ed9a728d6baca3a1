"""Deterministic wheel normalisation (repro.py) and the wheel diff (elfdiff.py)."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from blackwheel_factory.checks import elfdiff
from blackwheel_factory.packaging import repro

DI = "demo-1.0.dist-info"


def make_wheel(path: Path, files: dict[str, bytes], date=(2020, 5, 6, 7, 8, 10), mode=0o664,
               reverse=False) -> Path:
    names = sorted(files, reverse=reverse)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n in names:
            info = zipfile.ZipInfo(n, date_time=date)
            info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, files[n], compresslevel=1)
    return path


FILES = {
    "demo/__init__.py": b"x = 1\n",
    "demo/_k.abi3.so": b"\x7fELF" + b"\0" * 60,
    f"{DI}/METADATA": b"Name: demo\nVersion: 1.0\n",
    f"{DI}/WHEEL": b"Wheel-Version: 1.0\n",
    f"{DI}/RECORD": b"stale\n",
}


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_normalising_twice_gives_the_same_bytes(tmp_path):
    w = make_wheel(tmp_path / "a.whl", FILES)
    one = repro.normalise_wheel(w, tmp_path / "one.whl", epoch=1793491200)
    two = repro.normalise_wheel(one, tmp_path / "two.whl", epoch=1793491200)
    assert sha(one) == sha(two)


def test_order_timestamps_and_modes_do_not_matter(tmp_path):
    a = make_wheel(tmp_path / "a.whl", FILES)
    b = make_wheel(tmp_path / "b.whl", FILES, date=(2024, 1, 1, 0, 0, 0), mode=0o600, reverse=True)
    assert sha(a) != sha(b)
    na = repro.normalise_wheel(a, tmp_path / "na.whl", epoch=1793491200)
    nb = repro.normalise_wheel(b, tmp_path / "nb.whl", epoch=1793491200)
    assert sha(na) == sha(nb)
    # ... but the epoch does
    nc = repro.normalise_wheel(a, tmp_path / "nc.whl", epoch=1700000000)
    assert sha(nc) != sha(na)


def test_entries_record_and_attributes(tmp_path):
    w = repro.normalise_wheel(make_wheel(tmp_path / "a.whl", FILES), tmp_path / "n.whl", epoch=1793491200)
    with zipfile.ZipFile(w) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        assert names[-1] == f"{DI}/RECORD"
        assert names[:2] == ["demo/__init__.py", "demo/_k.abi3.so"]
        assert {i.date_time for i in infos} == {(2026, 11, 1, 0, 0, 0)}
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in infos}
        assert modes["demo/_k.abi3.so"] == 0o755 and modes["demo/__init__.py"] == 0o644
        record = z.read(f"{DI}/RECORD").decode().splitlines()
        assert f"{DI}/RECORD,," in record
        line = next(x for x in record if x.startswith("demo/__init__.py,"))
        assert line == "demo/__init__.py," + repro.record_hash(b"x = 1\n") + ",6"


def test_epoch_is_clamped_to_zip_range():
    assert repro.zip_date_time(0) == (1980, 1, 1, 0, 0, 0)


def test_two_dist_info_dirs_are_rejected(tmp_path):
    w = make_wheel(tmp_path / "a.whl", dict(FILES, **{"other-1.dist-info/METADATA": b""}))
    with pytest.raises(repro.ReproError, match="exactly one"):
        repro.normalise_wheel(w, tmp_path / "n.whl", epoch=1)


def test_not_a_wheel_names_the_fix(tmp_path):
    p = tmp_path / "x.whl"
    p.write_text("nope")
    with pytest.raises(repro.ReproError, match="pass the path of a .whl"):
        repro.normalise_wheel(p, epoch=1)


def test_epoch_resolution():
    assert repro.resolve_epoch(5) == 5
    assert repro.resolve_epoch(None, {"SOURCE_DATE_EPOCH": "7"}) == 7
    with pytest.raises(repro.ReproError, match="integer"):
        repro.resolve_epoch(None, {"SOURCE_DATE_EPOCH": "soon"})


def test_failed_write_leaves_no_file(tmp_path):
    class Boom(repro.Member):
        @property
        def data(self):  # noqa: D401
            raise RuntimeError("boom")

    with pytest.raises(Exception):
        repro.write_zip(tmp_path / "x.whl", [Boom("a", b"", False)], 1)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ elfdiff
def entries(files: dict[str, bytes], date=(2026, 11, 1, 0, 0, 0)) -> dict:
    return {n: elfdiff.Entry(d, date, 0o644, i) for i, (n, d) in enumerate(sorted(files.items()))}


def test_diff_names_members_and_text_lines():
    a = entries(dict(FILES, **{"demo/__init__.py": b"x = 2\n", "demo/new.py": b""}))
    b = entries(FILES)
    diffs = {d.name: d for d in elfdiff.diff_members(a, b)}
    assert diffs["demo/new.py"].kind == "only-in-wheel"
    d = diffs["demo/__init__.py"]
    assert d.kind == "content" and "-x = 1" in d.detail and "+x = 2" in d.detail
    assert "demo/_k.abi3.so" not in diffs


def test_diff_reports_zip_metadata_only_changes():
    a = entries(FILES, date=(2026, 11, 1, 0, 0, 0))
    b = entries(FILES, date=(2020, 1, 1, 0, 0, 0))
    kinds = {d.kind for d in elfdiff.diff_members(a, b)}
    assert kinds == {"zip-metadata"}


def test_elf_diff_names_sections():
    import sys
    exe = Path(sys.executable).resolve().read_bytes()
    if exe[:4] != b"\x7fELF":
        pytest.skip("python is not an ELF file here")
    secs = elfdiff.elf_sections(exe)
    name, (size, _) = next((n, s) for n, s in secs.items() if n == ".rodata" or n == ".text")
    off = None
    from elftools.elf.elffile import ELFFile
    import io
    off = ELFFile(io.BytesIO(exe)).get_section_by_name(name)["sh_offset"]
    changed = bytearray(exe)
    changed[off + 16] ^= 0xFF
    lines = elfdiff.diff_elf(bytes(changed), exe)
    assert any(x.startswith(f"section {name} differs") for x in lines)
    assert not any(x.startswith("section .dynsym") for x in lines)


# ------------------------------------------------------------------- repair (pure parts)
from blackwheel_factory.packaging import repair  # noqa: E402


def test_repair_command_excludes_torch_and_cuda():
    pol = repair.load_policy()
    cmd = repair.repair_command("py", Path("w.whl"), Path("out"), pol)
    ex = [cmd[i + 1] for i, x in enumerate(cmd) if x == "--exclude"]
    for soname in ("libtorch_cuda.so", "libc10.so", "libc10_cuda.so", "libcudart.so.13", "libcuda.so.1",
                   "libcublas.so.13", "libcublasLt.so.13", "libnvrtc.so.13", "libtorch.so"):
        assert any(__import__("fnmatch").fnmatch(soname, p) for p in ex), soname
    assert cmd[cmd.index("--plat") + 1] == repair.load_policy().plat and "--only-plat" in cmd
    assert "--plat" not in repair.repair_command("py", Path("w.whl"), Path("o"), pol, plat="auto")


def test_vendored_detects_grafted_cuda():
    names = ["blackwheel/_x.so", "blackwheel.libs/libcudart-1a2b3c4d.so.13", "blackwheel.libs/libz-0a1b2c3d.so.1"]
    assert repair.vendored(names, repair.load_policy().exclude) == ["blackwheel.libs/libcudart-1a2b3c4d.so.13"]


def test_assess_show():
    pol = repair.load_policy()
    name = "blackwheel-0.1.0-cp39-abi3-manylinux_2_28_x86_64.whl"
    show = {"sym_tag": "manylinux_2_17_x86_64", "overall_tag": "linux_x86_64",
            "external_libs": {"libcudart.so.13": "/x"}}
    facts, errors = repair.assess_show(show, pol.exclude, name)
    assert errors == [] and any("libcudart.so.13" in f for f in facts)
    _, errors = repair.assess_show(dict(show, external_libs={"libfoo.so.1": "/x"}), pol.exclude, name)
    assert errors and "libfoo.so.1" in errors[0]
    _, errors = repair.assess_show(dict(show, sym_tag="manylinux_2_35_x86_64"), pol.exclude, name)
    assert errors and "--plat manylinux_2_35_x86_64" in errors[0]
    _, errors = repair.assess_show(show, pol.exclude, name.replace("manylinux_2_28", "linux"))
    assert errors and "no manylinux tag" in errors[0]


def test_bad_repair_policy(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("plat = 3\n")
    with pytest.raises(repair.RepairError, match="exclude"):
        repair.load_policy(p)


def test_record_is_csv_for_names_with_commas(tmp_path):
    """vLLM ships files named 'E=1,N=14336,...json': RECORD quotes them (CSV, PEP 376),
    so pip and auditwheel read the name whole (a bare comma split it: auditwheel show
    failed on the repaired vllm wheel with 'No such file ... configs/E=1')."""
    import csv
    name = "demo/configs/E=1,N=14336,device_name=X.json"
    w = repro.normalise_wheel(make_wheel(tmp_path / "a.whl", {**FILES, name: b"{}"}),
                              tmp_path / "n.whl", epoch=1793491200)
    with zipfile.ZipFile(w) as z:
        rows = list(csv.reader(z.read(f"{DI}/RECORD").decode().splitlines()))
    assert [name, repro.record_hash(b"{}"), "2"] in rows
    assert all(len(r) == 3 for r in rows)
