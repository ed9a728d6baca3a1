"""The libcuda.so link stub of the PyPI toolkit prefix (inputs/toolchain.py): it must
define the driver's functions, or torch's --as-needed link flags drop it from NEEDED and
the extension meets 'undefined symbol: cu...' at import on a GPU host (vLLM's _C, 12-07)."""
from __future__ import annotations

import subprocess

import pytest

from blackwheel_factory.checks.abi import read_elf
from blackwheel_factory.inputs import toolchain as T

HEADER = """
#define cuMemAlloc                          cuMemAlloc_v2
    #define cuMemcpy                            __CUDA_API_PTDS(cuMemcpy)
    #define cuMemcpyAsync                       __CUDA_API_PTSZ(cuMemcpyAsync)
CUresult CUDAAPI cuInit(unsigned int Flags);
CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytesize);
CUresult CUDAAPI cuTensorMapEncodeTiled(CUtensorMap *tensorMap, cuuint32_t tensorRank);
typedef struct CUctx_st *CUcontext;
"""


def test_names_cover_declarations_versions_and_per_thread_variants():
    names = T.driver_api_names(HEADER)
    for n in ("cuInit", "cuMemAlloc", "cuMemAlloc_v2", "cuTensorMapEncodeTiled",
              "cuMemcpy_ptds", "cuMemcpyAsync_ptsz"):
        assert n in names, n
    assert not [n for n in names if not n.startswith("cu") or n.startswith("cuda")]
    assert "CUcontext" not in names and "cuuint32_t" not in names


def _pypi_cuda_h():
    root = T.pypi_cuda_root()
    if root is None or not (root / "include" / "cuda.h").is_file():
        pytest.skip("no PyPI CUDA toolkit (cuda.h) in this environment")
    return root / "include" / "cuda.h"


def test_an_as_needed_link_keeps_libcuda_needed(tmp_path):
    """The real toolkit header: the stub defines cuTensorMapEncodeTiled (and ~600 more),
    and a library linked with torch's trailing --as-needed records libcuda.so.1."""
    stub = T.driver_stub(tmp_path / "stubs" / "libcuda.so", _pypi_cuda_h())
    defined = subprocess.run(["nm", "-D", "--defined-only", str(stub)], capture_output=True,
                             text=True, check=True).stdout
    assert " cuTensorMapEncodeTiled\n" in defined and " cuMemAlloc_v2\n" in defined
    src = tmp_path / "uses_driver.c"
    src.write_text("int cuTensorMapEncodeTiled(void);\nint f(void) { return cuTensorMapEncodeTiled(); }\n")
    lib = tmp_path / "libuses.so"
    subprocess.run(["cc", "-shared", "-fPIC", str(src), "-o", str(lib), "-Wl,--as-needed",
                    f"-L{stub.parent}", "-lcuda"], check=True)
    with open(lib, "rb") as f:
        assert "libcuda.so.1" in read_elf(f, str(lib)).needed
    assert sorted(p.name for p in stub.parent.iterdir()) == ["libcuda.so"]   # no temp files left


def test_missing_header_names_the_fix(tmp_path):
    with pytest.raises(T.ToolchainError, match="cuda-toolkit wheels"):
        T.driver_stub(tmp_path / "libcuda.so", tmp_path / "include" / "cuda.h")
    assert not list(tmp_path.iterdir())


def test_the_prefix_path_follows_the_toolkit_directory(tmp_path):
    """A new toolkit directory (pip's random isolated build env) gets a new prefix path:
    sccache-dist keys the toolchain it sends by the compiler's path, and a fixed prefix path
    in front of another venv made it send a stale archive (the farm build failed)."""
    a, b = T.prefix_dir(tmp_path, tmp_path / "env-a" / "cu13"), T.prefix_dir(tmp_path, tmp_path / "env-b" / "cu13")
    assert a != b and a.parent == b.parent == tmp_path
    assert a == T.prefix_dir(tmp_path, tmp_path / "env-a" / "cu13")    # stable for one venv: cache hits
