"""Read the factory's shared inputs into typed, validated data: blackwheel.toml
(what every product shares: source pins, toolchain, accepted archs,
SOURCE_DATE_EPOCH) and torch-lock.toml. The product files, products/<name>.toml,
are read by products.py, on top of the Inputs read here.

Pure: takes a path (or text), returns dataclasses; raises ConfigError with the
file and the key at fault.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "blackwheel.toml"
LOCK_NAME = "torch-lock.toml"


class ConfigError(ValueError):
    """A configuration file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Source:
    name: str            # our name for the tree ("vllm", "flash-attn", "cutlass")
    dist: str            # distribution on the index
    version: str
    filename: str
    sha256: str
    why: str
    members: tuple[str, ...] = ()   # archive members to unpack (prefixes); empty = all
    root: str = ""                  # sub-directory of the unpacked tree that is the source root
    bundle: tuple[str, ...] = ()    # prefixes (under root) an offline build needs; empty = all

    @property
    def key(self) -> str:
        """Name of the patch directory and of the unpacked tree: <name>-<version>."""
        return f"{self.name}-{self.version}"


@dataclass(frozen=True)
class Inputs:
    """blackwheel.toml: what every product shares."""
    path: Path
    source_date_epoch: int
    accepted_archs: tuple[str, ...]
    cuda_toolkit: str
    nvcc_version: str
    sources: dict[str, Source]

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def patches_dir(self) -> Path:
        return self.root / "patches"


# the lock's data model is the runtime's (every build record holds one)
from blackwheel_runtime.torch_lock import TorchLock  # noqa: E402,F401


def need(table: dict, key: str, typ, where: str):
    """table[key], which must be a typ; else ConfigError naming where and the key
    (shared with products.py)."""
    if key not in table:
        raise ConfigError(f"{where}: missing key '{key}'")
    value = table[key]
    if not isinstance(value, typ):
        raise ConfigError(f"{where}: '{key}' must be {typ.__name__ if isinstance(typ, type) else typ}, got {value!r}")
    return value


# blackwheel.toml holds only what the products share; what moved to products/ is
# refused with a pointer to where it lives now
_TOP_KEYS = {"build", "toolchain", "source"}
_BUILD_KEYS = {"source_date_epoch", "accepted_archs"}
_MOVED = {
    "kernels": "the kernel pack's kernel sets are the [family.*] tables of products/kernel-pack.toml",
    "default_kernels": "the kernel pack builds every [family.*] of products/kernel-pack.toml "
                       "unless BLACKWHEEL_KERNELS names some",
    "default_archs": "each product says its default-archs in products/<name>.toml [product]",
}


def _refuse_unknown(table: dict, allowed: set, where: str) -> None:
    for key in table:
        if key in _MOVED:
            raise ConfigError(f"{where}: '{key}' is no longer read here: {_MOVED[key]}")
    bad = set(table) - allowed
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {sorted(bad)}; allowed: {sorted(allowed)}")


def parse_config(text: str, path: Path) -> Inputs:
    """blackwheel.toml -> Inputs (strict at the top level and in [build])."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    _refuse_unknown(data, _TOP_KEYS, str(path))
    build = need(data, "build", dict, str(path))
    _refuse_unknown(build, _BUILD_KEYS, f"{path}: [build]")
    tool = need(data, "toolchain", dict, str(path))
    sources: dict[str, Source] = {}
    for i, s in enumerate(data.get("source", [])):
        where = f"{path}: [[source]] #{i + 1}"
        name = need(s, "name", str, where)
        sha = need(s, "sha256", str, where).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ConfigError(f"{where} ({name}): sha256 must be 64 hex digits, got {sha!r}")
        if name in sources:
            raise ConfigError(f"{where}: source '{name}' declared twice")
        sources[name] = Source(
            name=name,
            dist=s.get("dist", name),
            version=need(s, "version", str, where),
            filename=need(s, "filename", str, where),
            sha256=sha,
            why=need(s, "why", str, where).strip(),
            members=tuple(s.get("members", ())),
            root=s.get("root", ""),
            bundle=tuple(s.get("bundle", ())),
        )
    return Inputs(
        path=path,
        source_date_epoch=int(need(build, "source_date_epoch", int, f"{path}: [build]")),
        accepted_archs=tuple(need(build, "accepted_archs", list, f"{path}: [build]")),
        cuda_toolkit=need(tool, "cuda_toolkit", str, f"{path}: [toolchain]"),
        nvcc_version=need(tool, "nvcc_version", str, f"{path}: [toolchain]"),
        sources=sources,
    )


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest directory holding blackwheel.toml."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return d
    # Fall back to the checkout this module lives in (python/blackwheel_factory/inputs/).
    d = Path(__file__).resolve().parents[3]
    if (d / CONFIG_NAME).is_file():
        return d
    raise ConfigError(
        f"no {CONFIG_NAME} found in {here} or its parents; run from a blackwheel checkout "
        f"or pass --config PATH")


def load_config(path: Path | None = None) -> Inputs:
    """blackwheel.toml (the shared inputs); a product's families come from products.load_product."""
    path = Path(path) if path else find_root() / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    return parse_config(path.read_text(), path)


def parse_lock(text: str, path: Path | str = LOCK_NAME) -> TorchLock:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    where = str(path)
    cuda = data.get("cuda")
    return TorchLock(
        version=need(data, "version", str, where),
        git_version=need(data, "git_version", str, where),
        cuda=cuda if cuda else None,
        cxx11_abi=bool(need(data, "cxx11_abi", bool, where)),
        stable_target=need(data, "stable_target", str, where),
    )


def load_lock(path: Path | None = None) -> TorchLock:
    path = Path(path) if path else find_root() / LOCK_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: not found; write one with `python -m blackwheel_factory lock`")
    return parse_lock(path.read_text(), path)


def format_lock(lock: TorchLock) -> str:
    """TOML text for a lock (flat string/bool keys: no writer library needed)."""
    def q(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "# Written by `python -m blackwheel_factory lock`; checked by the build and at import.",
        "# The exact torch this project's extensions are compiled against.",
        f"version = {q(lock.version)}",
        f"git_version = {q(lock.git_version)}",
        f"cuda = {q(lock.cuda or '')}",
        f"cxx11_abi = {q(lock.cxx11_abi)}",
        "# Oldest torch the stable-ABI extensions accept (TORCH_TARGET_VERSION, from vLLM 0.33).",
        f"stable_target = {q(lock.stable_target)}",
    ]
    return "\n".join(lines) + "\n"
