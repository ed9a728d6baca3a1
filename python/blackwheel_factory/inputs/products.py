"""Read products/<name>.toml, one file per product (the kernel pack included), into
typed, validated data: the Product (what wheel is made, and how: build kind,
source, packages, [upstream-cmake]) and the Config it is planned from (the shared
inputs of blackwheel.toml plus the product's default archs and [family.*]).

One path for every product: load_product(name) -> (Product, Config), where Config
is what the plan, the CMake bridge, the metadata provider and verify read.

Pure: takes a path (or text), returns dataclasses; strict (edition 1, unknown
keys refused); raises config.ConfigError with the file and the key at fault.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from blackwheel_factory.inputs.config import (CONFIG_NAME, ConfigError, Inputs, find_root,
                                              load_config, need, tomllib)

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
class KernelFamily:
    name: str
    summary: str
    archs: tuple[str, ...]
    sources: tuple[str, ...]
    abi: str                      # "stable" or "classic"
    extra: dict = field(default_factory=dict)


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
    p = need(data, "product", dict, where)
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
        source = need(p, "source", str, f"{where}: [product]")
        if source not in base.sources:
            raise ConfigError(f"{where}: [product] source '{source}' is not a [[source]] of {base.path.name}")
        version = need(p, "version", str, f"{where}: [product]")
    own = tuple(need(p, "own-packages", list, f"{where}: [product]"))
    if not own and not p.get("record-package"):
        raise ConfigError(f"{where}: [product] own-packages must name at least one package "
                          f"(or record-package must say where the build record goes)")
    default_archs = tuple(need(p, "default-archs", list, f"{where}: [product]"))
    upstream = _parse_upstream(data.get("upstream-cmake"), build, where)
    product = Product(
        name=path.stem,
        dist=need(p, "dist", str, f"{where}: [product]"),
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
        srcs = tuple(need(k, "sources", list, fw))
        for s in srcs:
            if s not in base.sources:
                raise ConfigError(f"{fw}: source '{s}' is not declared in [[source]] of {base.path.name}")
        abi = k.get("abi", "stable")
        if abi not in ("stable", "classic"):
            raise ConfigError(f"{fw}: abi must be 'stable' or 'classic', got {abi!r}")
        extra = {key: v for key, v in k.items() if key not in ("summary", "archs", "sources", "abi")}
        families[name] = KernelFamily(name=name, summary=k.get("summary", ""),
                                      archs=tuple(need(k, "archs", list, fw)), sources=srcs,
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
    targets = tuple(need(table, "targets", list, uw))
    defines = table.get("defines", {})
    if not isinstance(defines, dict) or not all(isinstance(v, str) for v in defines.values()):
        raise ConfigError(f"{uw}: defines must be a table of strings")
    subsets = {}
    for name, sub in table.get("subsets", {}).items():
        sw = f"{uw} subsets.{name}"
        bad = set(sub) - _SUBSET_KEYS
        if bad:
            raise ConfigError(f"{sw}: unknown key(s) {sorted(bad)}; allowed: {sorted(_SUBSET_KEYS)}")
        st = tuple(need(sub, "targets", list, sw))
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
    return UpstreamCMake(project=need(table, "project", str, uw), defines=dict(defines),
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
