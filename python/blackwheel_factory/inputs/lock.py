"""The torch lock: compare an environment's torch with torch-lock.toml, write the lock.

Pure core (no torch import, no I/O): ``TorchFacts`` (what an environment has),
``compare(lock, facts, abi)`` -> list of ``Drift``, the pip fix, the messages,
and the pyproject pin rewrite. The runtime guard (``blackwheel._guard``), the
configure step and ``python -m blackwheel lock --check`` all use ``compare``.

Effects (thin, at the bottom): read the torch of this interpreter, write the
lock and pyproject.toml atomically, and the ``lock`` command.

  python -m blackwheel lock                       pin the torch of this environment
  python -m blackwheel lock --check               exit 1 and list each difference
  python -m blackwheel_factory lock --check --for-build   CMake configure: exit 1, message on stderr
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from blackwheel_factory.inputs.config import ConfigError, TorchLock

PYTORCH_INDEX = "https://download.pytorch.org/whl"


# ---------------------------------------------------------------------------
# Pure data and logic
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TorchFacts:
    """The torch an environment has (read from the module or from torch/version.py)."""
    version: str                  # "2.14.1+cu130"
    git_version: str
    cuda: str | None              # "13.0"; None for a CPU-only build
    cxx11_abi: bool | None        # None when unknown (read without importing torch)
    location: str = ""            # where it was found (a directory)

    @property
    def public_version(self) -> str:
        return self.version.split("+", 1)[0]

    def describe(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"torch {self.version} (git {self.git_version[:12]}){where}"


@dataclass(frozen=True)
class Drift:
    """One difference between the required and the found torch."""
    field: str        # "torch" (missing), "version", "git_version", "cuda", "cxx11_abi"
    required: str
    found: str

    def __str__(self) -> str:
        return f"{self.field}: required {self.required}, found {self.found}"


def lock_from_dict(data: dict) -> TorchLock:
    """TorchLock from the build record's ``torch.lock`` table."""
    try:
        return TorchLock(version=str(data["version"]), git_version=str(data["git_version"]),
                         cuda=data.get("cuda") or None, cxx11_abi=bool(data["cxx11_abi"]),
                         stable_target=str(data["stable_target"]))
    except (KeyError, TypeError) as e:
        raise ConfigError(f"torch lock record is incomplete (missing {e}); rebuild or "
                          f"reinstall the wheel") from None


def facts_from_lock(lock: TorchLock, location: str = "") -> TorchFacts:
    return TorchFacts(lock.version, lock.git_version, lock.cuda, lock.cxx11_abi, location)


def version_at_least(version: str, minimum: str) -> bool:
    """PEP 440 comparison of public versions (packaging when importable; the
    runtime guard must not need it, so fall back to the release numbers)."""
    version, minimum = version.split("+", 1)[0], minimum.split("+", 1)[0]
    try:
        from packaging.version import Version
    except ImportError:
        def key(v: str) -> tuple[int, ...]:
            m = re.match(r"^\d+(?:\.\d+)*", v)
            return tuple(int(x) for x in m.group(0).split(".")) if m else (0,)
        a, b = key(version), key(minimum)
        n = max(len(a), len(b))
        return a + (0,) * (n - len(a)) >= b + (0,) * (n - len(b))
    return Version(version) >= Version(minimum)


def cuda_label(cuda: str | None) -> str:
    return f"CUDA {cuda}" if cuda else "CPU-only (no CUDA)"


def compare(lock: TorchLock, facts: TorchFacts | None, abi: str = "classic") -> list[Drift]:
    """Every way ``facts`` fails the lock. ``abi``: "classic" needs the exact torch
    (version with local tag, git hash, CUDA version, CXX11 ABI); "stable" needs
    torch >= stable_target built for the same CUDA major."""
    if abi not in ("classic", "stable"):
        raise ValueError(f"abi must be 'classic' or 'stable', got {abi!r}")
    if facts is None:
        need = lock.version if abi == "classic" else f">={lock.stable_target}"
        return [Drift("torch", need, "not installed")]
    out: list[Drift] = []
    if abi == "classic":
        if facts.version != lock.version:
            out.append(Drift("version", lock.version, facts.version))
        if facts.git_version != lock.git_version:
            out.append(Drift("git_version", lock.git_version, facts.git_version))
        if (facts.cuda or None) != (lock.cuda or None):
            out.append(Drift("cuda", cuda_label(lock.cuda), cuda_label(facts.cuda)))
        if facts.cxx11_abi is not None and facts.cxx11_abi != lock.cxx11_abi:
            out.append(Drift("cxx11_abi", str(lock.cxx11_abi), str(facts.cxx11_abi)))
        return out
    if not version_at_least(facts.public_version, lock.stable_target):
        out.append(Drift("version", f">={lock.stable_target}", facts.version))
    if lock.cuda:
        want = lock.cuda.split(".")[0]
        have = facts.cuda.split(".")[0] if facts.cuda else None
        if have != want:
            out.append(Drift("cuda", f"CUDA {want}.x", cuda_label(facts.cuda)))
    return out


def index_url(lock: TorchLock) -> str | None:
    """The PyTorch index that serves the locked build (None: the default index)."""
    if "+" not in lock.version:
        return None
    return f"{PYTORCH_INDEX}/{lock.version.split('+', 1)[1]}"


def pip_fix(lock: TorchLock, abi: str = "classic") -> str:
    """The pip command that installs a torch the lock accepts."""
    spec = f"torch=={lock.public_version}" if abi == "classic" else f'"torch>={lock.stable_target}"'
    url = index_url(lock)
    if abi == "stable" and lock.cuda and not url:
        url = f"{PYTORCH_INDEX}/cu{lock.cuda.replace('.', '')}"
    return f"pip install {spec}" + (f" --index-url {url}" if url else "")


def required_label(lock: TorchLock, abi: str) -> str:
    if abi == "classic":
        return f"torch {lock.version} (git {lock.git_version[:12]}, {cuda_label(lock.cuda)})"
    major = lock.cuda.split(".")[0] if lock.cuda else None
    return f"torch>={lock.stable_target}" + (f" built for CUDA {major}.x" if major else "")


def runtime_message(lock: TorchLock, facts: TorchFacts | None, drifts: list[Drift],
                    abi: str, what: str = "blackwheel") -> str:
    """The ImportError text of the runtime guard."""
    fix = pip_fix(lock, abi)
    if facts is None:
        return (f"{what} needs PyTorch, which is not installed (or cannot be imported). "
                f"It was built for {required_label(lock, abi)}. Fix: {fix}")
    lines = [f"{what} was built for {required_label(lock, abi)}, but the installed torch is "
             f"{facts.describe()}; its {abi}-ABI extensions would not load "
             f"(missing symbols) or could crash. Differences:"]
    lines += [f"  - {d}" for d in drifts]
    lines.append(f"Fix: {fix}  (or rebuild blackwheel against this torch: "
                 f"`python -m blackwheel lock` in a checkout, then build)")
    return "\n".join(lines)


def build_message(lock: TorchLock, facts: TorchFacts | None, drifts: list[Drift],
                  isolated: bool, lock_path: str = "torch-lock.toml") -> str:
    """The configure-time error: the build sees another torch than the lock."""
    fix = pip_fix(lock)
    if facts is None:
        if isolated:
            return (f"blackwheel build: torch is not installed in the isolated build environment, "
                    f"but {lock_path} locks torch {lock.version}. pyproject.toml's "
                    f"[build-system].requires must list torch=={lock.public_version}; run "
                    f"`python -m blackwheel lock` to rewrite it, and let pip see the PyTorch index: "
                    f"PIP_EXTRA_INDEX_URL={index_url(lock) or 'https://pypi.org/simple'}")
        return (f"blackwheel build: torch is not installed in the build environment "
                f"(--no-build-isolation uses the current environment). Fix: {fix}, "
                f"or build with build isolation (drop --no-build-isolation)")
    diff = "; ".join(str(d) for d in drifts)
    if isolated:
        return (f"blackwheel build: the isolated build environment got {facts.describe()}, "
                f"but {lock_path} locks torch {lock.version} ({diff}). pip resolved "
                f"torch=={lock.public_version} from another index: pass "
                f"PIP_EXTRA_INDEX_URL={index_url(lock) or 'https://pypi.org/simple'} "
                f"(or install torch=={lock.public_version} from it and build with "
                f"--no-build-isolation), or run `python -m blackwheel lock` to re-lock to "
                f"{facts.version}")
    return (f"blackwheel build: you built with --no-build-isolation against torch {facts.version}, "
            f"but {lock_path} locks torch {lock.version} ({diff}). Install the locked torch "
            f"({fix}) or run `python -m blackwheel lock` to re-lock to torch {facts.version}")


_ISOLATION_MARKERS = ("pip-build-env-", "build-env-", "builds-v0", "pdm-build-env")


def build_isolated(torch_location: str | None, environ: dict) -> bool:
    """Whether the build runs in an isolated build env (pip, build, uv) rather than
    the user's environment (--no-build-isolation)."""
    paths = [torch_location or "", environ.get("PYTHONPATH", "")]
    return any(m in p for p in paths for m in _ISOLATION_MARKERS)


# --- pyproject pin -------------------------------------------------------------
_PIN_RE = re.compile(r'(?P<q>["\'])torch\s*(?:===?|>=|~=)\s*[^"\';,\s]+(?P=q)')


def rewrite_torch_pin(pyproject_text: str, public_version: str) -> str:
    """pyproject.toml text with the ``torch==...`` entry of [build-system].requires
    set to ``torch==public_version``; other text unchanged."""
    if "+" in public_version:
        raise ValueError(f"pin the public version, not {public_version!r}")
    m = re.search(r"^\[build-system\]\s*$", pyproject_text, re.M)
    if not m:
        raise ConfigError("pyproject.toml has no [build-system] table; add one with "
                          "requires = [\"torch==...\", ...]")
    start = m.end()
    nxt = re.search(r"^\[[^\]]+\]\s*$", pyproject_text[start:], re.M)
    end = start + nxt.start() if nxt else len(pyproject_text)
    section = pyproject_text[start:end]
    req = re.search(r"^requires\s*=\s*\[", section, re.M)
    if not req:
        raise ConfigError("pyproject.toml [build-system] has no requires list")
    pins = list(_PIN_RE.finditer(section, req.end()))
    if len(pins) != 1:
        raise ConfigError(f"pyproject.toml [build-system].requires must hold exactly one "
                          f"torch pin (\"torch==X\"), found {len(pins)}; add \"torch=={public_version}\"")
    p = pins[0]
    q = p.group("q")
    section = section[:p.start()] + f"{q}torch=={public_version}{q}" + section[p.end():]
    return pyproject_text[:start] + section + pyproject_text[end:]


def pyproject_pin(pyproject_text: str) -> str | None:
    """The torch requirement string of [build-system].requires (None if absent)."""
    from blackwheel_factory.inputs.config import tomllib
    reqs = tomllib.loads(pyproject_text).get("build-system", {}).get("requires", [])
    torch = [r for r in reqs if re.match(r"^torch\s*[=<>~!]", r)]
    return torch[0].replace(" ", "") if torch else None


def lock_from_facts(facts: TorchFacts, stable_target: str) -> TorchLock:
    if facts.cxx11_abi is None:
        raise ValueError("the CXX11 ABI flag is needed to write a lock (import torch)")
    return TorchLock(facts.version, facts.git_version, facts.cuda, facts.cxx11_abi, stable_target)


# ---------------------------------------------------------------------------
# Effects
# ---------------------------------------------------------------------------
def facts_from_torch_module(torch) -> TorchFacts:
    location = str(Path(torch.__file__).parent)
    return TorchFacts(version=str(torch.__version__), git_version=str(torch.version.git_version),
                      cuda=torch.version.cuda or None,
                      cxx11_abi=bool(torch._C._GLIBCXX_USE_CXX11_ABI), location=location)


def import_torch_facts() -> tuple[TorchFacts | None, str]:
    """(facts, error) of the torch this interpreter imports; (None, why) if none."""
    try:
        import torch
    except ImportError as e:
        return None, str(e)
    except OSError as e:  # a torch whose own libraries do not load
        return None, f"torch is installed but does not load: {e}"
    return facts_from_torch_module(torch), ""


def facts_from_torch_dir(torch_dir: Path) -> TorchFacts | None:
    """Read torch/version.py without importing torch (cxx11_abi unknown)."""
    import ast
    path = Path(torch_dir) / "version.py"
    if not path.is_file():
        return None
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name):
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                pass
    if "__version__" not in values:
        return None
    return TorchFacts(str(values["__version__"]), str(values.get("git_version", "unknown")),
                      values.get("cuda") or None, None, str(torch_dir))


def atomic_write(path: Path, text: str) -> None:
    """Write text to path via a temp file in the same directory + rename."""
    import os
    import tempfile
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_lock(facts: TorchFacts, lock_path: Path, pyproject_path: Path,
               stable_target: str) -> TorchLock:
    """Write torch-lock.toml and the pyproject pin. Both texts are computed before
    either file is replaced, so a bad pyproject leaves both untouched."""
    from blackwheel_factory.inputs.config import format_lock, parse_lock
    lock = lock_from_facts(facts, stable_target)
    lock_text = format_lock(lock)
    assert parse_lock(lock_text) == lock
    new_py = rewrite_torch_pin(Path(pyproject_path).read_text(), lock.public_version)
    atomic_write(Path(lock_path), lock_text)
    atomic_write(Path(pyproject_path), new_py)
    return lock


def add_arguments(p) -> None:
    p.add_argument("--check", action="store_true",
                   help="compare this environment's torch with the lock; exit 1 on drift")
    p.add_argument("--for-build", action="store_true",
                   help="with --check: the configure-time check (message names the build fix)")
    p.add_argument("--abi", choices=("classic", "stable"), default="classic",
                   help="with --check: exact torch (classic, default) or stable-ABI rules")
    p.add_argument("--lock", type=Path, default=None, help="torch-lock.toml (default: checkout root)")
    p.add_argument("--pyproject", type=Path, default=None, help="pyproject.toml (default: next to the lock)")
    p.add_argument("--stable-target", default=None,
                   help="oldest torch for stable-ABI parts (default: keep the lock's)")


def run(args) -> int:
    import os
    import sys
    from blackwheel_factory.inputs.config import find_root, load_lock, LOCK_NAME
    try:
        lock_path = args.lock or find_root() / LOCK_NAME
        pyproject = args.pyproject or Path(lock_path).parent / "pyproject.toml"
        facts, why = import_torch_facts()
        if args.check:
            lock = load_lock(lock_path)
            drifts = compare(lock, facts, args.abi)
            if args.for_build:
                if drifts:
                    isolated = build_isolated(facts.location if facts else None, dict(os.environ))
                    print(build_message(lock, facts, drifts, isolated, str(lock_path)), file=sys.stderr)
                    return 1
                pin = pyproject_pin(Path(pyproject).read_text()) if Path(pyproject).is_file() else None
                if pin is not None and pin != f"torch=={lock.public_version}":
                    print(f"blackwheel build: pyproject.toml pins {pin} but {lock_path} locks "
                          f"{lock.version}; run `python -m blackwheel lock` to rewrite both",
                          file=sys.stderr)
                    return 1
                print(f"torch {facts.version} matches {lock_path}")
                return 0
            if drifts:
                print(runtime_message(lock, facts, drifts, args.abi, what=f"{lock_path}")
                      if facts is None else
                      f"torch drift: {lock_path} locks torch {lock.version}, this environment has "
                      f"{facts.describe()}", file=sys.stderr)
                if facts is not None:
                    for d in drifts:
                        print(f"  - {d}", file=sys.stderr)
                    print(f"Fix: {pip_fix(lock, args.abi)}  or re-lock: python -m blackwheel lock",
                          file=sys.stderr)
                return 1
            print(f"OK: {facts.describe()} matches {lock_path} ({args.abi} ABI)")
            return 0
        if facts is None:
            print(f"cannot lock: {why}. Install the torch to pin first, e.g. "
                  f"pip install torch==X --index-url {PYTORCH_INDEX}/cu130", file=sys.stderr)
            return 1
        stable_target = args.stable_target
        if stable_target is None:
            stable_target = load_lock(lock_path).stable_target if Path(lock_path).is_file() else None
        if stable_target is None:
            print("no existing lock to take stable_target from; pass --stable-target 2.11",
                  file=sys.stderr)
            return 1
        lock = write_lock(facts, Path(lock_path), Path(pyproject), stable_target)
        print(f"locked torch {lock.version} (git {lock.git_version[:12]}, {cuda_label(lock.cuda)}, "
              f"cxx11_abi={lock.cxx11_abi}) -> {lock_path}; {pyproject}: torch=={lock.public_version}")
        return 0
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
