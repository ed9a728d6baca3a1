"""The effects of an image build: buildah (daemonless, chroot isolation) and mmdebstrap runs.

Every run streams its output to a log file (a build prints thousands of lines) and keeps
the last lines for the error message.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from blackwheel_factory.image import plan as P


@dataclass
class Run:
    argv: list[str]
    returncode: int
    seconds: float
    tail: str           # last lines of stdout+stderr
    output: str = ""    # everything, when asked for (small outputs: inspect, probe)


def run(argv: list[str], env: dict, log: Path | None = None, capture: bool = False,
        timeout: float | None = None, scrub=None, cwd: Path | None = None) -> Run:
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=60)
    whole: list[str] = []
    logf = open(log, "a", encoding="utf-8") if log else None
    try:
        if logf:
            logf.write(f"$ {' '.join(argv)}\n")
            logf.flush()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace", cwd=cwd)
        assert proc.stdout is not None
        for line in proc.stdout:
            if scrub is not None:
                line = scrub(line)
            tail.append(line)
            if capture:
                whole.append(line)
            if logf:
                logf.write(line)
        rc = proc.wait(timeout=timeout)
    finally:
        if logf:
            logf.close()
    return Run(argv, rc, time.monotonic() - start, "".join(tail), "".join(whole))


@dataclass
class Store:
    """A buildah image store: the system's (root=None) or a private one under `root`."""
    root: Path | None = None
    driver: str = "auto"
    log: Path | None = None
    environ: dict = field(default_factory=lambda: dict(os.environ))

    def __post_init__(self) -> None:
        conf = None
        if self.root is not None:
            try:
                fs = Path("/proc/filesystems").read_text()
            except OSError:
                fs = ""
            self.driver = P.choose_driver(self.driver, fs)
            self.root.mkdir(parents=True, exist_ok=True)
            conf = self.root / "storage.conf"
            conf.write_text(P.storage_conf(self.driver, self.root))
        elif self.driver != "auto":
            raise P.ImageError("--storage-driver needs --storage DIR (a private store); the system "
                               "store keeps the driver of /etc/containers/storage.conf")
        self.env = P.buildah_env(self.environ, conf)

    def run(self, *argv: str, check: bool = True, capture: bool = False, scrub=None,
            cwd: Path | None = None) -> Run:
        r = run(list(argv), self.env, self.log, capture=capture, scrub=scrub, cwd=cwd)
        if check and r.returncode != 0:
            raise P.ImageError(f"`{' '.join(argv[:3])} ...` failed (exit {r.returncode}):\n{r.tail[-3000:]}")
        return r

    # ------------------------------------------------------------------ images
    def exists(self, ref: str) -> bool:
        return self.run("buildah", "inspect", "--type", "image", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict:
        return json.loads(self.run("buildah", "inspect", "--type", "image", ref, capture=True).output)

    def manifest_digest(self, ref: str) -> str:
        """sha256 of the image manifest: the digest a registry shows for an uncompressed push."""
        return "sha256:" + hashlib.sha256(self.inspect(ref)["Manifest"].encode()).hexdigest()

    def layers(self, ref: str) -> list[tuple[str, int]]:
        """(digest, size in bytes) of each layer, base first."""
        m = json.loads(self.inspect(ref)["Manifest"])
        return [(l["digest"], int(l["size"])) for l in m["layers"]]

    def import_rootfs(self, tar: Path, ref: str, epoch: int) -> Run:
        """A one-layer image from a root file system tar, with fixed timestamps."""
        c = self.run("buildah", "from", "scratch", capture=True).output.strip().splitlines()[-1]
        try:
            self.run("buildah", "add", c, str(tar), "/")
            self.run("buildah", "config", *P.OS_CONFIG, c)
            return self.run("buildah", "commit", "--timestamp", str(epoch), "--identity-label=false",
                            "--format", "oci", c, ref)
        finally:
            self.run("buildah", "rm", c, check=False)

    def bud(self, plan: P.BudPlan, scrub=None) -> Run:
        return self.run(*plan.argv(), check=False, scrub=scrub)

    def run_in(self, ref: str, *cmd: str) -> Run:
        """Run a command in a throw-away container of `ref` (buildah run)."""
        c = self.run("buildah", "from", "--pull=false", ref, capture=True).output.strip().splitlines()[-1]
        try:
            return self.run("buildah", "run", c, "--", *cmd, check=False, capture=True)
        finally:
            self.run("buildah", "rm", c, check=False)

    def export_dir(self, ref: str, dest: Path) -> Run:
        """The image as stored (uncompressed layers, same manifest digest) into `dest`
        (containers `dir:` layout: manifest.json and one file per blob). `oci:` with
        buildah 1.28 compresses the layers even with --disable-compression."""
        return self.run("buildah", "push", "--quiet", "--disable-compression", ref, f"dir:{dest}")

    def rmi(self, ref: str) -> None:
        self.run("buildah", "rmi", "--force", ref, check=False)

    def destroy(self) -> None:
        """Remove a private store: its containers, images, the mounts the overlay driver
        keeps under it (a bind mount of graph/overlay on itself), then the directory."""
        if self.root is None:
            raise P.ImageError("destroy() is for a private store (--storage)")
        self.run("buildah", "rm", "--all", check=False)
        self.run("buildah", "rmi", "--all", "--force", check=False)
        root = str(self.root.resolve())
        try:
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        except OSError:
            mounts = []
        for m in sorted((m for m in mounts if m == root or m.startswith(root + "/")), reverse=True):
            subprocess.run(["umount", m], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def mmdebstrap(suite: str, out: Path, epoch: int, packages=P.DEFAULT_PACKAGES, mirror: str | None = None,
               log: Path | None = None) -> Run:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    tmp = out.with_name(f".partial-{out.name}")   # mmdebstrap picks the format from the suffix
    tmp.unlink(missing_ok=True)
    r = run(P.mmdebstrap_argv(suite, tmp, packages, mirror), env, log)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise P.ImageError(f"mmdebstrap failed (exit {r.returncode}); it needs root and a Debian "
                           f"mirror (apt-get install mmdebstrap):\n{r.tail[-3000:]}")
    tmp.replace(out)
    return r
