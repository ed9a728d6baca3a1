"""The torch lock at run time: compare a torch with the one a wheel was built for.

Pure core (no torch import, no I/O): ``TorchLock`` (the lock, as torch-lock.toml
and every build record hold it), ``TorchFacts`` (what an environment has),
``compare(lock, facts, abi)`` -> list of ``Drift``, the pip fix and the messages.
The import-time guard, ``doctor``, the factory's configure check and its
``lock --check`` all use ``compare``.

Effects at the bottom: read the torch of this interpreter (imports torch) or of a
directory (reads torch/version.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PYTORCH_INDEX = "https://download.pytorch.org/whl"
# the factory's lock command, named in the messages (it runs from a checkout)
RELOCK = "python -m blackwheel_factory lock"


class LockRecordError(ValueError):
    """A build record's torch lock is incomplete; the message names the fix."""


@dataclass(frozen=True)
class TorchLock:
    version: str          # "2.14.1+cu130"
    git_version: str
    cuda: str | None      # "13.0", None for a CPU build
    cxx11_abi: bool
    stable_target: str    # "2.11"

    @property
    def public_version(self) -> str:
        return self.version.split("+", 1)[0]

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "git_version": self.git_version,
            "cuda": self.cuda,
            "cxx11_abi": self.cxx11_abi,
            "stable_target": self.stable_target,
        }


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
    except (KeyError, TypeError, AttributeError) as e:
        raise LockRecordError(f"torch lock record is incomplete (missing {e}); rebuild or "
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
    """The ImportError text of the runtime guard: installed, required, fix."""
    fix = pip_fix(lock, abi)
    if facts is None:
        return (f"{what} needs PyTorch, which is not installed (or cannot be imported). "
                f"It was built for {required_label(lock, abi)}. Fix: {fix}")
    lines = [f"{what} was built for {required_label(lock, abi)}, but the installed torch is "
             f"{facts.describe()}; its {abi}-ABI extensions would not load "
             f"(missing symbols) or could crash. Differences:"]
    lines += [f"  - {d}" for d in drifts]
    lines.append(f"Fix: {fix}  (or rebuild {what} against this torch: "
                 f"`{RELOCK}` in a checkout, then build)")
    return "\n".join(lines)


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
