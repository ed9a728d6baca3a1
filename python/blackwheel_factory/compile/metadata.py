"""scikit-build-core dynamic metadata provider for ``[project] dependencies``.

pyproject.toml:
    [tool.scikit-build.metadata.dependencies]
    provider = "blackwheel_factory.compile.metadata"
    provider-path = "python"

The wheel's torch requirement follows the ABI kind of what is built: every
selected kernel set stable-ABI -> ``torch>=<stable_target>``; any classic-ABI
set -> ``torch==<lock public version>``. The selection is the build plan's
(BLACKWHEEL_KERNELS / BLACKWHEEL_ARCHS, same parsing as ``plan.py``), so a set
the plan skips for its archs does not count. Imports no torch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from blackwheel_factory.inputs.config import Config, TorchLock, find_root, load_config, load_lock

__all__ = ["dynamic_metadata", "get_requires_for_dynamic_metadata", "torch_requirement",
           "abi_kind"]

_SETTINGS = {"root"}   # optional: project root (default: found from the cwd)


def abi_kind(config: Config, families: list[str]) -> str:
    """"stable" when every family is stable-ABI, else "classic"."""
    kinds = {config.kernels[f].abi for f in families}
    return "stable" if kinds == {"stable"} else "classic"


def torch_requirement(lock: TorchLock, abi: str) -> str:
    if abi == "stable":
        return f"torch>={lock.stable_target}"
    return f"torch=={lock.public_version}"


def selected_families(config: Config, env: Mapping[str, str]) -> list[str]:
    """The families the build plan keeps (skipped ones do not shape the requirement)."""
    from blackwheel_factory.plan.plan import make_plan
    return [f.name for f in make_plan(config, env).families]


def requirements(root: Path, env: Mapping[str, str]) -> list[str]:
    config = load_config(root / "blackwheel.toml")
    lock = load_lock(root / "torch-lock.toml")
    return [torch_requirement(lock, abi_kind(config, selected_families(config, env)))]


def dynamic_metadata(field: str, settings: Mapping[str, Any] | None = None,
                     project: Mapping[str, Any] | None = None) -> list[str]:
    settings = dict(settings or {})
    if field != "dependencies":
        raise RuntimeError(f"blackwheel_factory.compile.metadata provides 'dependencies' only, not {field!r}")
    unknown = set(settings) - _SETTINGS
    if unknown:
        raise RuntimeError(f"blackwheel_factory.compile.metadata: unknown setting(s) {sorted(unknown)}; "
                           f"allowed: {sorted(_SETTINGS)}")
    root = Path(settings["root"]) if "root" in settings else find_root()
    export_source_date_epoch(root, os.environ)
    return requirements(root, os.environ)


def export_source_date_epoch(root: Path, env) -> None:
    """blackwheel.toml's [build] source_date_epoch becomes SOURCE_DATE_EPOCH for the
    whole wheel build unless the caller set one. scikit-build-core (wheel.reproducible)
    reads it from the environment for the zip timestamps and exports it to CMake and
    the compilers; this provider is the one hook that runs in the backend process
    before both, so the configuration file, not the shell, decides the timestamp."""
    if not env.get("SOURCE_DATE_EPOCH"):
        env["SOURCE_DATE_EPOCH"] = str(load_config(root / "blackwheel.toml").source_date_epoch)


def get_requires_for_dynamic_metadata(settings: Mapping[str, Any] | None = None) -> list[str]:
    return []   # stdlib only (tomllib on 3.11+; tomli is pulled in by scikit-build-core on 3.10)
