"""Test helpers for the publish/index/constraints round trip.

make_wheel: a small *real* blackwheel wheel (the package's Python files and its runtime copy from this
checkout + a _build_info.json that declares zero kernel families), with a proper
RECORD, in seconds instead of the CUDA build's hours.

PyPIServer: pypiserver on 127.0.0.1, a random free port, htpasswd auth on every
action (list, download, update), started as a subprocess and stopped by its pid.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "python" / "blackwheel"
RUNTIME = REPO / "python" / "blackwheel_runtime"   # copied in as blackwheel/_runtime (a symlink here)
TAG = "cp39-abi3-manylinux_2_28_x86_64"
EPOCH = (2026, 11, 1, 0, 0, 0)


def torch_lock_dict() -> dict:
    sys.path.insert(0, str(REPO / "python"))
    from blackwheel_factory.inputs.config import load_lock
    return load_lock(REPO / "torch-lock.toml").as_dict()


def build_info(**overrides) -> dict:
    info = {
        "schema": 1,
        "blackwheel_version": "0.1.0",
        "archs": [],
        "kernels": {},
        "skipped": {"scaled_mm": "test wheel: no kernels", "nvfp4": "test wheel: no kernels",
                    "marlin_fp4": "test wheel: no kernels", "flash_attn": "test wheel: no kernels"},
        "abi": "stable",
        "torch": {"lock": torch_lock_dict(), "requirement": "torch>=2.11"},
        "sources": [],
        "toolchain": {},
        "flags": {},
        "source_date_epoch": 1793491200,
    }
    info.update(overrides)
    return info


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(out_dir: Path, *, version: str = "0.1.0", info: dict | None = None,
               extra: dict[str, bytes] | None = None, requires: list[str] | None = None) -> Path:
    """Assemble blackwheel-<version>-cp39-abi3-manylinux_2_28_x86_64.whl deterministically.

    `extra` adds files (package-relative) so that two wheels can share a name and differ."""
    files: dict[str, bytes] = {}
    # as the real wheel is laid out: the package, the runtime copy, no factory (issue 22)
    for p in sorted(PKG.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".so", ".pyc") \
                and p.name != "_build_info.json" and "_runtime" not in p.relative_to(PKG).parts:
            files["blackwheel/" + p.relative_to(PKG).as_posix()] = p.read_bytes()
    for p in sorted(RUNTIME.rglob("*.py")):
        if "__pycache__" not in p.parts:
            files["blackwheel/_runtime/" + p.relative_to(RUNTIME).as_posix()] = p.read_bytes()
    info = info if info is not None else build_info()
    files["blackwheel/_build_info.json"] = (json.dumps(info, indent=1, sort_keys=True) + "\n").encode()
    for rel, data in (extra or {}).items():
        files["blackwheel/" + rel] = data
    dist_info = f"blackwheel-{version}.dist-info"
    reqs = ["torch>=2.11"] if requires is None else requires
    files[f"{dist_info}/METADATA"] = ("Metadata-Version: 2.1\nName: blackwheel\n"
                                      f"Version: {version}\nSummary: test wheel (no kernels)\n"
                                      "Requires-Python: >=3.10\n"
                                      + "".join(f"Requires-Dist: {r}\n" for r in reqs)).encode()
    files[f"{dist_info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: blackwheel-tests\n"
                                   f"Root-Is-Purelib: false\nTag: {TAG}\n").encode()
    record = f"{dist_info}/RECORD"
    lines = [f"{n},{_record_hash(d)},{len(d)}" for n, d in files.items()] + [f"{record},,"]
    files[record] = ("\n".join(lines) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"blackwheel-{version}-{TAG}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            zi = zipfile.ZipInfo(name, EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return path


def tiny_wheel(d: Path, name: str, version: str, requires=(), files=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}-{version}-py3-none-any.whl"
    di = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(p, "w") as z:
        for rel, text in (files or {}).items():
            z.writestr(rel, text)
        z.writestr(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
        z.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{di}/RECORD", "")
    return p


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- pypiserver

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PyPIServer:
    root: Path
    users: dict = field(default_factory=lambda: {"publisher": "s3cret-Pa55-word"})
    auth: str = "update,download,list"     # pypiserver -a: actions that need a password
    proc: subprocess.Popen | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def simple(self) -> str:
        return self.url + "simple/"

    def url_with(self, user: str, password: str) -> str:
        from urllib.parse import quote
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> "PyPIServer":
        from passlib.apache import HtpasswdFile
        packages = self.root / "packages"
        packages.mkdir(parents=True, exist_ok=True)
        htpasswd = self.root / "htpasswd"
        ht = HtpasswdFile(str(htpasswd), new=True, default_scheme="apr_md5_crypt")
        for user, pw in self.users.items():
            ht.set_password(user, pw)
        ht.save()
        exe = Path(sys.executable).with_name("pypi-server")
        cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "pypiserver"])]
        for attempt in range(3):
            self.port = free_port()
            log = open(self.root / f"server-{attempt}.log", "wb")
            self.proc = subprocess.Popen(
                [*cmd, "run", "-p", str(self.port), "-i", "127.0.0.1", "-a", self.auth,
                 "-P", str(htpasswd), "--disable-fallback", "--hash-algo", "sha256",
                 "--server", "wsgiref", str(packages)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    urllib.request.urlopen(self.url + "health", timeout=2).close()
                    return self
                except (urllib.error.URLError, ConnectionError, OSError):
                    time.sleep(0.2)
            self.stop()
        raise RuntimeError(f"pypiserver did not start; see {self.root}/server-*.log")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def stored(self) -> list[str]:
        return sorted(p.name for p in (self.root / "packages").iterdir())


def run_cli(*argv: str, env: dict | None = None, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """`python -m blackwheel_factory ARGV` from this checkout, in a clean environment."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("TWINE_", "PIP_"))}
    e["PYTHONPATH"] = str(REPO / "python")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "blackwheel_factory", *argv], capture_output=True, text=True,
                          env=e, cwd=REPO, timeout=timeout, stdin=subprocess.DEVNULL)

