"""scikit-build-core dynamic metadata provider for ``[project] dependencies`` and
``version``.

pyproject.toml:
    [tool.scikit-build.metadata.dependencies]
    provider = "blackwheel_factory.compile.metadata"
    provider-path = "python"
    [tool.scikit-build.metadata.version]
    provider = "blackwheel_factory.compile.metadata"
    provider-path = "python"
    public = "0.1.0"

The version is the public version plus the build variant's PEP 440 local label
(packaging/variant.py): ``0.1.0+cu130.sm120a`` for the plan's archs and the CUDA of
the locked torch, so two arch builds of one version never share a file name.

The wheel's torch requirement follows the ABI kind of what is built: every
selected kernel set stable-ABI -> ``torch>=<stable_target>``; any classic-ABI
set -> ``torch==<lock public version>``. The selection is the build plan's
(BLACKWHEEL_KERNELS / BLACKWHEEL_ARCHS, same parsing as ``plan.py``) over the
families of products/kernel-pack.toml, so a set the plan skips for its archs
does not count. Imports no torch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from blackwheel_factory.inputs.config import TorchLock, find_root, load_config, load_lock
from blackwheel_factory.inputs.products import KERNEL_PACK, Config, load_product

__all__ = ["dynamic_metadata", "get_requires_for_dynamic_metadata", "torch_requirement",
           "abi_kind", "wheel_version", "public_version"]

_SETTINGS = {"root"}   # optional: project root (default: found from the cwd)
_VERSION_SETTINGS = {"root", "public"}   # public: the version before the local label


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
    _, config = load_product(KERNEL_PACK, root)
    lock = load_lock(root / "torch-lock.toml")
    return [torch_requirement(lock, abi_kind(config, selected_families(config, env)))]


def public_version(root: Path) -> str:
    """The public version, from pyproject.toml's [tool.scikit-build.metadata.version] public."""
    import tomllib
    data = tomllib.loads((root / "pyproject.toml").read_text())
    try:
        return str(data["tool"]["scikit-build"]["metadata"]["version"]["public"])
    except KeyError:
        return str(data["project"]["version"])


def wheel_version(root: Path, env: Mapping[str, str], public: str | None = None) -> str:
    """'0.1.0+cu130.sm120a': public version + CUDA of the torch lock + the plan's archs
    (BLACKWHEEL_ARCHS / TORCH_CUDA_ARCH_LIST / default, as plan.py reads them)."""
    from blackwheel_factory.packaging.variant import variant_version
    from blackwheel_factory.plan.plan import make_plan
    _, config = load_product(KERNEL_PACK, root)
    lock = load_lock(root / "torch-lock.toml")
    plan = make_plan(config, env)
    return variant_version(public or public_version(root), lock.cuda, plan.requested_archs)


def dynamic_metadata(field: str, settings: Mapping[str, Any] | None = None,
                     project: Mapping[str, Any] | None = None):
    settings = dict(settings or {})
    if field not in ("dependencies", "version"):
        raise RuntimeError(f"blackwheel_factory.compile.metadata provides 'dependencies' and "
                           f"'version' only, not {field!r}")
    allowed = _VERSION_SETTINGS if field == "version" else _SETTINGS
    unknown = set(settings) - allowed
    if unknown:
        raise RuntimeError(f"blackwheel_factory.compile.metadata: unknown setting(s) {sorted(unknown)} "
                           f"for {field}; allowed: {sorted(allowed)}")
    root = Path(settings["root"]) if "root" in settings else find_root()
    export_source_date_epoch(root, os.environ)
    if field == "version":
        return wheel_version(root, os.environ, settings.get("public"))
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
