"""`python -m blackwheel_factory constraints --wheel W... -o requirements.lock`: a hash-pinned install set.

`pip install --require-hashes -r requirements.lock` wants every distribution it installs
pinned with == and a hash. The set is resolved by pip itself, never guessed:

    pip --isolated install --dry-run --ignore-installed --only-binary=:all: --report R.json
        [--python-version V --platform P ...]  <torch source>  W... torch==<lock>

and each entry of the report becomes `name==version --hash=sha256:...` (the hash pip
read from the index's #sha256 fragment, or of the local file). Torch sources:

  --torch-wheel-dir DIR  a directory with torch and all its dependencies (`pip download`)
  --torch-index URL      an index serving them with sha256 (e.g. the private index that mirrors them)
  --torch-preinstalled   the image's base layer already has the locked torch: pin only the
                         built wheels (which must need nothing but torch); pip then finds torch
                         installed and does not install it

The resolved torch must be the locked one: version (and local label, if the index shows one)
match torch-lock.toml, and where the wheel file is local its torch/version.py git_version too.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from blackwheel_factory.publishing import simple_index as si
from blackwheel_factory.inputs.config import ConfigError, TorchLock, load_lock
from blackwheel_factory.publishing.index import _metadata_text, sha256_file
from blackwheel_factory.publishing.publish import split_userinfo


class ConstraintsError(RuntimeError):
    """Resolution or pinning failed; the message names the fix."""


@dataclass(frozen=True)
class Pin:
    name: str          # canonical
    version: str
    sha256: str
    filename: str
    source: str        # "local" | "index"
    url: str = ""      # where it came from (redacted), for torch's git check

    def line(self) -> str:
        return f"{self.name}=={self.version} \\\n    --hash=sha256:{self.sha256}"


# --------------------------------------------------------------------------- pure

def torch_requirement(lock: TorchLock) -> str:
    """`torch==2.14.1`: the public version; on PyPI the cu130 build has no local label,
    on download.pytorch.org it is 2.14.1+cu130, and == without a label matches both."""
    return f"torch=={lock.public_version}"


def pins_from_report(report: dict, local_sha: dict[str, str] | None = None) -> list[Pin]:
    """Pins from `pip install --dry-run --report` JSON (schema version 1)."""
    local_sha = local_sha or {}
    if str(report.get("version")) != "1":
        raise ConstraintsError(f"pip report version {report.get('version')!r} is not 1; "
                               "use a pip >= 23 (its report format 1)")
    pins = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        name, version = canonicalize_name(meta["name"]), meta["version"]
        info = item.get("download_info") or {}
        url = info.get("url", "")
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        archive = info.get("archive_info") or {}
        sha = (archive.get("hashes") or {}).get("sha256")
        if not sha and (archive.get("hash") or "").startswith("sha256="):
            sha = archive["hash"].split("=", 1)[1]
        local = url.startswith("file:")
        if local and filename in local_sha:
            sha = local_sha[filename]
        if not sha:
            raise ConstraintsError(
                f"{name}=={version} ({filename}): the index gives no sha256 for it; use an index "
                "that serves #sha256= fragments (pypiserver --hash-algo sha256, `blackwheel index`) "
                "or --torch-wheel-dir with the files on disk")
        if "dir_info" in info or "vcs_info" in info:
            raise ConstraintsError(f"{name}: resolved to a directory/VCS source; only wheels can be pinned")
        pins.append(Pin(name, version, sha.lower(), filename, "local" if local else "index",
                        split_userinfo(url)[0]))
    return sorted(pins, key=lambda p: p.name)


def check_torch_pin(pins: list[Pin], lock: TorchLock, git_version: str | None = None) -> Pin:
    torch = [p for p in pins if p.name == "torch"]
    if not torch:
        raise ConstraintsError("torch is not in the resolved set; the torch source has no torch wheel")
    pin = torch[0]
    got, want = Version(pin.version), Version(lock.version)
    if got.public != want.public:
        raise ConstraintsError(f"resolved torch {pin.version} but torch-lock.toml locks {lock.version}")
    if got.local and want.local and got.local != want.local:
        raise ConstraintsError(f"resolved torch {pin.version} is another build than the locked "
                               f"{lock.version} (+{got.local} vs +{want.local}); point the torch "
                               "source at the index that has the locked build")
    if git_version is not None and git_version != lock.git_version:
        raise ConstraintsError(f"{pin.filename} was built from torch commit {git_version}, "
                               f"torch-lock.toml locks {lock.git_version}: another build of {pin.version}")
    return pin


def check_preinstalled(wheel_meta: dict[str, str], lock: TorchLock) -> None:
    """In --torch-preinstalled mode each built wheel may need torch (satisfied by the lock) only."""
    for filename, text in wheel_meta.items():
        import email.parser
        meta = email.parser.Parser().parsestr(text, headersonly=True)
        for raw in meta.get_all("Requires-Dist") or []:
            try:
                req = Requirement(raw)
            except InvalidRequirement as e:
                raise ConstraintsError(f"{filename}: bad Requires-Dist {raw!r}: {e}") from e
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(req.name) != "torch":
                raise ConstraintsError(
                    f"{filename} requires {raw!r}, which --torch-preinstalled does not pin; "
                    "use --torch-wheel-dir or --torch-index so that pip resolves it with hashes")
            if not req.specifier.contains(Version(lock.version), prereleases=True):
                raise ConstraintsError(f"{filename} requires {raw!r}, but the locked torch is {lock.version}")


def render(pins: list[Pin], header: list[str]) -> str:
    lines = [f"# {h}" if h else "#" for h in header]
    lines.append("")
    lines += [p.line() for p in pins]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- effects

def torch_git_version(wheel: Path) -> str | None:
    """git_version from torch/version.py inside a torch wheel."""
    try:
        with zipfile.ZipFile(wheel) as z:
            text = z.read("torch/version.py").decode("utf-8", "replace")
    except (KeyError, zipfile.BadZipFile, OSError):
        return None
    m = re.search(r"^git_version\s*=\s*['\"]([0-9a-f]+)['\"]", text, re.M)
    return m.group(1) if m else None


def pip_report(wheels: list[Path], requirement: str, source: list[str], target: list[str],
               timeout: float = 900.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="blackwheel-constraints-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install",
               "--dry-run", "--ignore-installed", "--only-binary=:all:", "--quiet",
               "--report", str(report), *target, *source, *map(str, wheels), requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        if proc.returncode != 0:
            from blackwheel_factory.publishing.publish import Scrubber
            out = Scrubber()(proc.stdout + proc.stderr).strip()
            raise ConstraintsError("pip could not resolve the install set:\n"
                                   + "\n".join("  | " + line for line in out.splitlines()[-30:])
                                   + "\n  fix: the torch source must hold torch and every dependency "
                                   "as wheels for the target python/platform")
        return json.loads(report.read_text())


def check_one_variant_per_project(filenames: list[str]) -> None:
    """One install set holds one build of each project: two arch variants of one version
    (0.1.0+cu130.sm120a, 0.1.0+cu130.sm90a.sm120a) cannot both be pinned (pure)."""
    seen: dict[str, list[str]] = {}
    for f in filenames:
        seen.setdefault(si.project_of(f), []).append(f)
    for project, files in seen.items():
        if len(files) > 1:
            versions = ", ".join(sorted(si.version_of(f) for f in files))
            raise ConstraintsError(
                f"{len(files)} wheels of {project} ({versions}): a constraints file pins one "
                f"build per target; write one file per variant (pass one --wheel of {project})")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(args) -> tuple[str, list[Pin]]:
    lock = load_lock(args.lock)
    wheels = [Path(w).resolve() for w in args.wheel]
    for w in wheels:
        if not w.is_file() or not w.name.endswith(".whl"):
            raise ConstraintsError(f"{w}: not a wheel file; pass the built wheels with --wheel dist/*.whl")
        si.project_of(w.name)
    check_one_variant_per_project([w.name for w in wheels])
    local_sha = {w.name: sha256_file(w) for w in wheels}
    target = []
    if args.python_version:
        target += ["--python-version", args.python_version]
    for p in args.platform or []:
        target += ["--platform", p]
    header = ["Written by `python -m blackwheel_factory constraints`; install with",
              "  pip install --require-hashes --only-binary=:all: --index-url $INDEX_URL -r THIS_FILE",
              f"torch lock: {lock.version} (git {lock.git_version})",
              f"target: python {args.python_version or '.'.join(map(str, sys.version_info[:2]))}, "
              f"platforms {', '.join(args.platform) if args.platform else 'of the machine that wrote it'}"]
    if args.torch_preinstalled:
        check_preinstalled({w.name: _metadata_text(w) for w in wheels}, lock)
        pins = sorted((Pin(si.project_of(w.name), si.version_of(w.name), local_sha[w.name], w.name, "local")
                       for w in wheels), key=lambda p: p.name)
        header.append(f"torch: {torch_requirement(lock)} comes from the base layer (not installed by this file)")
        return render(pins, header), pins
    if args.torch_wheel_dir:
        d = Path(args.torch_wheel_dir).resolve()
        if not d.is_dir():
            raise ConstraintsError(f"{d}: not a directory; make it with "
                                   f"`pip download {torch_requirement(lock)} --only-binary=:all: -d DIR`")
        source = ["--no-index", "--find-links", str(d)]
        header.append(f"resolved from wheels in {d}")
    else:
        source = ["--index-url", args.torch_index]
        header.append(f"resolved from {split_userinfo(args.torch_index)[0]}")
    report = pip_report(wheels, torch_requirement(lock), source, target)
    pins = pins_from_report(report, local_sha)
    torch = next((p for p in pins if p.name == "torch"), None)
    git = None
    if torch is not None and torch.url.startswith("file:"):
        git = torch_git_version(Path(unquote(urlsplit(torch.url).path)))
    check_torch_pin(pins, lock, git)
    for w in wheels:
        if not any(p.filename == w.name and p.sha256 == local_sha[w.name] for p in pins):
            raise ConstraintsError(f"{w.name} is not in the resolved set (pip chose another file); "
                                   "is it for the target python/platform?")
    return render(pins, header), pins


def add_arguments(parser) -> None:
    parser.add_argument("--wheel", nargs="+", action="extend", required=True, metavar="W",
                        help="the built wheels (pinned by their sha256)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--torch-wheel-dir", metavar="DIR",
                     help="directory with the locked torch and all its dependencies as wheels")
    src.add_argument("--torch-index", metavar="URL", help="index (simple API) serving torch and its dependencies")
    src.add_argument("--torch-preinstalled", action="store_true",
                     help="torch is in the base layer: pin only the built wheels")
    parser.add_argument("--python-version", default=None,
                        help="target interpreter, e.g. 3.12 (default: this one); pip resolves for it")
    parser.add_argument("--platform", action="append", default=None,
                        help="target platform tag, repeatable, e.g. manylinux_2_28_x86_64 (default: this machine)")
    parser.add_argument("--lock", type=Path, default=None, help="torch-lock.toml (default: the checkout's)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="requirements file to write")


def run(args) -> int:
    try:
        text, pins = build(args)
    except (ConstraintsError, ConfigError, si.SimpleIndexError) as e:
        print(f"blackwheel constraints: error: {e}", file=sys.stderr)
        return 1
    write_atomic(args.output, text)
    print(f"wrote {args.output}: {len(pins)} pinned distributions")
    for p in pins:
        print(f"  {p.name}=={p.version}  sha256:{p.sha256[:16]}...  ({p.source})")
    return 0
