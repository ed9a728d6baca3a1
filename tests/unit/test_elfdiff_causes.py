"""`verify --against` names the likely cause of each difference (issue 14): a path, a
blanked RPATH, nvcc's internal-symbol hash, a timestamp, a tool version, an input."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from blackwheel_factory.checks import elfdiff as E


def test_causes_from_differing_strings():
    a = b"\0/tmp/ci-a/src/csrc/k.cu\0_INTERNAL_1234abcd_4_k_cu_5f3e\0"
    b = b"\0/home/bob/blackwheel/csrc/k.cu\0_INTERNAL_9876fedc_4_k_cu_5f3e\0"
    causes = E.likely_causes(".rodata", a, b)
    assert any(c.startswith("a path: /home/bob/blackwheel/csrc/k.cu, /tmp/ci-a/src/csrc/k.cu")
               for c in causes), causes
    assert any("internal-symbol hash" in c for c in causes)
    assert any(c.startswith("a timestamp") for c in E.likely_causes(".rodata", b"Nov  1 2026\0",
                                                                      b"Dec  2 2026\0"))
    assert any(c.startswith("a tool version: GCC: (Debian 12.2.0-14) 12.2.0") for c in
               E.likely_causes(".comment", b"GCC: (Debian 12.2.0-14) 12.2.0\0", b"GCC: (GCC) 13.3.0\0"))
    assert any("tmpxft" in c for c in E.likely_causes(".strtab", b"tmpxft_0001_k.cpp\0", b"tmpxft_0002_k.cpp\0"))
    assert E.likely_causes(".text", b"\x01\x02", b"\x03\x04") == []


def test_build_record_differences_are_named_as_inputs():
    a = {"toolchain": {"cmake": "4.4.5"}, "sources": [{"sha256": "a"}], "archs": ["12.0a"]}
    b = {"toolchain": {"cmake": "4.4.4"}, "sources": [{"sha256": "a"}], "archs": ["12.0a"]}
    out = E.build_record_causes(json.dumps(a).encode(), json.dumps(b).encode())
    assert out == ["likely cause: a tool version: toolchain.cmake '4.4.4' -> '4.4.5'"]


def _so(tmp: Path, rpath: str) -> bytes:
    """A tiny .so with a build-tree RPATH, then blanked in place as CMake's install does."""
    gcc = shutil.which("gcc") or pytest.skip("no gcc")
    src = tmp / "x.c"
    src.write_text("int bw_x(void) { return 1; }\n")
    out = tmp / f"x{len(rpath)}.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-Wl,--build-id=none", f"-Wl,-rpath,{rpath}",
                    "-o", str(out), str(src)], check=True)
    data = bytearray(out.read_bytes())
    i = data.find(rpath.encode())
    data[i:i + len(rpath)] = b"\0" * len(rpath)
    return bytes(data)


def test_a_blanked_rpath_of_another_length_is_named(tmp_path):
    a = _so(tmp_path, "/tmp/short/build")
    b = _so(tmp_path, "/tmp/a-much-longer-checkout-path/build")
    lines = E.diff_elf(a, b)
    text = "\n".join(lines)
    assert "section .dynstr differs" in text
    assert "likely cause: a blanked RPATH" in text and "CMAKE_SKIP_BUILD_RPATH" in text, text
