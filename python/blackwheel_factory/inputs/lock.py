"""The torch lock: compare an environment's torch with torch-lock.toml, write the lock.

The comparison itself (``TorchFacts``, ``compare(lock, facts, abi)`` -> list of
``Drift``, the pip fix, the runtime message) is the runtime's
(``blackwheel_runtime.torch_lock``, shipped in every product wheel), re-exported
here; this module adds the build side: the configure-time message, the pyproject
pin rewrite, writing the lock. The import-time guard, the configure step and
``python -m blackwheel_factory lock --check`` all use ``compare``.

Effects (thin, at the bottom): read the torch of this interpreter, write the
lock and pyproject.toml atomically, and the ``lock`` command.

  python -m blackwheel_factory lock               pin the torch of this environment
  python -m blackwheel_factory lock --check       exit 1 and list each difference
  python -m blackwheel_factory lock --check --for-build   CMake configure: exit 1, message on stderr
"""
from __future__ import annotations

import re
from pathlib import Path

from blackwheel_factory.inputs.config import ConfigError, TorchLock
# the pure comparison, its messages and the torch facts are the runtime's (shipped in
# every product wheel, used by the import-time guard and doctor): one implementation
from blackwheel_runtime.torch_lock import (  # noqa: F401  (re-exported for the factory)
    PYTORCH_INDEX,
    Drift,
    TorchFacts,
    compare,
    cuda_label,
    facts_from_lock,
    facts_from_torch_dir,
    facts_from_torch_module,
    import_torch_facts,
    index_url,
    lock_from_dict,
    pip_fix,
    required_label,
    runtime_message,
    version_at_least,
)

RELOCK = "python -m blackwheel_factory lock"


# ---------------------------------------------------------------------------
# Pure logic of the build side
# ---------------------------------------------------------------------------
def build_message(lock: TorchLock, facts: TorchFacts | None, drifts: list[Drift],
                  isolated: bool, lock_path: str = "torch-lock.toml") -> str:
    """The configure-time error: the build sees another torch than the lock."""
    fix = pip_fix(lock)
    if facts is None:
        if isolated:
            return (f"blackwheel build: torch is not installed in the isolated build environment, "
                    f"but {lock_path} locks torch {lock.version}. pyproject.toml's "
                    f"[build-system].requires must list torch=={lock.public_version}; run "
                    f"`{RELOCK}` to rewrite it, and let pip see the PyTorch index: "
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
                f"--no-build-isolation), or run `{RELOCK}` to re-lock to "
                f"{facts.version}")
    return (f"blackwheel build: you built with --no-build-isolation against torch {facts.version}, "
            f"but {lock_path} locks torch {lock.version} ({diff}). Install the locked torch "
            f"({fix}) or run `{RELOCK}` to re-lock to torch {facts.version}")


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
                          f"{lock.version}; run `{RELOCK}` to rewrite both",
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
                    print(f"Fix: {pip_fix(lock, args.abi)}  or re-lock: {RELOCK}",
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
