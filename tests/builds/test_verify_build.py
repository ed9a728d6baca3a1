"""verify on real tiny compiles: a kernel .cu from tests/data compiled with the
pinned nvcc, packed into a minimal wheel with a build record, checked through
the CLI (`python -m blackwheel_factory verify`).

The helpers here (nvcc_bin, compile_so, make_wheel, cli) are shared with
test_repro_build.py and test_repair_build.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
PY = str(ROOT / "python")

pytestmark = pytest.mark.build


def nvcc_bin() -> Path:
    """The directory of the pinned nvcc (PyPI cuda-toolkit), or $BLACKWHEEL_NVCC_BIN."""
    if os.environ.get("BLACKWHEEL_NVCC_BIN"):
        return Path(os.environ["BLACKWHEEL_NVCC_BIN"])
    try:
        import nvidia
        for root in nvidia.__path__:
            b = Path(root) / "cu13" / "bin"
            if (b / "nvcc").is_file():
                return b
    except ImportError:
        pass
    found = shutil.which("nvcc")
    if found:
        return Path(found).parent
    pytest.skip("no nvcc: install cuda-toolkit[nvcc]==13.0.3.0 or set BLACKWHEEL_NVCC_BIN")


def cuda_lib() -> Path:
    return nvcc_bin().parent / "lib"


def compile_so(src: Path, out: Path, gencode: list[str], extra: list[str] = (), cwd: Path | None = None,
               link_cudart: bool = False) -> Path:
    """One nvcc call: .cu -> shared library (whole-program, no device link)."""
    cmd = [str(nvcc_bin() / "nvcc"), "-shared", "-Xcompiler", "-fPIC", "-cudart", "none", "-O2",
           *gencode, *extra, "-o", str(out), str(src)]
    if link_cudart:
        cmd += [f"-L{cuda_lib()}", "-l:libcudart.so.13"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, f"nvcc failed: {' '.join(cmd)}\n{r.stderr}"
    return out


SM120 = ["-gencode", "arch=compute_120a,code=sm_120a"]
SM90 = ["-gencode", "arch=compute_90a,code=sm_90a"]
PTX120 = ["-gencode", "arch=compute_120a,code=compute_120a"]


def build_info(families: dict[str, tuple[list[str], str]], epoch: int = 1793491200) -> dict:
    return {
        "schema": 1, "blackwheel_version": "0.1.0",
        "archs": sorted({a for archs, _ in families.values() for a in archs}),
        "kernels": {f: {"archs": archs, "abi": "stable", "library": lib, "ops": []}
                    for f, (archs, lib) in families.items()},
        "skipped": {}, "abi": "stable",
        "torch": {"lock": {"version": "2.14.1+cu130", "cuda": "13.0", "cxx11_abi": True,
                           "stable_target": "2.11"}, "requirement": "torch>=2.11"},
        "toolchain": {"nvcc_version": "13.0.88", "origin": "pypi"},
        "source_date_epoch": epoch,
    }


def make_wheel(outdir: Path, sos: dict[str, Path], info: dict | None,
               extra: dict[str, bytes] | None = None) -> Path:
    """A minimal blackwheel wheel (cp39-abi3-linux_x86_64), normalised."""
    sys.path.insert(0, PY)
    from blackwheel_factory.packaging import repro
    outdir.mkdir(parents=True, exist_ok=True)
    di = "blackwheel-0.1.0.dist-info"
    members = {
        "blackwheel/__init__.py": b"",
        f"{di}/METADATA": b"Metadata-Version: 2.1\nName: blackwheel\nVersion: 0.1.0\n",
        f"{di}/WHEEL": b"Wheel-Version: 1.0\nGenerator: blackwheel-tests\nRoot-Is-Purelib: false\n"
                       b"Tag: cp39-abi3-linux_x86_64\n",
        f"{di}/RECORD": b"",
    }
    if info is not None:
        members["blackwheel/_build_info.json"] = json.dumps(info, indent=2).encode()
    for name, path in sos.items():
        members[f"blackwheel/{name}"] = Path(path).read_bytes()
    members.update(extra or {})
    path = outdir / "blackwheel-0.1.0-cp39-abi3-linux_x86_64.whl"
    ms = repro.normalised_members(repro.Member(n, d) for n, d in members.items())
    repro.write_zip(path, ms, 1793491200)
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PY)
    env.setdefault("CUOBJDUMP", str(nvcc_bin() / "cuobjdump"))
    return subprocess.run([sys.executable, "-m", "blackwheel_factory", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


# -------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def sos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("so")
    tiny = DATA / "verify_tiny.cu"
    return {
        "both": compile_so(tiny, d / "both.so", SM120 + SM90),
        "sm90": compile_so(tiny, d / "sm90.so", SM90),
        "ptx": compile_so(tiny, d / "ptx.so", PTX120 + SM90),
        "spill": compile_so(DATA / "verify_spill.cu", d / "spill.so", SM120, ["-maxrregcount=32"]),
        "bigsmem": compile_so(DATA / "verify_bigsmem.cu", d / "bigsmem.so", SM120),
    }


def test_passes_with_sm120_and_sm90(sos, tmp_path):
    w = make_wheel(tmp_path, {"_scaled_mm.abi3.so": sos["both"]},
                   build_info({"scaled_mm": (["12.0a", "9.0a"], "_scaled_mm.abi3.so")}))
    out = tmp_path / "report.json"
    r = cli("verify", str(w), "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2.14.1+cu130" in r.stdout and "13.0.88" in r.stdout          # build record facts
    data = json.loads(out.read_text())
    assert data["ok"] and data["violations"] == []
    rows = {row["arch"]: row for row in data["rows"]}
    assert rows["sm_120a"]["cubins"] == 1 and rows["sm_120a"]["kernels"] == 2
    assert rows["sm_90a"]["cubins"] == 1 and rows["sm_120a"]["max_static_smem"] == 16384
    # --archs overrides the record: 8.9 was not built
    r = cli("verify", str(w), "--archs", "12.0a,8.9")
    assert r.returncode == 1 and "no SASS for sm_89" in r.stderr


def test_fails_clearly_without_sm120(sos, tmp_path):
    w = make_wheel(tmp_path, {"_scaled_mm.abi3.so": sos["sm90"]},
                   build_info({"scaled_mm": (["9.0a"], "_scaled_mm.abi3.so")}))
    assert cli("verify", str(w)).returncode == 0          # the record asked only for 9.0a
    r = cli("verify", str(w), "--archs", "12.0a")
    assert r.returncode == 1
    assert ("family scaled_mm has no SASS for sm_120a in _scaled_mm.abi3.so (built: sm_90a). "
            "Rebuild with BLACKWHEEL_ARCHS=12.0a") in r.stderr


def test_flags_ptx_only_arch(sos, tmp_path):
    w = make_wheel(tmp_path, {"_scaled_mm.abi3.so": sos["ptx"]},
                   build_info({"scaled_mm": (["12.0a", "9.0a"], "_scaled_mm.abi3.so")}))
    out = tmp_path / "r.json"
    r = cli("verify", str(w), "--json", str(out))
    assert r.returncode == 1 and "PTX JIT" in r.stderr
    (v,) = json.loads(out.read_text())["violations"]
    assert v["check"] == "ptx-only" and v["arch"] == "sm_120a"


def test_flags_spilling_kernel(sos, tmp_path):
    w = make_wheel(tmp_path, {"_spill.abi3.so": sos["spill"]},
                   build_info({"spill": (["12.0a"], "_spill.abi3.so")}))
    r = cli("verify", str(w))
    assert r.returncode == 1 and "stack/local memory" in r.stderr and "_Z8bw_spillPKfPfi" in r.stderr


def test_flags_smem_over_limit_with_dynamic_policy(sos, tmp_path):
    w = make_wheel(tmp_path, {"_big.abi3.so": sos["bigsmem"]}, build_info({"big": (["12.0a"], "_big.abi3.so")}))
    assert cli("verify", str(w)).returncode == 0           # 64 KiB static alone fits
    pol = tmp_path / "policy.toml"
    default = (ROOT / "python/blackwheel_factory/policies/verify.toml").read_text()
    pol.write_text(default + '\n[families.big]\ndynamic_smem_max = { "12.0a" = 40000 }\n')
    r = cli("verify", str(w), "--policy", str(pol))
    assert r.returncode == 1 and "exceeds the 101376-byte limit" in r.stderr


def test_missing_library_and_missing_record(sos, tmp_path):
    w = make_wheel(tmp_path / "a", {"_scaled_mm.abi3.so": sos["both"]},
                   build_info({"nvfp4": (["12.0a"], "_nvfp4.abi3.so")}))
    r = cli("verify", str(w))
    assert r.returncode == 1 and "_nvfp4.abi3.so, which is not in the wheel" in r.stderr
    w = make_wheel(tmp_path / "b", {"_x.abi3.so": sos["both"]}, None)
    r = cli("verify", str(w))
    assert r.returncode == 2 and "--archs" in r.stderr
    assert cli("verify", str(w), "--archs", "12.0a,9.0a").returncode == 0


def test_bad_wheel_path_is_a_clear_error(tmp_path):
    r = cli("verify", str(tmp_path / "nope.whl"))
    assert r.returncode == 2 and "not a readable wheel" in r.stderr
