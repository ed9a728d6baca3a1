"""sccache-dist configuration files, as text (pure).

The keys are sccache 0.16.0's (docs/FARM.md, /work/shared/GUIDE.md section 6):
  scheduler: public_addr, [client_auth] type="token", [server_auth] type="jwt_hs256"
  server:    cache_dir, public_addr, scheduler_url, [builder] type="overlay" (build_dir,
             bwrap_path), [scheduler_auth] type="jwt_token" (token made for ITS address)
  client:    [dist] scheduler_url, toolchains=[], [dist.auth] type="token"
Tokens and keys come in as arguments: cluster.py asks sccache-dist for them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class FarmConfigError(ValueError):
    """A farm setting that cannot work; the message names the fix."""


def _q(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(str(value))


@dataclass(frozen=True)
class ServerSpec:
    addr: str                 # host:port the scheduler and clients reach it at
    cache_dir: Path           # toolchains uploaded by clients
    build_dir: Path           # overlay builder's scratch
    token: str                # jwt for this addr, signed with the scheduler's key


def _addr(addr: str, what: str) -> str:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FarmConfigError(f"{what} {addr!r} is not HOST:PORT (e.g. 10.0.0.5:10501)")
    return addr


def scheduler_url(addr: str) -> str:
    return f"http://{_addr(addr, 'scheduler address')}"


def scheduler_toml(addr: str, client_token: str, jwt_key: str) -> str:
    if not client_token or not jwt_key:
        raise FarmConfigError("scheduler config needs a client token and a jwt key "
                              "(`sccache-dist auth generate-jwt-hs256-key`)")
    return (f"# sccache-dist scheduler (written by `python -m blackwheel_factory farm`)\n"
            f"public_addr = {_q(_addr(addr, 'scheduler address'))}\n\n"
            f"[client_auth]\ntype = \"token\"\ntoken = {_q(client_token)}\n\n"
            f"[server_auth]\ntype = \"jwt_hs256\"\nsecret_key = {_q(jwt_key)}\n")


def server_toml(spec: ServerSpec, scheduler_addr: str, bwrap: str = "/usr/bin/bwrap") -> str:
    if not spec.token:
        raise FarmConfigError(f"server {spec.addr}: no token; make one with `sccache-dist auth "
                              f"generate-jwt-hs256-server-token --server {spec.addr} ...`")
    return (f"# sccache-dist build server {spec.addr} (root, overlayfs, bubblewrap)\n"
            f"cache_dir = {_q(spec.cache_dir)}\n"
            f"public_addr = {_q(_addr(spec.addr, 'server address'))}\n"
            f"scheduler_url = {_q(scheduler_url(scheduler_addr))}\n\n"
            f"[builder]\ntype = \"overlay\"\nbuild_dir = {_q(spec.build_dir)}\n"
            f"bwrap_path = {_q(bwrap)}\n\n"
            f"[scheduler_auth]\ntype = \"jwt_token\"\ntoken = {_q(spec.token)}\n")


def client_toml(scheduler_addr: str, client_token: str,
                toolchain_cache_size: int = 10 << 30, toolchain_dir: str | Path | None = None) -> str:
    """The client's SCCACHE_CONF: sccache's own [dist] section, nothing blackwheel-only.

    toolchain_dir ([dist] cache_dir: where the client keeps the toolchain archives it sends):
    the farm's own. sccache's default, ~/.cache/sccache-dist-client, is shared by every farm
    and keys an archive by the compiler's path and hash; an archive packed from another
    target of the same symlinked path (build/cuda-prefix -> another venv) was reused and the
    servers could not run its cudafe++ (measured 12-07: "bwrap: execvp ...: No such file")."""
    if not client_token:
        raise FarmConfigError("client config needs the scheduler's client token")
    cache = f"cache_dir = {_q(str(toolchain_dir))}\n" if toolchain_dir is not None else ""
    return ("# sccache client: SCCACHE_CONF=<this file> makes every sccache compile try the farm\n"
            f"[dist]\nscheduler_url = {_q(scheduler_url(scheduler_addr))}\n"
            f"toolchains = []\ntoolchain_cache_size = {int(toolchain_cache_size)}\n{cache}\n"
            f"[dist.auth]\ntype = \"token\"\ntoken = {_q(client_token)}\n")


def dist_scheduler_url(conf_text: str) -> str | None:
    """The [dist] scheduler_url of an sccache client config, or None without one."""
    import tomllib
    try:
        data = tomllib.loads(conf_text)
    except tomllib.TOMLDecodeError as e:
        raise FarmConfigError(f"SCCACHE_CONF is not valid TOML: {e}") from None
    url = (data.get("dist") or {}).get("scheduler_url")
    return str(url) if url else None
