"""The CUDA toolchain is an input like torch: by default the nvcc from the PyPI
`cuda-toolkit` wheels pinned in build-system.requires (nvidia/cu13 in the build
environment's site-packages); BLACKWHEEL_NVCC=system (or a path) uses another.

The PyPI layout lacks two things CMake's FindCUDAToolkit / torch's Caffe2 config
expect of a toolkit prefix (`lib64`, an unversioned `libcudart.so`), so we make a
small prefix of symlinks in the build directory instead of touching site-packages.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class ToolchainError(RuntimeError):
    pass


@dataclass(frozen=True)
class Toolchain:
    nvcc: Path            # the nvcc CMake uses (inside `prefix`)
    prefix: Path          # CUDA_HOME / CUDAToolkit_ROOT
    origin: str           # "pypi" or "system"
    version: str          # "13.0.88"
    real_prefix: Path     # where the files really are

    @property
    def major_minor(self) -> tuple[int, int]:
        a, b = self.version.split(".")[:2]
        return int(a), int(b)


def parse_nvcc_version(text: str) -> str:
    m = re.search(r"V(\d+\.\d+\.\d+)", text)
    if not m:
        raise ToolchainError(f"cannot read the nvcc version from:\n{text}")
    return m.group(1)


def nvcc_version(nvcc: Path) -> str:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True)
    if out.returncode != 0:
        raise ToolchainError(f"{nvcc} --version failed:\n{out.stderr}")
    return parse_nvcc_version(out.stdout)


def list_gpu_arch(nvcc: Path) -> str:
    return subprocess.run([str(nvcc), "--list-gpu-arch"], capture_output=True, text=True).stdout


def pypi_cuda_root() -> Path | None:
    """nvidia/cu13 (or cu12) of the cuda-toolkit wheels in this environment."""
    try:
        import nvidia  # namespace package of NVIDIA's wheels
    except ImportError:
        return None
    for base in getattr(nvidia, "__path__", []):
        for sub in ("cu13", "cu12"):
            root = Path(base) / sub
            if (root / "bin" / "nvcc").is_file():
                return root
    return None


def make_prefix(real: Path, dest: Path) -> Path:
    """A toolkit prefix of symlinks: bin, include, nvvm, lib + lib64 with the
    unversioned libcudart.so. Rebuilt atomically."""
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for sub in ("include", "nvvm"):
        if (real / sub).exists():
            (tmp / sub).symlink_to(real / sub)
    # bin is a real directory: nvcc finds its libraries at <its dir>/../lib64,
    # and a symlinked bin/ would resolve '..' to the wheel's own directory.
    (tmp / "bin").mkdir()
    for f in sorted((real / "bin").iterdir()):
        (tmp / "bin" / f.name).symlink_to(f)
    lib = tmp / "lib"
    lib.mkdir()
    for f in sorted((real / "lib").iterdir()):
        (lib / f.name).symlink_to(f)
    for so in sorted((real / "lib").glob("lib*.so.*")):
        base = so.name.split(".so.")[0] + ".so"
        if not (lib / base).exists():
            (lib / base).symlink_to(so)
    (tmp / "lib64").symlink_to("lib")
    if not (real / "lib" / "stubs" / "libcuda.so").exists():
        driver_stub(lib / "stubs" / "libcuda.so", real / "include" / "cuda.h")
    if dest.exists() or dest.is_symlink():
        shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
    os.rename(tmp, dest)
    return dest


_DRIVER_NAME_RE = re.compile(r"\b(cu[A-Z][A-Za-z0-9_]*)\b")
_DRIVER_PT_RE = re.compile(r"__CUDA_API_(PTDS|PTSZ)\((cu[A-Z][A-Za-z0-9_]*)\)")


def driver_api_names(cuda_h: str) -> list[str]:
    """Every driver API name a program compiled against this cuda.h can import: the
    declared functions, the versioned names its #defines map them to (cuMemAlloc ->
    cuMemAlloc_v2) and the per-thread-stream variants (cuMemcpy -> cuMemcpy_ptds)."""
    names = set(_DRIVER_NAME_RE.findall(cuda_h))
    names |= {f"{n}_{kind.lower()}" for kind, n in _DRIVER_PT_RE.findall(cuda_h)}
    return sorted(names)


def driver_stub(path: Path, cuda_h: Path, cc: str | None = None) -> Path:
    """A libcuda.so (soname libcuda.so.1) to link against, as the CUDA toolkit's
    lib/stubs/libcuda.so is: the PyPI toolkit wheels have none, and upstream CMake
    projects (vLLM's CUDA::cuda_driver) link the driver API. Like the toolkit's stub it
    defines the driver's functions (every name of the toolkit's cuda.h): torch's link
    flags end in --as-needed, and a stub that defines nothing is dropped from NEEDED,
    leaving the cu* symbols to a libcuda.so.1 that torch loads privately (RTLD_LOCAL):
    'undefined symbol: cuTensorMapEncodeTiled' at import on a GPU host. The functions
    are never called: the driver installed on the GPU host is the libcuda.so.1 loaded."""
    if not cuda_h.is_file():
        raise ToolchainError(f"no cuda.h at {cuda_h}: the libcuda.so link stub needs the toolkit's "
                             "driver API header (install the cuda-toolkit wheels of build-system.requires)")
    names = driver_api_names(cuda_h.read_text(errors="replace"))
    path.parent.mkdir(parents=True, exist_ok=True)
    cc = cc or os.environ.get("CC") or "cc"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    src = path.with_name(f".{path.name}.tmp{os.getpid()}.c")
    src.write_text("".join(f"void {n}(void) {{}}\n" for n in names))
    try:
        r = subprocess.run([cc, "-shared", "-nostdlib", "-fPIC", str(src), "-Wl,-soname,libcuda.so.1",
                            "-Wl,--build-id=none", "-o", str(tmp)], capture_output=True, text=True)
    finally:
        src.unlink(missing_ok=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ToolchainError(f"could not make the libcuda.so link stub with {cc}: {r.stderr.strip()[-2000:]}")
    os.replace(tmp, path)
    return path


def prefix_dir(build_dir: Path, real: Path) -> Path:
    """Where the prefix for the toolkit at `real` goes: named after that path, so that a
    build against another toolkit directory (pip's isolated build env is a new random one
    each time) gets another prefix path. sccache-dist's client keys the toolchain archive
    it sends by the compiler's path and content; behind one fixed prefix path a new venv
    got the archive packed from the old one, and the build servers could not run it
    (measured 12-07: "bwrap: execvp .../cudafe++: No such file or directory")."""
    return build_dir / f"cuda-prefix-{hashlib.sha256(str(real).encode()).hexdigest()[:12]}"


def resolve(build_dir: Path, env: dict | None = None, expected_version: str | None = None) -> Toolchain:
    env = os.environ if env is None else env
    choice = env.get("BLACKWHEEL_NVCC", "pypi").strip() or "pypi"
    if choice == "pypi":
        real = pypi_cuda_root()
        if real is None:
            raise ToolchainError(
                "no nvcc from the PyPI cuda-toolkit wheels in this environment. Build with pip's "
                "isolation (the default: build-system.requires installs them), or `pip install "
                "\"cuda-toolkit[nvcc,crt,nvvm,cudart,cccl,cublas,nvrtc]==13.0.3.0\"` for "
                "--no-build-isolation, or set BLACKWHEEL_NVCC=system to use $CUDA_HOME/bin/nvcc.")
        prefix = make_prefix(real, prefix_dir(build_dir, real))
        tc = Toolchain(prefix / "bin" / "nvcc", prefix, "pypi", nvcc_version(real / "bin" / "nvcc"), real)
        if expected_version and tc.version != expected_version:
            raise ToolchainError(
                f"the PyPI nvcc in this environment is {tc.version}, blackwheel.toml pins "
                f"{expected_version}: install cuda-toolkit=={expected_version.rsplit('.', 1)[0]}.* "
                f"wheels (see pyproject.toml build-system.requires)")
        return tc
    if choice == "system":
        home = env.get("CUDA_HOME") or env.get("CUDA_PATH") or "/usr/local/cuda"
        nvcc = Path(home) / "bin" / "nvcc"
    else:
        nvcc = Path(choice)
    if not nvcc.is_file():
        raise ToolchainError(f"BLACKWHEEL_NVCC={choice}: no nvcc at {nvcc}; set CUDA_HOME or give the path")
    real = nvcc.resolve().parent.parent
    return Toolchain(nvcc, real, "system", nvcc_version(nvcc), real)


def host_compiler_version(cxx: str = "c++") -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"
