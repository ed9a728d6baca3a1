"""The flash_attn product, reduced, built for real: one head dim (32), forward and
backward, bfloat16, 12.0a (6 upstream FA2 TUs with every feature compiled in,
plus our launcher; about 10 minutes on 2 cores), from a copy of the checkout.

Proves: `python -m blackwheel_factory wheel flash-attn` renders the product and
builds it with the shared CMake modules; the wheel is named for its variant
(2.8.3.post2+cu130.sm120a) and requires torch>=2.11; its extension has sm_120a
SASS within SM_120's limits (verify) and uses nothing but torch's stable C shim
(abi-check); installed with --no-deps it imports as upstream's flash_attn with
upstream's API, and a call without a GPU raises an error that says so.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_wheel_build import _checkout_copy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_abi import FACTORY_MODULES, assert_drift_refusal, other_torch_venv, run_cli  # noqa: E402,F401

pytestmark = pytest.mark.build

REPO = Path(__file__).resolve().parents[2]


def _factory(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PYTHONPATH=str((cwd or REPO) / "python"))
    return subprocess.run([sys.executable, "-m", "blackwheel_factory", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


# `fa_wheel` (session-scoped, shared with test_image.py): tests/builds/conftest.py


def test_name_metadata_and_contents(fa_wheel):
    assert fa_wheel.name == "flash_attn-2.8.3.post2+cu130.sm120a-cp39-abi3-linux_x86_64.whl"
    with zipfile.ZipFile(fa_wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: torch>=2.11" in meta and "Requires-Dist: einops" in meta
    assert "flash_attn/flash_attn_interface.py" in names            # upstream's Python
    assert "flash_attn_2_cuda/_C.abi3.so" in names                  # our extension
    assert "flash_attn_2_cuda/_build_info.json" in names
    # runtime code only: the runtime's copy beside the record, no build factory
    runtime = {f"flash_attn_2_cuda/_runtime/{p.name}" for p in (REPO / "python/blackwheel_runtime").glob("*.py")}
    assert runtime == {n for n in names if n.startswith("flash_attn_2_cuda/_runtime/")}
    assert not [n for n in names if "blackwheel_factory" in n or n.startswith(("blackwheel/", "blackwheel_runtime/"))]
    assert not any(n.startswith(("csrc/", "hopper/", "tests/")) for n in names)


def test_verify_abi_check_repair(fa_wheel, tmp_path):
    r = _factory("verify", str(fa_wheel))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sm_120a" in r.stdout
    r = _factory("abi-check", str(fa_wheel))
    assert r.returncode == 0, r.stdout + r.stderr
    r = _factory("repair", str(fa_wheel), "-w", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    (repaired,) = tmp_path.glob("flash_attn-*.whl")
    assert repaired.name.startswith("flash_attn-2.8.3.post2+cu130.sm120a-cp39-abi3-manylinux_")
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    r = subprocess.run([sys.executable, "-m", "blackwheel", "info", "--wheel", str(repaired)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "flash-attn 2.8.3.post2+cu130.sm120a" in r.stdout and "head_dims: 32" in r.stdout


def test_imports_as_flash_attn_and_refuses_without_gpu(fa_wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(site), str(fa_wheel)], check=True)
    code = r"""
import torch, flash_attn
from flash_attn import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache
import flash_attn_2_cuda
assert flash_attn.__version__ == "2.8.3.post2", flash_attn.__version__
assert flash_attn_2_cuda.head_dims_built() == [32]
q = torch.randn(1, 8, 2, 32, dtype=torch.bfloat16)
for call in (lambda: flash_attn_func(q, q, q),
             lambda: flash_attn_with_kvcache(q, q, q)):
    try:
        call()
    except RuntimeError as e:
        print("ERR", e)
    else:
        raise SystemExit("a call without a GPU did not raise")
"""
    env = dict(os.environ, PYTHONPATH=str(site), CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    errors = [l for l in r.stdout.splitlines() if l.startswith("ERR")]
    assert len(errors) == 2 and all("no CUDA GPU is visible" in e for e in errors), r.stdout


def test_drift_is_refused_by_the_one_guard(fa_wheel, other_torch_venv, tmp_path):
    """Installed with --no-deps beside torch 2.13.0+cpu: `import flash_attn` gives the same
    refusal as every product (not upstream's "undefined symbol"), and doctor explains it."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(site), str(fa_wheel)], check=True)
    r = run_cli(other_torch_venv, ["-c", "import flash_attn"], pythonpath=site, cwd=tmp_path)
    assert r.returncode == 1
    assert_drift_refusal(r.stderr, "flash-attn 2.8.3.post2+cu130.sm120a")
    r = run_cli(other_torch_venv, ["-m", "flash_attn_2_cuda", "doctor"], pythonpath=site, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[info] flash-attn 2.8.3.post2+cu130.sm120a: archs 12.0a" in r.stdout
    assert "[fail] torch: torch 2.13.0+cpu" in r.stdout
    # beside the locked torch: imports, no factory module, doctor accepts the torch
    r = run_cli(sys.executable, ["-c", "import flash_attn; " + FACTORY_MODULES], pythonpath=site,
                cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    r = run_cli(sys.executable, ["-m", "flash_attn_2_cuda", "doctor"], pythonpath=site, cwd=tmp_path)
    assert "[  ok] torch: torch 2.14.1+cu130" in r.stdout, r.stdout + r.stderr
