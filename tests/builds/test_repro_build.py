"""Byte-reproducible compiles with the flags of cmake/Reproducible.cmake, and
`verify --against` on real wheels."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_verify_build import (DATA, PY, ROOT, SM90, SM120, build_info, cli,  # noqa: E402
                               make_wheel, nvcc_bin)

pytestmark = pytest.mark.build

SOURCE = """#include <cassert>
__global__ void bw_k(float* y, int n) { assert(n >= 0); int i = threadIdx.x; if (i < n) y[i] *= 2.f; }
extern "C" const char* bw_where() { return __FILE__; }
"""


def cmake_flags(cwd: Path) -> tuple[list[str], list[str]]:
    """CUDA compile and link flags from blackwheel_reproducible_flag_lists, with
    CMAKE_SOURCE_DIR = cwd (cmake -P)."""
    cmake = shutil.which("cmake") or str(Path(sys.executable).parent / "cmake")
    script = cwd / "flags.cmake"
    script.write_text(f'include("{ROOT}/cmake/Reproducible.cmake")\n'
                      'blackwheel_reproducible_flag_lists(cu cx ln)\n'
                      'message("CUDA=${cu}")\nmessage("LINK=${ln}")\n')
    r = subprocess.run([cmake, "-P", str(script)], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("=", 1) for line in r.stderr.splitlines() if "=" in line)
    link = [x.replace("LINKER:", "-Xlinker=") for x in lines["LINK"].split(";")]
    return lines["CUDA"].split(";"), link


def build_in(d: Path, flags: bool) -> Path:
    """Compile (-c) then link, as CMake does (-objtemp acts only with -c)."""
    src = d / "src" / "k.cu"
    src.parent.mkdir(parents=True)
    src.write_text(SOURCE)
    cu, link = cmake_flags(d) if flags else ([], [])
    nvcc = str(nvcc_bin() / "nvcc")
    obj = d / "obj" / "k.cu.o"
    obj.parent.mkdir()
    for cmd in ([nvcc, "-O2", "-Xcompiler=-fPIC", *SM120, *SM90, *cu, "-c", str(src), "-o", str(obj)],
                [nvcc, "-shared", "-cudart", "none", *link, "-o", str(d / "k.so"), str(obj)]):
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=d)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return d / "k.so"


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_two_directories_give_identical_so(tmp_path):
    a = build_in(tmp_path / "one", flags=True)
    b = build_in(tmp_path / "elsewhere" / "deeper", flags=True)
    assert sha(a) == sha(b)
    # and the flags are what makes it so: without them the .so differ
    c = build_in(tmp_path / "plain1", flags=False)
    d = build_in(tmp_path / "plain2", flags=False)
    assert sha(c) != sha(d)


def test_normalised_wheel_is_stable_and_against_explains(tmp_path):
    sys.path.insert(0, PY)
    from blackwheel_factory.packaging import repro
    so = build_in(tmp_path / "a", flags=True)
    info = build_info({"k": (["12.0a", "9.0a"], "_k.abi3.so")})
    w1 = make_wheel(tmp_path / "w1", {"_k.abi3.so": so}, info)
    n1 = repro.normalise_wheel(w1, tmp_path / "n1.whl", epoch=1793491200)
    n2 = repro.normalise_wheel(n1, tmp_path / "n2.whl", epoch=1793491200)
    assert sha(n1) == sha(n2) == sha(w1)
    r = cli("verify", "--against", str(n1), str(n2))
    assert r.returncode == 0 and "identical" in r.stdout

    # planted differences: an edited text file, and a .so built elsewhere without the flags
    other_so = build_in(tmp_path / "b", flags=False)
    w3 = make_wheel(tmp_path / "w3", {"_k.abi3.so": other_so}, info,
                    extra={"blackwheel/__init__.py": b"planted = True\n"})
    r = cli("verify", "--against", str(w1), str(w3))
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "content        blackwheel/__init__.py" in out and "+planted = True" in out
    assert "content        blackwheel/_k.abi3.so" in out
    assert "section .strtab differs" in out          # the tmpxft_<pid> file symbol
    listed = [line.split()[-1] for line in out.splitlines() if line and not line.startswith((" ", "/"))]
    assert "blackwheel/_build_info.json" not in listed   # equal members are not listed
    assert "blackwheel-0.1.0.dist-info/RECORD" in listed
