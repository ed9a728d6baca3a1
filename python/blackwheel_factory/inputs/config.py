"""Read the factory's inputs into typed, validated data: blackwheel.toml (what
every product shares: source pins, toolchain, accepted archs, SOURCE_DATE_EPOCH),
products/<name>.toml (one file per product, the kernel pack included: its
families and default archs) and torch-lock.toml.

One path for every product: load_product(name) -> (Product, Config), where Config
is what the plan, the CMake bridge, the metadata provider and verify read.

Pure: takes a path (or text), returns dataclasses; raises ConfigError with the
file and the key at fault.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
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
class KernelFamily:
    name: str
    summary: str
    archs: tuple[str, ...]
    sources: tuple[str, ...]
    abi: str                      # "stable" or "classic"
    extra: dict = field(default_factory=dict)


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


@dataclass(frozen=True)
class Config(Inputs):
    """What one product is planned from: the shared inputs plus the product file's
    default archs and families (load_product)."""
    product_path: Path
    default_archs: tuple[str, ...]
    default_kernels: tuple[str, ...]     # every family, in the file's order
    kernels: dict[str, KernelFamily]     # the product file's [family.*]

    @property
    def declared_in(self) -> str:
        """'products/kernel-pack.toml': where messages send the reader."""
        try:
            return self.product_path.relative_to(self.root).as_posix()
        except ValueError:
            return str(self.product_path)


# the lock's data model is the runtime's (every build record holds one)
from blackwheel_runtime.torch_lock import TorchLock  # noqa: E402,F401


def _need(table: dict, key: str, typ, where: str):
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
    build = _need(data, "build", dict, str(path))
    _refuse_unknown(build, _BUILD_KEYS, f"{path}: [build]")
    tool = _need(data, "toolchain", dict, str(path))
    sources: dict[str, Source] = {}
    for i, s in enumerate(data.get("source", [])):
        where = f"{path}: [[source]] #{i + 1}"
        name = _need(s, "name", str, where)
        sha = _need(s, "sha256", str, where).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ConfigError(f"{where} ({name}): sha256 must be 64 hex digits, got {sha!r}")
        if name in sources:
            raise ConfigError(f"{where}: source '{name}' declared twice")
        sources[name] = Source(
            name=name,
            dist=s.get("dist", name),
            version=_need(s, "version", str, where),
            filename=_need(s, "filename", str, where),
            sha256=sha,
            why=_need(s, "why", str, where).strip(),
            members=tuple(s.get("members", ())),
            root=s.get("root", ""),
            bundle=tuple(s.get("bundle", ())),
        )
    return Inputs(
        path=path,
        source_date_epoch=int(_need(build, "source_date_epoch", int, f"{path}: [build]")),
        accepted_archs=tuple(_need(build, "accepted_archs", list, f"{path}: [build]")),
        cuda_toolkit=_need(tool, "cuda_toolkit", str, f"{path}: [toolchain]"),
        nvcc_version=_need(tool, "nvcc_version", str, f"{path}: [toolchain]"),
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
    """blackwheel.toml (the shared inputs); a product's families come from load_product."""
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
        version=_need(data, "version", str, where),
        git_version=_need(data, "git_version", str, where),
        cuda=cuda if cuda else None,
        cxx11_abi=bool(_need(data, "cxx11_abi", bool, where)),
        stable_target=_need(data, "stable_target", str, where),
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


# --------------------------------------------------------------------------- products
PRODUCTS_DIR = "products"
KERNEL_PACK = "kernel-pack"       # products/kernel-pack.toml: the checkout's own project (`pip wheel .`)
_PRODUCT_EDITION = 1
_PRODUCT_KEYS = {"dist", "version", "source", "summary", "license", "requires-python",
                 "dependencies", "dependencies-from", "dependencies-drop", "upstream-packages",
                 "own-packages", "record-package", "default-archs", "build"}
# build = "blackwheel-cmake" (default): blackwheel's CMake compiles the [family.*] sources
#   in a project rendered from resources/product/;
# build = "upstream-cmake": upstream's own CMake project, driven as [upstream-cmake] says;
# build = "root-project": the checkout's own pyproject.toml + CMakeLists.txt (`pip wheel .`),
#   which hold its name's metadata, so the product file says only what is built.
ROOT_PROJECT = "root-project"
BUILD_KINDS = ("blackwheel-cmake", "upstream-cmake", ROOT_PROJECT)
_ROOT_PROJECT_KEYS = {"dist", "build", "own-packages", "record-package", "default-archs"}
_UPSTREAM_KEYS = {"project", "defines", "targets", "subsets", "python-variable", "link"}
_SUBSET_KEYS = {"targets", "exclude"}
_FAMILY_KEYS = {"summary", "archs", "sources", "abi", "library", "ops", "head_dims",
                "available_head_dims", "directions", "available_directions", "dtypes",
                "available_dtypes", "frontend"}


@dataclass(frozen=True)
class Subset:
    """A named reduced build of an upstream-cmake product: only these targets, and
    their sources matching `exclude` (path prefixes under the source tree) left out."""
    name: str
    targets: tuple[str, ...]
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpstreamCMake:
    """How an upstream CMake project is driven (products/<name>.toml [upstream-cmake])."""
    project: str                      # its project() name: our controls hook in after it
    defines: dict                     # CMake cache settings
    targets: tuple[str, ...]          # extension targets built and installed
    subsets: dict                     # name -> Subset
    python_variable: str = ""         # CMake variable set to the building interpreter
    link: dict = field(default_factory=dict)   # target -> extra libraries it uses (CMake targets)

    def subset(self, name: str | None) -> Subset:
        """The targets/excludes of a subset; None or "" = everything."""
        if not name:
            return Subset("complete", self.targets)
        if name not in self.subsets:
            raise ConfigError(f"unknown subset {name!r}; known: "
                              f"{', '.join(sorted(self.subsets)) or 'none'} (or unset for the complete build)")
        return self.subsets[name]


@dataclass(frozen=True)
class Product:
    """A wheel the factory makes (products/<name>.toml): the kernel pack, or a pinned
    upstream source plus our compiled part.

    The families it compiles are in ``config.kernels`` of the Config that
    load_product returns, so the plan, CMake bridge, verify and abi-check treat
    every product the same way."""
    name: str                     # "flash-attn": products/flash-attn.toml
    dist: str                     # distribution name on the index
    version: str                  # upstream's public version; the wheel adds the variant label
                                  # ("" for the root project: pyproject.toml's)
    source: str                   # the [[source]] whose Python the wheel ships ("" for the root project)
    summary: str
    license: str
    requires_python: str
    dependencies: tuple[str, ...]
    upstream_packages: tuple[str, ...]   # Python packages taken from the source tree
    own_packages: tuple[str, ...]        # Python packages from python/ of this repo
    path: Path
    record_pkg: str = ""                 # record-package; default the first own package
    build: str = "blackwheel-cmake"
    upstream_cmake: UpstreamCMake | None = None
    dependencies_from: tuple[str, ...] = ()   # upstream requirements files (in the source tree)
    dependencies_drop: tuple[str, ...] = ()   # project names dropped from those

    @property
    def record_package(self) -> str:
        """Where the build record goes: record-package, else the first of our own packages."""
        return self.record_pkg or self.own_packages[0]


def product_names(root: Path | None = None) -> list[str]:
    d = (root or find_root()) / PRODUCTS_DIR
    return sorted(p.stem for p in d.glob("*.toml"))


def parse_product(text: str, path: Path, base: Inputs) -> tuple[Product, Config]:
    """A product file -> (Product, the Config to plan it with: base's shared
    pins and toolchain, the product's families and default archs). Strict:
    unknown keys are errors, like a versioned schema should be."""
    where = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from e
    edition = data.get("edition")
    if edition != _PRODUCT_EDITION:
        raise ConfigError(f"{where}: edition must be {_PRODUCT_EDITION} (got {edition!r})")
    unknown = set(data) - {"edition", "product", "family", "upstream-cmake"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {sorted(unknown)}")
    p = _need(data, "product", dict, where)
    bad = set(p) - _PRODUCT_KEYS
    if bad:
        raise ConfigError(f"{where}: [product] unknown key(s) {sorted(bad)}; allowed: {sorted(_PRODUCT_KEYS)}")
    build = p.get("build", "blackwheel-cmake")
    if build not in BUILD_KINDS:
        raise ConfigError(f"{where}: [product] build must be one of {list(BUILD_KINDS)}, got {build!r}")
    if build == ROOT_PROJECT:
        bad = set(p) - _ROOT_PROJECT_KEYS
        if bad:
            raise ConfigError(f"{where}: [product] {sorted(bad)} not allowed with build = "
                              f"\"{ROOT_PROJECT}\": the checkout's pyproject.toml declares the "
                              f"wheel's version and metadata; allowed: {sorted(_ROOT_PROJECT_KEYS)}")
        source, version = "", ""
    else:
        source = _need(p, "source", str, f"{where}: [product]")
        if source not in base.sources:
            raise ConfigError(f"{where}: [product] source '{source}' is not a [[source]] of {base.path.name}")
        version = _need(p, "version", str, f"{where}: [product]")
    own = tuple(_need(p, "own-packages", list, f"{where}: [product]"))
    if not own and not p.get("record-package"):
        raise ConfigError(f"{where}: [product] own-packages must name at least one package "
                          f"(or record-package must say where the build record goes)")
    default_archs = tuple(_need(p, "default-archs", list, f"{where}: [product]"))
    upstream = _parse_upstream(data.get("upstream-cmake"), build, where)
    product = Product(
        name=path.stem,
        dist=_need(p, "dist", str, f"{where}: [product]"),
        version=version,
        source=source,
        summary=p.get("summary", ""),
        license=p.get("license", ""),
        requires_python=p.get("requires-python", ">=3.9"),
        dependencies=tuple(p.get("dependencies", ())),
        upstream_packages=tuple(p.get("upstream-packages", ())),
        own_packages=own,
        path=path,
        record_pkg=p.get("record-package", ""),
        build=build,
        upstream_cmake=upstream,
        dependencies_from=tuple(p.get("dependencies-from", ())),
        dependencies_drop=tuple(p.get("dependencies-drop", ())),
    )
    families: dict[str, KernelFamily] = {}
    tables = data.get("family", {})
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{where}: no [family.*] table: a product builds at least one family")
    for name, k in tables.items():
        fw = f"{where}: [family.{name}]"
        if not isinstance(k, dict):
            raise ConfigError(f"{fw}: must be a table, got {k!r}")
        bad = set(k) - _FAMILY_KEYS
        if bad:
            raise ConfigError(f"{fw}: unknown key(s) {sorted(bad)}; allowed: {sorted(_FAMILY_KEYS)}")
        srcs = tuple(_need(k, "sources", list, fw))
        for s in srcs:
            if s not in base.sources:
                raise ConfigError(f"{fw}: source '{s}' is not declared in [[source]] of {base.path.name}")
        abi = k.get("abi", "stable")
        if abi not in ("stable", "classic"):
            raise ConfigError(f"{fw}: abi must be 'stable' or 'classic', got {abi!r}")
        extra = {key: v for key, v in k.items() if key not in ("summary", "archs", "sources", "abi")}
        families[name] = KernelFamily(name=name, summary=k.get("summary", ""),
                                      archs=tuple(_need(k, "archs", list, fw)), sources=srcs,
                                      abi=abi, extra=extra)
    config = Config(
        **{f.name: getattr(base, f.name) for f in fields(Inputs)},   # the shared inputs, as read
        product_path=path,
        default_archs=default_archs,
        default_kernels=tuple(families),
        kernels=families,
    )
    return product, config


def _parse_upstream(table, build: str, where: str) -> UpstreamCMake | None:
    """[upstream-cmake]: required by build = "upstream-cmake", refused otherwise (strict)."""
    if build != "upstream-cmake":
        if table is not None:
            raise ConfigError(f"{where}: [upstream-cmake] needs [product] build = \"upstream-cmake\"")
        return None
    uw = f"{where}: [upstream-cmake]"
    if not isinstance(table, dict):
        raise ConfigError(f"{uw}: missing (build = \"upstream-cmake\" needs it)")
    bad = set(table) - _UPSTREAM_KEYS
    if bad:
        raise ConfigError(f"{uw}: unknown key(s) {sorted(bad)}; allowed: {sorted(_UPSTREAM_KEYS)}")
    targets = tuple(_need(table, "targets", list, uw))
    defines = table.get("defines", {})
    if not isinstance(defines, dict) or not all(isinstance(v, str) for v in defines.values()):
        raise ConfigError(f"{uw}: defines must be a table of strings")
    subsets = {}
    for name, sub in table.get("subsets", {}).items():
        sw = f"{uw} subsets.{name}"
        bad = set(sub) - _SUBSET_KEYS
        if bad:
            raise ConfigError(f"{sw}: unknown key(s) {sorted(bad)}; allowed: {sorted(_SUBSET_KEYS)}")
        st = tuple(_need(sub, "targets", list, sw))
        extra = set(st) - set(targets)
        if extra:
            raise ConfigError(f"{sw}: targets {sorted(extra)} are not in [upstream-cmake] targets")
        subsets[name] = Subset(name, st, tuple(sub.get("exclude", ())))
    link = table.get("link", {})
    if not isinstance(link, dict) or not all(isinstance(v, list) for v in link.values()):
        raise ConfigError(f"{uw}: link must be a table of lists (target = [libraries])")
    unknown = set(link) - set(targets)
    if unknown:
        raise ConfigError(f"{uw}: link names {sorted(unknown)}, not in targets")
    return UpstreamCMake(project=_need(table, "project", str, uw), defines=dict(defines),
                         targets=targets, subsets=subsets,
                         python_variable=table.get("python-variable", ""),
                         link={k: tuple(v) for k, v in link.items()})


def load_product(name: str, root: Path | None = None) -> tuple[Product, Config]:
    """products/<name>.toml over blackwheel.toml: the one way every product is read."""
    root = root or find_root()
    path = root / PRODUCTS_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown product {name!r}: {path} does not exist; products: "
                          f"{', '.join(product_names(root)) or 'none'}")
    return parse_product(path.read_text(), path, load_config(root / CONFIG_NAME))
