"""Shared fixtures of the ABI-lock tests (tests/builds/test_abi*.py, test_drift*.py).

Import the fixtures into a test module:  ``from fixtures_abi import *``
(after ``sys.path.insert(0, <tests dir>)``). Tiny extensions are compiled with
g++ directly (CPU only, seconds); the "other torch" venv is made once and kept in
pytest's cache directory, so a rerun takes seconds (``pytest --cache-clear``
rebuilds it).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON_DIR = REPO / "python"
OTHER_TORCH = "2.13.0"          # on this machine: /opt/wheels/torch-2.13.0+cpu-...whl

__all__ = ["REPO", "PYTHON_DIR", "OTHER_TORCH", "locked_torch_dir", "tiny_sos", "other_torch_venv",
           "compile_so", "run_cli", "write_build_info", "tiny_so_sources", "assert_drift_refusal",
           "FACTORY_MODULES"]

# prints the factory modules an interpreter has imported (none, for runtime code)
FACTORY_MODULES = "import sys; print(sorted(m for m in sys.modules if m.startswith('blackwheel_factory')))"


def assert_drift_refusal(stderr: str, what: str) -> None:
    """The one guard's refusal of torch 2.13.0+cpu by a stable-ABI CUDA 13 build, the
    same for every product (only its name differs): installed, required, fix."""
    assert "TorchMismatchError" in stderr and "undefined symbol" not in stderr, stderr[-3000:]
    assert (f"{what} was built for torch>=2.11 built for CUDA 13.x, but the installed torch "
            f"is torch 2.13.0+cpu") in stderr, stderr[-3000:]
    assert "  - cuda: required CUDA 13.x, found CPU-only (no CUDA)" in stderr, stderr[-3000:]
    assert ('Fix: pip install "torch>=2.11" --index-url https://download.pytorch.org/whl/cu130'
            in stderr), stderr[-3000:]


def _site_torch() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("torch")
    if spec is None:
        pytest.skip("torch is not installed in the test interpreter")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def locked_torch_dir() -> Path:
    """The torch package of the test interpreter; must be the locked one."""
    from blackwheel_factory.inputs.config import load_lock
    from blackwheel_factory.inputs.lock import facts_from_torch_dir
    d = _site_torch()
    facts = facts_from_torch_dir(d)
    lock = load_lock(REPO / "torch-lock.toml")
    if facts is None or facts.version != lock.version:
        pytest.skip(f"test interpreter has torch {facts and facts.version}, the lock is "
                    f"{lock.version}; run with the venv holding the locked torch")
    return d


def compile_so(src: str, out: Path, flags: list[str], lang: str = "c++") -> Path:
    """Compile one source string into a shared library with g++/gcc."""
    compiler = shutil.which("g++" if lang == "c++" else "gcc")
    if compiler is None:
        pytest.skip("no host C/C++ compiler")
    ext = ".cpp" if lang == "c++" else ".c"
    src_path = out.with_suffix(ext)
    src_path.write_text(src)
    cmd = [compiler, "-O1", "-fPIC", "-shared", str(src_path), "-o", str(out), *flags]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"compile failed: {' '.join(cmd)}\n{res.stderr[-3000:]}"
    return out


tiny_so_sources = {
    # classic ABI: ATen/c10 C++ symbols; c10::utils::unset_env is new in torch 2.14
    "classic": r'''
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <c10/util/env.h>
extern "C" int64_t bw_classic(int64_t n) {
  TORCH_CHECK(n >= 0, "n must be >= 0, got ", n);
  c10::utils::unset_env("BW_TINY_UNUSED");
  at::Tensor t = at::zeros({n});
  return t.numel();
}
''',
    # classic ABI with a CUDA-only symbol (absent from CPU builds of torch)
    "classic_cuda": r'''
#include <c10/cuda/CUDAFunctions.h>
extern "C" int bw_devices() { return c10::cuda::device_count(); }
''',
    # stable ABI: only torch/csrc/stable (header-only C++ over the C shim)
    "stable": r'''
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
torch::stable::Tensor bw_copy(torch::stable::Tensor x) {
  STD_TORCH_CHECK(x.dim() >= 1, "bw_copy needs a tensor");
  torch::stable::Tensor out = torch::stable::empty_like(x);
  torch::stable::copy_(out, x);
  return torch::stable::clone(out);
}
STABLE_TORCH_LIBRARY_FRAGMENT(bwtest, m) { m.def("bw_copy(Tensor x) -> Tensor"); }
STABLE_TORCH_LIBRARY_IMPL(bwtest, CompositeExplicitAutograd, m) {
  m.impl("bw_copy", TORCH_BOX(&bw_copy));
}
''',
    # no torch at all: libc/libm only
    "clean": r'''
#include <string.h>
#include <math.h>
double bw_clean(const char* s) { return sqrt((double)strlen(s)); }
''',
    # a planted undefined C++ symbol that no library defines
    "planted": r'''
#include <string.h>
namespace bw_planted { int missing_function(const char* s, int n); }
extern "C" int bw_use(const char* s) { return bw_planted::missing_function(s, (int)strlen(s)); }
''',
    # throws and catches: with -static-libstdc++ it carries its own C++ runtime
    "static_runtime": r'''
#include <stdexcept>
extern "C" int bw_throws(int x) {
  try { if (x) throw std::runtime_error("refused"); } catch (const std::exception&) { return 1; }
  return 0;
}
''',
}


@pytest.fixture(scope="session")
def tiny_sos(tmp_path_factory, locked_torch_dir) -> dict[str, Path]:
    """classic(.so), classic_cuda, stable (against the locked torch), clean, planted,
    static_runtime / shared_runtime (one source, -static-libstdc++ or not)."""
    d = tmp_path_factory.mktemp("tiny_so")
    inc = locked_torch_dir / "include"
    lib = locked_torch_dir / "lib"
    cuda_inc = locked_torch_dir.parent / "nvidia" / "cu13" / "include"
    torch_flags = ["-std=c++20", "-D_GLIBCXX_USE_CXX11_ABI=1", f"-I{inc}", f"-I{cuda_inc}",
                   f"-L{lib}"]
    return {
        "classic": compile_so(tiny_so_sources["classic"], d / "classic.so",
                              torch_flags + ["-Wl,--no-as-needed", "-lc10", "-ltorch_cpu"]),
        "classic_cuda": compile_so(tiny_so_sources["classic_cuda"], d / "classic_cuda.so",
                                   torch_flags + ["-lc10", "-lc10_cuda"]),
        "stable": compile_so(tiny_so_sources["stable"], d / "stable.so",
                             torch_flags + ["-DTORCH_TARGET_VERSION=0x020b000000000000",
                                            "-ltorch", "-ltorch_cpu", "-lc10"]),
        "clean": compile_so(tiny_so_sources["clean"], d / "clean.so", ["-lm"], lang="c"),
        "planted": compile_so(tiny_so_sources["planted"], d / "planted.so", []),
        "static_runtime": compile_so(tiny_so_sources["static_runtime"], d / "static_runtime.so",
                                     ["-static-libstdc++"]),
        "shared_runtime": compile_so(tiny_so_sources["static_runtime"], d / "shared_runtime.so", []),
    }


def _venv_torch_version(python: Path) -> str | None:
    if not python.exists():
        return None
    res = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


@pytest.fixture(scope="session")
def other_torch_venv(request) -> Path:
    """A clean venv (no system site-packages) with torch==2.13.0 from the local wheel
    store; kept in pytest's cache across runs. Returns the venv's python."""
    root = Path(request.config.cache.mkdir("blackwheel-torch-2.13-venv"))
    py = root / "bin" / "python"
    have = _venv_torch_version(py)
    if have is None or not have.startswith(OTHER_TORCH):
        shutil.rmtree(root, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", f"torch=={OTHER_TORCH}"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot install torch=={OTHER_TORCH} here: {res.stderr[-800:]}")
        have = _venv_torch_version(py)
    assert have and have.startswith(OTHER_TORCH), have
    return py


def run_cli(python: Path | str, args: list[str], pythonpath: Path | str = PYTHON_DIR,
            cwd: Path | str = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    e.update(env or {})
    e["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=str(cwd), env=e)


def write_build_info(pkg_dir: Path, abi: str, lock: dict) -> Path:
    """A build record like the one CMake writes (docs/ARCHITECTURE.md)."""
    info = {
        "schema": 1, "blackwheel_version": "0.1.0", "archs": ["12.0a"],
        "kernels": {"tiny": {"archs": ["12.0a"], "abi": abi, "library": "_tiny.abi3.so",
                             "ops": ["tiny"]}},
        "skipped": {}, "abi": abi,
        "torch": {"lock": lock,
                  "requirement": (f"torch>={lock['stable_target']}" if abi == "stable"
                                  else f"torch=={lock['version'].split('+')[0]}")},
    }
    path = pkg_dir / "_build_info.json"
    path.write_text(json.dumps(info, indent=2))
    return path
