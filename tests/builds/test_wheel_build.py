"""The real thing, small: `pip wheel .` of the marlin_fp4 kernel set (vLLM's FP4
Marlin: 2 generated kernel TUs + marlin.cu + repack, about 1-2 minutes per build on
2 cores), built twice from two copies of the checkout whose paths have DIFFERENT
lengths, with different build dirs (lengths too), different BLACKWHEEL_CACHE dirs
(each a fresh cache seeded only with the pinned blobs) and a different HOME.

Proves: the build compiles real upstream code from the pinned sources; the two
wheels are byte-identical (reproducible, cold compiles with the compiler cache
off; the test checks that its two builds really differ in every one of those
facts, so it cannot pass by accident); the wheel's name carries its variant
(0.1.0+cu130.sm120a); every extension holds sm_120a SASS (verify); every undefined symbol resolves
in the locked torch and stays on the stable C shim (abi-check); the installed
wheel registers its ops under torch.ops.blackwheel and refuses CPU tensors with a
clear error; and a 9.0a-only build is refused by verify when 12.0a is asked for.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.build

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from fixtures_abi import (FACTORY_MODULES, assert_drift_refusal, other_torch_venv,  # noqa: E402,F401
                          run_cli)


def _checkout_copy(dest: Path) -> Path:
    """A copy of the tracked (and untracked, not ignored) files: a clean checkout."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = REPO / f
        if src.is_symlink():              # python/<product>/_runtime -> ../blackwheel_runtime
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dest / f)
        elif src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def _build(src: Path, out: Path, build_dir: Path, archs: str, kernels: str = "marlin_fp4",
           cache: str = "off", **extra_env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BLACKWHEEL_KERNELS=kernels, BLACKWHEEL_ARCHS=archs,
               BLACKWHEEL_COMPILER_CACHE=cache, **extra_env)
    env.pop("SOURCE_DATE_EPOCH", None)     # the configuration decides it
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-v",
         str(src), "-w", str(out), "-C", f"build-dir={build_dir}"],
        capture_output=True, text=True, env=env, cwd=src)


def _wheel(out: Path) -> Path:
    wheels = sorted(out.glob("blackwheel-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _cli(*args, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    return subprocess.run([sys.executable, "-m", "blackwheel_factory", *args], capture_output=True,
                          text=True, env=env, **kw)


def _seeded_cache(dest: Path) -> Path:
    """A fresh source cache holding only the pinned blobs (copied from this machine's
    cache when it has them, so that the builds need no index): trees, manifests and
    staged csrc/ are made anew by the build."""
    sys.path.insert(0, str(REPO / "python"))
    from blackwheel_factory.sources.fetch import default_cache_dir
    blobs = default_cache_dir() / "blobs"
    if blobs.is_dir():
        shutil.copytree(blobs, dest / "blobs")
    dest.mkdir(parents=True, exist_ok=True)
    return dest


# Two builds that differ in every path and environment fact a build can see:
# checkout path (and its length), build dir (and its length), BLACKWHEEL_CACHE, HOME.
VARIANTS = {
    "a": {"src": "a", "build": "b", "cache": "c", "home": "h"},
    "b": {"src": "checkout-with-a-much-longer-path/blackwheel",
          "build": "another/build-directory-of-other-length", "cache": "caches/second-user-cache",
          "home": "homes/someone-else"},
}


def build_variant(root: Path, name: str) -> tuple[Path, tuple[str, str, str, str]]:
    """One clean local build of VARIANTS[name] under ``root`` (compiler cache off):
    (the wheel, the facts that differ between variants)."""
    v = VARIANTS[name]
    src = _checkout_copy(root / name / v["src"])
    cache = _seeded_cache(root / name / v["cache"])
    home = root / name / v["home"]
    home.mkdir(parents=True)
    out = root / name / "dist"
    r = _build(src, out, root / name / v["build"], "12.0a", BLACKWHEEL_CACHE=str(cache),
               HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert list((cache / "manifests").glob("vllm-*.json")), f"{cache} was not the build's cache"
    return _wheel(out), (str(src), str(root / name / v["build"]), str(cache), str(home))


# `two_builds` (session-scoped, shared with test_image.py): tests/builds/conftest.py


def test_two_clean_builds_are_byte_identical(two_builds):
    a, b = two_builds
    assert a.name == b.name
    if _sha(a) != _sha(b):
        r = _cli("verify", "--against", str(a), str(b))
        pytest.fail(f"wheels differ:\n{r.stdout}{r.stderr}")
    print(f"sha256 {_sha(a)}  {a.name}")


def test_the_wheel_name_says_what_it_is_for(two_builds):
    assert two_builds[0].name.startswith("blackwheel-0.1.0+cu130.sm120a-cp39-abi3-"), two_builds[0].name


def test_build_record_names_every_input(two_builds):
    with zipfile.ZipFile(two_builds[0]) as z:
        info = json.loads(z.read("blackwheel/_build_info.json"))
        names = z.namelist()
    assert info["archs"] == ["12.0a"]
    assert list(info["kernels"]) == ["marlin_fp4"]
    assert info["kernels"]["marlin_fp4"]["archs"] == ["12.0a"]
    assert "blackwheel/_marlin_fp4.abi3.so" in names
    assert {s["name"] for s in info["sources"]} == {"vllm", "cutlass"}
    vllm = next(s for s in info["sources"] if s["name"] == "vllm")
    assert [p["name"] for p in vllm["patches"]] == sorted(p.name for p in (REPO / "patches/vllm-0.33.0").glob("*.patch"))
    assert all(len(p["sha256"]) == 64 for p in vllm["patches"])
    # the digest of the verified tree that was compiled, and of our own csrc/
    assert all(len(s["tree_sha256"]) == 64 for s in info["sources"])
    sys.path.insert(0, str(REPO / "python"))
    from blackwheel_factory.sources.fetch import digest_of, file_digests
    assert info["own_sources"]["csrc_sha256"] == digest_of(file_digests(REPO / "csrc"))
    assert info["blackwheel_version"] == "0.1.0+cu130.sm120a"
    for tool in ("scikit-build-core_dist", "cmake_dist", "ninja_dist", "host_compiler", "cmake"):
        assert info["toolchain"].get(tool), tool
    assert info["torch"]["lock"]["version"] == "2.14.1+cu130"
    assert info["abi"] == "stable" and info["torch"]["requirement"] == "torch>=2.11"
    assert info["toolchain"]["nvcc_version"] == "13.0.88" and info["toolchain"]["nvcc_origin"] == "pypi"
    assert info["source_date_epoch"] == 1793491200
    blob = json.dumps(info)
    assert "/tmp/" not in blob and str(REPO) not in blob, "absolute build paths leak into the record"


def test_metadata_requires_torch_from_the_stable_target(two_builds):
    with zipfile.ZipFile(two_builds[0]) as z:
        meta = z.read("blackwheel-0.1.0+cu130.sm120a.dist-info/METADATA").decode()
    assert "Requires-Dist: torch>=2.11" in meta
    assert "Version: 0.1.0+cu130.sm120a" in meta
    assert "Requires-Python: >=3.9" in meta           # agrees with the cp39-abi3 tag


def test_verify_finds_sm120a_sass(two_builds, tmp_path):
    out = tmp_path / "verify.json"
    r = _cli("verify", str(two_builds[0]), "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(out.read_text())
    text = json.dumps(report)
    assert "sm_120a" in text


def test_abi_check_passes_on_the_stable_shim(two_builds):
    r = _cli("abi-check", str(two_builds[0]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stable" in r.stdout


def test_installed_wheel_registers_ops_and_refuses_cpu_tensors(two_builds, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(two_builds[0])], check=True)
    code = r"""
import torch, blackwheel
assert blackwheel.build_info()["kernels"]["marlin_fp4"]["archs"] == ["12.0a"]
for op in ("marlin_gemm", "gptq_marlin_repack"):
    assert hasattr(torch.ops.blackwheel, op), op
print("schema:", torch.ops.blackwheel.gptq_marlin_repack.default._schema)
try:
    torch.ops.blackwheel.gptq_marlin_repack(torch.zeros(8, 64, dtype=torch.int32), 128, 64, 4, False)
except Exception as e:   # no CUDA kernel for CPU tensors: a clean dispatcher error
    print("refused:", type(e).__name__, str(e).splitlines()[0])
else:
    raise SystemExit("a CPU tensor reached the CUDA kernel")
# the fakes are registered against the schemas the .so defined (torch.compile, meta)
from torch._subclasses.fake_tensor import FakeTensorMode
with FakeTensorMode():
    r = torch.ops.blackwheel.gptq_marlin_repack(torch.empty(16, 64, dtype=torch.int32, device="cuda"),
                                                128, 64, 4, False)
    assert tuple(r.shape) == (8, 128) and r.dtype == torch.int32, r
from blackwheel import ops
from blackwheel.marlin_fp4 import MarlinFP4Weight
meta = lambda *s, dt=torch.bfloat16: torch.empty(*s, dtype=dt, device="meta")
w = MarlinFP4Weight("nvfp4", meta(8, 128, dt=torch.int32), meta(8, 64, dt=torch.float8_e4m3fn),
                    meta(1, dt=torch.float32), None, 48, 128, 64, 128, torch.bfloat16)
f = torch.compile(lambda x: ops.marlin_fp4_gemm(x, w), fullgraph=True, backend="aot_eager")
out = f(meta(3, 128))
assert tuple(out.shape) == (3, 48) and out.dtype == torch.bfloat16, out
print("fakes: ok")
"""
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "gptq_marlin_repack(Tensor b_q_weight" in r.stdout
    assert "refused:" in r.stdout and "CUDA" in r.stdout
    assert "fakes: ok" in r.stdout


RUNTIME_FILES = {f"blackwheel/_runtime/{p.name}" for p in (REPO / "python/blackwheel_runtime").glob("*.py")}


def test_the_wheel_carries_the_runtime_and_no_factory(two_builds):
    with zipfile.ZipFile(two_builds[0]) as z:
        names = z.namelist()
        sizes = {i.filename: i.compress_size for i in z.infolist()}
    assert not [n for n in names if n.startswith("blackwheel_factory") or "/blackwheel_factory/" in n]
    assert {n.split("/")[0] for n in names} == {"blackwheel", "blackwheel-0.1.0+cu130.sm120a.dist-info"}
    assert RUNTIME_FILES <= set(names) and len(names) == len(set(names))
    runtime = [n for n in names if n.startswith("blackwheel/_runtime/")]
    assert sorted(runtime) == sorted(RUNTIME_FILES)      # the runtime's modules, nothing else
    print(f"runtime copy: {len(runtime)} files, {sum(sizes[n] for n in runtime):,} B compressed; "
          f"wheel {two_builds[0].stat().st_size:,} B")


def test_installed_with_no_deps_the_one_guard_checks_it(two_builds, other_torch_venv, tmp_path):
    """--no-deps beside the locked torch: imports without any factory module, doctor
    reads its record; beside torch 2.13.0+cpu: the one guard's refusal."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(site), str(two_builds[0])], check=True)
    r = run_cli(sys.executable, ["-c", "import blackwheel; " + FACTORY_MODULES], pythonpath=site,
                cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    r = run_cli(sys.executable, ["-m", "blackwheel", "doctor"], pythonpath=site, cwd=tmp_path)
    assert "[info] blackwheel 0.1.0+cu130.sm120a: archs 12.0a (blackwheel/_build_info.json)" in r.stdout, \
        r.stdout + r.stderr
    assert "[  ok] torch: torch 2.14.1+cu130" in r.stdout
    r = run_cli(sys.executable, ["-m", "blackwheel", "verify", str(two_builds[0])], pythonpath=site,
                cwd=tmp_path)
    assert r.returncode == 2 and "python -m blackwheel_factory verify" in r.stderr
    r = run_cli(other_torch_venv, ["-c", "import blackwheel"], pythonpath=site, cwd=tmp_path)
    assert r.returncode == 1
    assert_drift_refusal(r.stderr, "blackwheel 0.1.0+cu130.sm120a")


def test_verify_refuses_a_wheel_without_sm120_sass(tmp_path):
    src = _checkout_copy(tmp_path / "src")
    r = _build(src, tmp_path / "dist", tmp_path / "build", "9.0a")
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    r = _cli("verify", str(_wheel(tmp_path / "dist")), "--archs", "12.0a")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "sm_120a" in r.stdout + r.stderr and "marlin_fp4" in r.stdout + r.stderr


def test_a_set_asked_for_by_name_without_a_matching_arch_fails_at_configure(tmp_path):
    src = _checkout_copy(tmp_path / "src")
    r = _build(src, tmp_path / "dist", tmp_path / "build", "9.0a", kernels="nvfp4")
    assert r.returncode != 0
    log = r.stdout + r.stderr
    assert "kernel set 'nvfp4' was asked for by name" in log
    assert "Building CUDA object" not in log      # failed before compiling anything
