"""The import-time guard: refuse a drifted torch before any extension is loaded.

Every product calls ``check_installed(folder, what)`` first thing in its
``__init__``: it reads the product's build record and raises TorchMismatchError
(an ImportError) naming the installed and the required torch and the pip command
that fixes it: the same text for every product. Cheap: torch is imported only
when a record exists.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from . import record as R
from . import torch_lock as L


class TorchMismatchError(ImportError):
    """The running torch is not one this build can load into."""

    def __init__(self, message: str, drifts: list | None = None) -> None:
        super().__init__(message)
        self.drifts = list(drifts or [])


def _installed_torch():
    """(TorchFacts | None, why) of the torch this interpreter imports."""
    return L.import_torch_facts()


def check_torch(info: dict, facts=..., what: str | None = None) -> None:
    """Raise TorchMismatchError naming the installed and the required torch and
    the pip command that fixes it. ``facts`` is for tests; by default torch is
    imported here. ``what``: the product, by default its record's label."""
    what = what or R.label(info)
    try:
        lock = L.lock_from_dict(info["torch"]["lock"])
    except (KeyError, TypeError, ValueError) as e:
        raise ImportError(f"{what}: the build record has no usable torch lock ({e}); reinstall "
                          f"it (pip install --force-reinstall --no-deps <wheel>)") from None
    abi = info.get("abi", "classic")
    if abi not in ("classic", "stable"):
        abi = "classic"   # unknown -> the strict rule
    why = ""
    if facts is ...:
        facts, why = _installed_torch()
    drifts = L.compare(lock, facts, abi)
    if drifts:
        msg = L.runtime_message(lock, facts, drifts, abi, what=what)
        if why:
            msg += f"\n(import torch said: {why})"
        raise TorchMismatchError(msg, drifts)


def check_installed(folder: Path, dist: str) -> dict | None:
    """Read the record in ``folder`` and check the running torch against it; the
    record, or None in a source checkout (nothing built, nothing to check)."""
    info = R.read(Path(folder) / R.RECORD_NAME, dist)
    if info is not None:
        check_torch(info)
    return info


DIAGNOSTIC_COMMANDS = ("doctor", "info")


def diagnostic_mode(argv: list[str] | None = None, environ=None) -> bool:
    """True for ``python -m <product> doctor|info`` (and BLACKWHEEL_NO_LOAD=1): the
    product then skips the guard and extension loading so that the diagnosis of a
    drifted torch can run. (``python -m`` sets argv[0] to "-m" while packages
    import; the kernel pack's console script is ``blackwheel``.)"""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if environ.get("BLACKWHEEL_NO_LOAD") == "1":
        return True
    if len(argv) < 2 or argv[1] not in DIAGNOSTIC_COMMANDS:
        return False
    return argv[0] == "-m" or Path(argv[0]).name == "blackwheel"
