"""Runtime torch guard: refuse a drifted torch before any extension is loaded.

Cheap to import (json + pathlib); torch is imported only by ``check_torch``,
i.e. only when a build record exists. The comparison itself is
``blackwheel_factory.inputs.lock.compare`` (pure, shared with ``lock --check``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

BUILD_INFO = Path(__file__).with_name("_build_info.json")


class TorchMismatchError(ImportError):
    """The running torch is not one this build of blackwheel can load into."""

    def __init__(self, message: str, drifts: list | None = None) -> None:
        super().__init__(message)
        self.drifts = list(drifts or [])


def build_info(path: Path | None = None) -> dict | None:
    """The build record next to this file; None in a source checkout."""
    path = Path(path) if path else BUILD_INFO
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError as e:
        raise ImportError(f"{path} is corrupt ({e}); reinstall blackwheel "
                          f"(pip install --force-reinstall blackwheel)") from None
    if not isinstance(info, dict) or "torch" not in info:
        raise ImportError(f"{path} has no torch record; reinstall blackwheel "
                          f"(pip install --force-reinstall blackwheel)")
    return info


def _installed_torch():
    """(TorchFacts | None, why) of the torch this interpreter imports."""
    from blackwheel_factory.inputs.lock import import_torch_facts
    return import_torch_facts()


def check_torch(info: dict, facts=...) -> None:
    """Raise TorchMismatchError (an ImportError) naming the installed and the
    required torch and the pip command that fixes it. ``facts`` is for tests;
    by default torch is imported here."""
    from blackwheel_factory.inputs import lock as L
    try:
        lock = L.lock_from_dict(info["torch"]["lock"])
    except (KeyError, TypeError, ValueError) as e:
        raise ImportError(f"blackwheel build record has no usable torch lock ({e}); reinstall "
                          f"blackwheel (pip install --force-reinstall blackwheel)") from None
    abi = info.get("abi", "classic")
    if abi not in ("classic", "stable"):
        abi = "classic"   # unknown -> the strict rule
    why = ""
    if facts is ...:
        facts, why = _installed_torch()
    drifts = L.compare(lock, facts, abi)
    if drifts:
        msg = L.runtime_message(lock, facts, drifts, abi)
        if why:
            msg += f"\n(import torch said: {why})"
        raise TorchMismatchError(msg, drifts)


def diagnostic_mode(argv: list[str] | None = None, environ=None) -> bool:
    """True for ``python -m blackwheel doctor|info`` (and BLACKWHEEL_NO_LOAD=1):
    the package should then skip loading extensions so that the diagnosis of a
    drifted torch can run. (``python -m`` sets argv[0] to "-m" while the package
    imports.)"""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if environ.get("BLACKWHEEL_NO_LOAD") == "1":
        return True
    if len(argv) < 2 or argv[1] not in ("doctor", "info"):
        return False
    return argv[0] == "-m" or Path(argv[0]).name == "blackwheel"
