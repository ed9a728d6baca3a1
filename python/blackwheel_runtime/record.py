"""The build record, ``<package>/_build_info.json``: written once by the factory
(``plan --stage record``), read here by every product at run time.

Schema 1 (docs/ARCHITECTURE.md): ``archs``, ``kernels`` {family: {archs, abi,
library, ops, ...}}, ``skipped``, ``abi``, ``torch`` {lock, requirement},
``product`` {name, dist, version}, ``sources``, ``toolchain``, ``flags``.

An installed product is found by its record: ``PRODUCTS`` names the package that
holds each product's record (found with importlib, without importing it), so
``doctor`` answers for every product installed beside this one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

RECORD_NAME = "_build_info.json"
SCHEMA = 1

# dist name -> the package whose folder holds its build record. One line per product
# (tests/unit/test_runtime.py checks it covers every products/*.toml).
PRODUCTS: dict[str, str] = {
    "blackwheel": "blackwheel",            # products/kernel-pack.toml (`pip wheel .`)
    "flash-attn": "flash_attn_2_cuda",     # products/flash-attn.toml
    "vllm": "vllm",                        # products/vllm.toml (vllm/_build_info.json)
}


class RecordError(ImportError):
    """A build record that cannot be read; the message names the fix."""


def read(path: Path, what: str = "blackwheel") -> dict | None:
    """The build record at ``path``; None when there is none (a source checkout)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    fix = f"reinstall {what} (pip install --force-reinstall --no-deps {what})"
    try:
        info = json.loads(text)
    except ValueError as e:
        raise RecordError(f"{path} is corrupt ({e}); {fix}") from None
    if not isinstance(info, dict) or "torch" not in info:
        raise RecordError(f"{path} has no torch record; {fix}")
    return info


def from_wheel(wheel: Path) -> dict | None:
    """The build record inside a wheel file (``<package>/_build_info.json``)."""
    import zipfile
    with zipfile.ZipFile(wheel) as z:
        name = next((n for n in z.namelist() if n.endswith("/" + RECORD_NAME) and n.count("/") == 1),
                    None)
        return json.loads(z.read(name)) if name else None


def label(info: dict) -> str:
    """'flash-attn 2.8.3.post2+cu130.sm120a' / 'blackwheel 0.1.0+cu130.sm120a'."""
    product = info.get("product") or {}
    dist = product.get("dist") or "blackwheel"
    version = product.get("version") or info.get("blackwheel_version") or "?"
    return f"{dist} {version}"


@dataclass(frozen=True)
class Installed:
    dist: str            # "flash-attn"
    package: str         # "flash_attn_2_cuda"
    folder: Path         # the package's folder
    info: dict | None    # its record; None in a source checkout

    @property
    def record_path(self) -> Path:
        return self.folder / RECORD_NAME


def package_folder(package: str) -> Path | None:
    """The folder of an importable top-level package, without importing it."""
    import importlib.util
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def installed(products: dict[str, str] | None = None) -> list[Installed]:
    """Every known product importable here, with its record (RecordError if corrupt)."""
    out = []
    for dist, package in (PRODUCTS if products is None else products).items():
        folder = package_folder(package)
        if folder is not None:
            out.append(Installed(dist, package, folder, read(folder / RECORD_NAME, dist)))
    return out


def installed_product(name: str) -> Installed:
    """One installed product by dist name ('flash-attn') or package name."""
    for dist, package in PRODUCTS.items():
        if name in (dist, package):
            folder = package_folder(package)
            if folder is None:
                raise RecordError(f"product {name!r} is not installed (no package {package})")
            return Installed(dist, package, folder, read(folder / RECORD_NAME, dist))
    raise RecordError(f"unknown product {name!r}; known: {', '.join(PRODUCTS)}")
