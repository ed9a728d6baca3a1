"""The vllm product, reduced, built for real (CI): vLLM 0.33.0's own CMake from the
pinned sdist with BLACKWHEEL_VLLM_SUBSET=reduced — the targets _moe_C_stable_libtorch
(without Marlin MoE: 8 CUDA TUs), cumem_allocator, spinloop and fs_io_C — for 12.0a,
from a copy of the checkout, compiler cache off.

Proves: `python -m blackwheel_factory wheel vllm` drives vLLM's CMake with our
controls (lock, pinned nvcc, fixed source root, job pools, post-link ABI check,
build record); the wheel is named for its variant (0.33.0+cu130.sm120a), requires
torch>=2.11 and no exact torch; its CUDA code is sm_120a SASS only (verify), every
extension passes abi-check (stable shim, CPython C-API for the Python modules);
installed with --no-deps beside the locked torch, `import vllm, vllm._custom_ops`
works on this CPU machine and the extension loads and registers its ops (with a
driver stub: no libcuda here); under torch 2.13.0+cpu, `import vllm` refuses with
the guard's error (installed, required, fix), never "undefined symbol".
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_abi import other_torch_venv, run_cli  # noqa: E402,F401  (fixture)
from test_wheel_build import _checkout_copy  # noqa: E402

pytestmark = pytest.mark.build

REPO = Path(__file__).resolve().parents[2]
REDUCED = ("_moe_C_stable_libtorch", "cumem_allocator", "spinloop", "fs_io_C")


def _factory(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PYTHONPATH=str((cwd or REPO) / "python"))
    return subprocess.run([sys.executable, "-m", "blackwheel_factory", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def vllm_wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vllmwheel")
    src = _checkout_copy(root / "src")
    # FA2 (issue 19): one head dim, one dtype: 4 kernel TUs (fwd, split-KV; causal or not)
    env = dict(os.environ, BLACKWHEEL_VLLM_SUBSET="reduced", BLACKWHEEL_ARCHS="12.0a",
               BLACKWHEEL_COMPILER_CACHE="off", BLACKWHEEL_FA_HEAD_DIMS="32",
               BLACKWHEEL_FA_DTYPES="bf16")
    env.pop("SOURCE_DATE_EPOCH", None)
    r = _factory("wheel", "vllm", "-w", str(root / "dist"), "--", "--no-build-isolation", "-v",
                 env=env, cwd=src)
    assert r.returncode == 0, (r.stdout + r.stderr)[-8000:]
    wheels = sorted((root / "dist").glob("vllm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def vllm_site(vllm_wheel, tmp_path_factory) -> Path:
    """The wheel installed with --no-deps into a fresh target, as pip lays it out."""
    site = tmp_path_factory.mktemp("vllmsite")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                        "--target", str(site), str(vllm_wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return site


def test_name_metadata_and_contents(vllm_wheel):
    assert vllm_wheel.name == "vllm-0.33.0+cu130.sm120a-cp311-abi3-linux_x86_64.whl"
    with zipfile.ZipFile(vllm_wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        eps = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        record = json.loads(z.read("vllm/_build_info.json"))
        init = z.read("vllm/__init__.py").decode()
    reqs = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
    assert "torch>=2.11" in reqs
    assert not [r for r in reqs if r.replace(" ", "").lower().startswith(("torch==", "torchvision==",
                                                                          "torchaudio=="))]
    assert any(r.startswith("transformers") for r in reqs)       # upstream's requirements
    assert "vllm = vllm.entrypoints.cli.main:main" in eps          # upstream's console script
    for t in REDUCED:
        assert f"vllm/{t}.abi3.so" in names, t
    assert "vllm/_C_stable_libtorch.abi3.so" not in names        # not in the reduced subset
    assert "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so" in names    # blackwheel's FA2 (issue 19)
    assert "vllm/vllm_flash_attn/flash_attn_interface.py" in names
    assert "vllm/entrypoints/llm.py" in names                    # upstream's Python
    assert "vllm/_runtime/guard.py" in names                     # the one runtime, copied
    assert "_bw_guard.check_installed" in init                   # patch 0005
    assert not any(n.startswith(("csrc/", "tests/", "docs/")) for n in names)
    assert record["archs"] == ["12.0a"] and record["abi"] == "stable"
    assert record["product"]["dist"] == "vllm"
    fa2 = record["kernels"]["flash_attn_2"]
    assert fa2["library"] == "_vllm_fa2_C.abi3.so" and fa2["head_dims"] == [32]
    assert fa2["frontend"] == ["vllm_fa2"] and fa2["archs"] == ["12.0a"]


def test_verify_abi_check_repair(vllm_wheel, tmp_path):
    r = _factory("verify", str(vllm_wheel))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sm_120a" in r.stdout
    r = _factory("abi-check", str(vllm_wheel))
    assert r.returncode == 0, r.stdout + r.stderr
    r = _factory("repair", str(vllm_wheel), "-w", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    (repaired,) = tmp_path.glob("vllm-*.whl")
    assert repaired.name.startswith("vllm-0.33.0+cu130.sm120a-cp311-abi3-manylinux_")


def test_driver_api_users_need_libcuda(vllm_site):
    """Every extension that calls the driver API records libcuda.so.1 in NEEDED: torch loads
    the driver privately, so without it the GPU host's import fails ('undefined symbol:
    cuTensorMapEncodeTiled', 12-07; the link stub was empty and --as-needed dropped it)."""
    from blackwheel_factory.checks.abi import read_elf
    users = {}
    for so in sorted((vllm_site / "vllm").rglob("*.so")):
        with open(so, "rb") as f:
            elf = read_elf(f, str(so))
        if any(u.name.startswith("cu") and u.name[2:3].isupper() for u in elf.undefined):
            users[so.name] = elf.needed
    assert "cumem_allocator.abi3.so" in users          # cuMemCreate, cuMemMap, ...
    assert all("libcuda.so.1" in needed for needed in users.values()), users


def _driver_stub(so: Path, out_dir: Path) -> Path:
    """libcuda.so.1 defining the cu* functions `so` imports (each fails with
    CUDA_ERROR_NO_DEVICE): this machine has no driver, the GPU host has the real one."""
    from blackwheel_factory.checks.abi import read_elf
    with open(so, "rb") as f:
        names = sorted(u.name for u in read_elf(f, str(so)).undefined if u.name.startswith("cu"))
    src = out_dir / "libcuda_stub.c"
    src.write_text("".join(f"int {n}(void) {{ return 100; }}\n" for n in names))
    lib = out_dir / "libcuda.so.1"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src), "-Wl,-soname,libcuda.so.1"],
                   check=True)
    return out_dir


def test_imports_on_cpu_beside_the_locked_torch(vllm_site, tmp_path):
    stub = _driver_stub(vllm_site / "vllm" / "_moe_C_stable_libtorch.abi3.so", tmp_path)
    code = ("import sys, torch, vllm, vllm._custom_ops\n"
            "assert not [m for m in sys.modules if m.startswith('blackwheel_factory')]\n"
            "import vllm._moe_C_stable_libtorch\n"
            "print(vllm.__version__, torch.__version__)\n"
            "print(torch.ops._moe_C.moe_align_block_size.default._schema)\n")
    r = run_cli(sys.executable, ["-c", code], pythonpath=vllm_site, cwd=tmp_path,
                env={"LD_LIBRARY_PATH": str(stub)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0.33.0" in r.stdout and "2.14.1" in r.stdout
    assert "_moe_C::moe_align_block_size(Tensor topk_ids" in r.stdout


def test_vllm_flash_attn_fa2_imports_on_cpu(vllm_site, tmp_path):
    """vLLM's own interface module finds _vllm_fa2_C (FA2_AVAILABLE) and its ops carry
    the schema vLLM calls; the block-sparse entry points (no such kernels in FA2 2.8.3) raise
    NotImplementedError naming the feature (patch 0006), before touching a tensor."""
    stub = _driver_stub(vllm_site / "vllm" / "_moe_C_stable_libtorch.abi3.so", tmp_path)
    code = ("import torch\n"
            "from vllm.vllm_flash_attn import flash_attn_varlen_func, is_fa_version_supported\n"
            "from vllm.vllm_flash_attn import flash_attn_interface as fi\n"
            "assert fi.FA2_AVAILABLE, fi.FA2_UNAVAILABLE_REASON\n"
            "print(torch.ops._vllm_fa2_C.varlen_fwd.default._schema)\n"
            "assert not hasattr(torch.ops._vllm_fa2_C, 'varlen_fwd_sparse')\n"
            "import inspect\n"
            "for f in (fi.sparse_attn_func, fi.sparse_attn_varlen_func):\n"
            "    required = [p for p in inspect.signature(f).parameters.values()\n"
            "                if p.default is inspect.Parameter.empty]\n"
            "    try:\n"
            "        f(*[None] * len(required))\n"
            "    except NotImplementedError as e:\n"
            "        print('refused:', e)\n")
    r = run_cli(sys.executable, ["-c", code], pythonpath=vllm_site, cwd=tmp_path,
                env={"LD_LIBRARY_PATH": str(stub)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("_vllm_fa2_C::varlen_fwd(Tensor q, Tensor k, Tensor v, Tensor(a!)? out, "
            "Tensor cu_seqlens_q, Tensor cu_seqlens_k, Tensor? seqused_k, Tensor? leftpad_k, "
            "Tensor? block_table, Tensor? alibi_slopes, int max_seqlen_q, int max_seqlen_k, "
            "float p_dropout, float softmax_scale, bool zero_tensors, bool is_causal, "
            "int window_size_left, int window_size_right, float softcap, bool return_softmax, "
            "int num_splits, Generator? gen) -> (Tensor, Tensor)") in r.stdout
    assert r.stdout.count("refused: vllm_flash_attn: vertical-slash block-sparse attention") == 2
    assert "_vllm_fa2_C.fwd_sparse) is not built" in r.stdout
    assert "_vllm_fa2_C.varlen_fwd_sparse) is not built" in r.stdout


def test_drifted_torch_is_refused_clearly(vllm_site, other_torch_venv, tmp_path):
    """torch 2.13.0+cpu: above the stable floor, but no CUDA 13: the guard's ImportError."""
    r = run_cli(other_torch_venv, ["-c", "import vllm"], pythonpath=vllm_site, cwd=tmp_path)
    assert r.returncode == 1
    assert "TorchMismatchError" in r.stderr and "undefined symbol" not in r.stderr
    assert "2.13.0+cpu" in r.stderr and "cuda" in r.stderr.lower()
    assert "pip install" in r.stderr


# torches other than the lock (2.14.1+cu130) that the wheel must load under: the GPU host's
# (2.11.0+cu130, the stable-ABI floor) and the newest on PyPI (2026-12-07: 2.15.0+cu132)
OTHER_TORCHES = ["2.11.0", "2.15.0"]


@pytest.fixture(scope="module", params=OTHER_TORCHES)
def other_cuda_torch(request) -> tuple[str, Path]:
    """A venv with that torch from PyPI (past this machine's pip cap, which stops at the
    lock: PIP_CONFIG_FILE=/dev/null), kept in pytest's cache: about 3 GB each."""
    import venv
    version = request.param
    root = Path(request.config.cache.mkdir(f"blackwheel-torch-{version}-venv"))
    py = root / "bin" / "python"
    probe = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True) if py.exists() else None
    if probe is None or probe.returncode != 0 or not probe.stdout.startswith(version):
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"torch=={version}", "numpy",
                            "requests", "packaging", "regex", "psutil", "pyzmq"],
                           capture_output=True, text=True, env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
        if r.returncode != 0:
            pytest.skip(f"cannot install torch=={version}: {r.stderr[-600:]}")
    return version, py


@pytest.mark.long
@pytest.mark.network
def test_imports_under_other_cuda_torches(vllm_site, other_cuda_torch, tmp_path):
    """The seeds' drift both ways: the GPU host's older torch (2.11.0+cu130) and a torch
    released after the build (2.15.0+cu132) load the wheel built against 2.14.1+cu130
    (stable ABI >= 2.11, CUDA 13), with vLLM's ops registered."""
    stub = _driver_stub(vllm_site / "vllm" / "_moe_C_stable_libtorch.abi3.so", tmp_path)
    code = ("import torch, vllm, vllm._custom_ops, vllm._moe_C_stable_libtorch\n"
            "print(torch.__version__, torch.version.cuda, torch.ops._moe_C.topk_softmax.default._schema)\n")
    version, python = other_cuda_torch
    r = run_cli(python, ["-c", code], pythonpath=vllm_site, cwd=tmp_path,
                env={"LD_LIBRARY_PATH": str(stub)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(version) and " 13." in r.stdout and "_moe_C::topk_softmax" in r.stdout
