"""Pure decisions of an image build: what to run, with which settings, and what a failure means.

Nothing here runs a process or touches the disk; buildah.py does, with these values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SECRET_ID = "index_url"                    # RUN --mount=type=secret,id=index_url (Dockerfile.base)
DEFAULT_PACKAGES = ("python3", "python3-venv", "python3-pip")
# manylinux aliases (PEP 600): the legacy names stand for these glibc versions
_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


class ImageError(RuntimeError):
    """An image step cannot go on; the message names the fix and holds no secret."""


def platform_tags(glibc: tuple[int, int], arch: str = "x86_64") -> list[str]:
    """The platform tags pip accepts on a glibc `glibc` system, most specific first, as pip's
    own tag list has them: manylinux_2_N for N down to 5, the legacy aliases, linux_<arch>.
    `pip --platform` takes exactly the tags it is given, so a lock written for an image must
    list them all (a manylinux_2_27 wheel is installable on glibc 2.36)."""
    major, minor = glibc
    if major != 2 or minor < 5:
        raise ImageError(f"glibc {major}.{minor}: manylinux wheels need glibc 2.5 or newer")
    tags = []
    for m in range(minor, 4, -1):
        tags.append(f"manylinux_2_{m}_{arch}")
        if (2, m) in _LEGACY:
            tags.append(f"{_LEGACY[(2, m)]}_{arch}")
    return tags + [f"linux_{arch}"]


def parse_probe(text: str) -> tuple[str, tuple[int, int]]:
    """`python3 -c ...` output of the base image probe: "3.11 glibc 2.36" -> ("3.11", (2, 36))."""
    m = re.search(r"(\d+\.\d+)\s+glibc\s+(\d+)\.(\d+)", text)
    if not m:
        raise ImageError(f"could not read the base image's python and glibc from {text.strip()[:200]!r}; "
                         "pass --python-version and --glibc")
    return m.group(1), (int(m.group(2)), int(m.group(3)))


PROBE = ("import platform, sys; "
         "print('%d.%d' % sys.version_info[:2], 'glibc', platform.libc_ver()[1])")


def choose_driver(requested: str, filesystems: str) -> str:
    """Storage driver: vfs works everywhere (copies each layer in full: a FROM of a 6 GB base
    copies 6 GB); overlay where the kernel has it (this machine: a FROM costs nothing)."""
    if requested in ("vfs", "overlay"):
        return requested
    if requested != "auto":
        raise ImageError(f"--storage-driver {requested!r}: choose vfs, overlay or auto")
    names = {line.split()[-1] for line in filesystems.splitlines() if line.strip()}
    return "overlay" if "overlay" in names else "vfs"


def storage_conf(driver: str, root: Path) -> str:
    """containers-storage.conf(5) for a private store under `root` (CONTAINERS_STORAGE_CONF)."""
    return (f'[storage]\ndriver = "{driver}"\nrunroot = "{root / "run"}"\n'
            f'graphroot = "{root / "graph"}"\n')


def buildah_env(environ: dict, conf: Path | None) -> dict:
    """The environment for buildah: chroot isolation (no runtime, no cgroup setup; it shares the
    host network, so an index on 127.0.0.1 is reachable), a private store when given, and no
    PIP_* or index settings of the caller leaking into anything."""
    env = {k: v for k, v in environ.items()
           if not k.startswith(("PIP_", "TWINE_", "BLACKWHEEL_INDEX", "BUILDAH_"))}
    env["BUILDAH_ISOLATION"] = "chroot"
    if conf is not None:
        env["CONTAINERS_STORAGE_CONF"] = str(conf)
    return env


@dataclass(frozen=True)
class BudPlan:
    containerfile: Path
    context: Path
    tag: str
    base_image: str
    epoch: int
    secret_file: Path | None

    def argv(self) -> list[str]:
        """One tag, no intermediate layers, fixed timestamps (history and every file in the
        layer), SOURCE_DATE_EPOCH in the RUN steps (pip writes hash-based .pyc files then),
        no pull of a base that is already in the store, no buildah version label."""
        argv = ["buildah", "bud", "--isolation", "chroot", "--layers=false", "--pull=false",
                "--identity-label=false", "--format", "oci",
                "--timestamp", str(self.epoch),
                "--build-arg", f"SOURCE_DATE_EPOCH={self.epoch}",
                "--build-arg", f"BASE_IMAGE={self.base_image}"]
        if self.secret_file is not None:
            argv += ["--secret", f"id={SECRET_ID},src={self.secret_file}"]
        return argv + ["-f", str(self.containerfile), "-t", self.tag, str(self.context)]


def mmdebstrap_argv(suite: str, out: Path, packages=DEFAULT_PACKAGES, mirror: str | None = None) -> list[str]:
    """A minimal Debian root file system as a tar; with SOURCE_DATE_EPOCH set (the caller's
    environment) two runs against the same mirror state give the same bytes."""
    argv = ["mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
            f"--include={','.join(packages)}", suite, str(out)]
    if mirror:
        argv.append(mirror)
    return argv


OS_CONFIG = ["--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash"]


def default_tag(wheel_names: list[str], torch_version: str) -> str:
    """blackwheel-base:<pack version>-torch<torch version>, the local label's '+' as '-'."""
    version = "0"
    for name in wheel_names:
        if name.startswith("blackwheel-"):
            version = name.split("-")[1]
    return f"localhost/blackwheel-base:{version}-torch{torch_version}".replace("+", "-")


def image_lock_text(lock_text: str) -> str:
    """The lock as it goes into the image (/opt/blackwheel/requirements.lock): the pins only,
    under a fixed header. The header `constraints` writes names the index it resolved from
    (a host, a random port in a test): it stays out, so the layer does not depend on it."""
    body = [line for line in lock_text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    if not any("--hash=sha256:" in line for line in body):
        raise ImageError("the requirements lock has no --hash=sha256: pins; write it with "
                         "`python -m blackwheel_factory constraints` (or `image build --wheel ...`)")
    return ("# blackwheel image lock: pip install --require-hashes --only-binary=:all: -r THIS_FILE\n"
            + "\n".join(body) + "\n")


def pinned(lock_text: str) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements lock."""
    out = {}
    for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", lock_text, re.M):
        out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def lock_torch_warning(lock_text: str, locked_version: str) -> str | None:
    """A lock whose torch is not torch-lock.toml's: the build will stop at the import guard."""
    got = pinned(lock_text).get("torch")
    public = locked_version.split("+")[0]
    if got is None:
        return "the requirements lock pins no torch: the base image must already have the locked torch"
    if got.split("+")[0] != public or ("+" in got and got != locked_version):
        return (f"the requirements lock pins torch=={got}, torch-lock.toml locks {locked_version}: "
                "the import guard in the image will refuse it")
    return None


# pip / guard messages -> what to do about them (first match wins)
_FAILURES = [
    (re.compile(r"DO NOT MATCH THE HASHES"),
     "a file on the index does not have the sha256 the lock pins: the index was changed after the "
     "lock was written (a replaced or tampered file), or the lock is stale; publish files once "
     "(publish refuses to replace them) and rewrite the lock with `constraints`"),
    (re.compile(r"TorchMismatchError|does not fit this build|blackwheel was built for"),
     "the torch installed from the lock is not the torch the wheels were built for (the import "
     "guard's message is above); write the lock with `constraints` against torch-lock.toml"),
    (re.compile(r"(401|403)[^\n]*(Unauthorized|Forbidden)|User for 127|HTTP error 401"),
     "the index refused the credentials: pass the index URL with user:password@ (or "
     "BLACKWHEEL_INDEX_URL); it reaches the build only as the secret id=index_url"),
    (re.compile(r"No matching distribution found|Could not find a version that satisfies"),
     "a pinned file is not on the index (or not for the image's python/platform): publish every "
     "file of the lock to the index, and write the lock for the base image's python and glibc"),
    (re.compile(r"set --build-arg INDEX_URL=\.\.\. or --secret id=index_url"),
     "no index: pass --index-url (it goes in as the build secret id=index_url)"),
]


def diagnose(output: str) -> str | None:
    for pattern, fix in _FAILURES:
        if pattern.search(output):
            return fix
    return None


def check_wheels(names: list[str]) -> None:
    """The image's torch check is blackwheel's import guard and doctor: the kernel pack must be in."""
    if not any(n.startswith("blackwheel-") for n in names):
        raise ImageError("no kernel-pack wheel (blackwheel-*.whl) among --wheel: the image runs "
                         "blackwheel's import guard and `python -m blackwheel doctor` at build time; "
                         "pass the kernel pack too (flash_attn alone has no guard)")
    for n in names:
        if not n.endswith(".whl"):
            raise ImageError(f"{n}: not a wheel; pass the published wheels (dist/*.whl)")
