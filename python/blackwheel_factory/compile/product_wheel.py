"""`python -m blackwheel_factory wheel PRODUCT -w DIR`: build a products/<name>.toml wheel.

The kernel pack (build = "root-project") is this checkout's own PEP 517 project:
pip builds the checkout, as `pip wheel .` does. Any other product is a pinned
upstream source plus our compiled part. Its PEP 517 project is rendered, not
written by hand: a pyproject.toml (name, variant
version, requirements from the product file and the torch lock; the same pinned
build requirements as the kernel pack) and a CMakeLists.txt that runs the same
cmake/ modules as the kernel pack (ProductBuild.cmake), into
``_build/products/<name>/``. Then pip builds it like any project, so every knob
of the kernel pack works: -C config settings, BLACKWHEEL_ARCHS /
TORCH_CUDA_ARCH_LIST, MAX_JOBS, NVCC_THREADS, --no-build-isolation.

render() is pure (text in, text out); build() has the effects.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Mapping

from blackwheel_factory.inputs.config import ConfigError, TorchLock, find_root, load_lock
from blackwheel_factory.inputs.products import (ROOT_PROJECT, Config, Product, load_product,
                                                product_names)
from blackwheel_factory.packaging.variant import variant_version
from blackwheel_factory.plan.plan import PlanError, make_plan

RENDER_DIR = Path("_build") / "products"


def _template(name: str) -> str:
    return resources.files("blackwheel_factory.resources.product").joinpath(name).read_text()


def wheel_version(product: Product, config: Config, lock: TorchLock, env: Mapping[str, str]) -> str:
    """Upstream's version + the variant label of the archs this build asks for."""
    plan = make_plan(config, env)
    return variant_version(product.version, lock.cuda or "0.0", [str(a) for a in plan.requested_archs])


def render(product: Product, config: Config, lock: TorchLock, env: Mapping[str, str],
           root: Path, build_requires: list[str]) -> dict[str, str]:
    """The rendered project: file name -> text."""
    deps = [f"torch>={lock.stable_target}", *product.dependencies]
    subst = {**_common_subst(product, config, lock, env, root, build_requires),
             "@PROJECT@": product.dist.replace("-", "_"),
             "@DEPENDENCIES@": json.dumps(deps)}
    return {name: _fill(name + ".in", subst) for name in ("CMakeLists.txt", "pyproject.toml")}


def _common_subst(product: Product, config: Config, lock: TorchLock, env: Mapping[str, str],
                  root: Path, build_requires: list[str]) -> dict[str, str]:
    """What every rendered project says the same way: name, variant version, metadata."""
    return {
        "@PRODUCT@": product.name,
        "@ROOT@": str(root).replace("\\", "/"),
        "@BUILD_REQUIRES@": json.dumps(build_requires),
        "@DIST@": product.dist,
        "@VERSION@": wheel_version(product, config, lock, env),
        "@SUMMARY@": json.dumps(product.summary)[1:-1],
        "@REQUIRES_PYTHON@": product.requires_python,
        "@LICENSE@": product.license,
    }


def _fill(template: str, subst: Mapping[str, str]) -> str:
    text = _template(template)
    for k, v in subst.items():
        text = text.replace(k, v)
    return text


SUBSET_ENV = "BLACKWHEEL_{}_SUBSET"   # BLACKWHEEL_VLLM_SUBSET=reduced


def subset_name(product: Product, env: Mapping[str, str]) -> str:
    return env.get(SUBSET_ENV.format(product.name.upper().replace("-", "_")), "").strip()


def _toml_str(v: str) -> str:
    return json.dumps(str(v))


def own_family_targets(config: Config) -> list[str]:
    """CMake targets of the families blackwheel compiles inside an upstream project."""
    return [f"bw_{name}" for name, fam in config.kernels.items() if fam.extra.get("library")]


def render_upstream(product: Product, config: Config, lock: TorchLock, env: Mapping[str, str],
                    root: Path, build_requires: list[str], work: Path, dirs: Mapping[str, Path],
                    upstream_pyproject: dict, requirements: list[str]) -> dict[str, str]:
    """The rendered project of a build = "upstream-cmake" product (pure): upstream's
    CMake project in ``work`` (the working copy), our controls hooked in, its
    scripts and entry points as upstream declares them, Requires-Dist from its
    requirements files (``requirements``) plus the stable-ABI torch floor."""
    up = product.upstream_cmake
    subset = up.subset(subset_name(product, env))
    def resolve(value: str) -> str:
        for name, path in dirs.items():
            value = value.replace("{src:" + name + "}", str(path).replace("\\", "/"))
        if "{src:" in value:
            raise ConfigError(f"{product.path}: [upstream-cmake] defines: {value!r} names a source "
                              f"that is not prepared (known: {', '.join(sorted(dirs))})")
        return value
    defines = "\n".join(f"{k} = {_toml_str(resolve(v))}" for k, v in sorted(up.defines.items()))
    proj = upstream_pyproject.get("project", {})
    scripts = []
    if proj.get("scripts"):
        scripts.append("[project.scripts]")
        scripts += [f"{k} = {_toml_str(v)}" for k, v in proj["scripts"].items()]
    for group, eps in proj.get("entry-points", {}).items():
        scripts.append(f"[project.entry-points.{_toml_str(group)}]")
        scripts += [f"{k} = {_toml_str(v)}" for k, v in eps.items()]
    deps = [f"torch>={lock.stable_target}", *requirements, *product.dependencies]
    subst = {
        **_common_subst(product, config, lock, env, root, build_requires),
        "@PROJECT@": up.project,
        "@DEPENDENCIES@": json.dumps(deps, indent=1),
        "@SCRIPTS@": "\n".join(scripts),
        "@SOURCE_DIR@": str(work).replace("\\", "/"),
        # vLLM's targets of the subset, and blackwheel's own families of the product (a
        # [family.*] with a `library`, compiled by UpstreamProduct.cmake: bw_<family>)
        "@TARGETS@": json.dumps([*subset.targets, *own_family_targets(config)]),
        "@COMPONENTS@": json.dumps([*subset.targets, "blackwheel"]),
        "@PY_API@": "cp" + product.requires_python.split(">=", 1)[1].split(",")[0].replace(".", "")
                    if ">=" in product.requires_python else "cp39",
        "@TARGET_LIST@": ";".join(subset.targets),
        "@EXCLUDE_LIST@": ";".join(subset.exclude),
        "@PYTHON_VARIABLE@": up.python_variable,
        # target=lib,lib;target=lib (the built subset's targets only)
        "@LINK@": ";".join(f"{t}={','.join(libs)}" for t, libs in sorted(up.link.items())
                           if t in subset.targets),
        "@DEFINES@": defines,
    }
    return {"pyproject.toml": _fill("pyproject-upstream.toml.in", subst)}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _product_env(env: Mapping[str, str], product: Product, config: Config) -> dict[str, str]:
    out = dict(env)
    # BLACKWHEEL_KERNELS selects the kernel pack's sets; a product builds its own families
    if product.build != ROOT_PROJECT:
        out.pop("BLACKWHEEL_KERNELS", None)
    out.setdefault("SOURCE_DATE_EPOCH", str(config.source_date_epoch))
    return out


def _archs_setting(pip_args: list[str]) -> str | None:
    """The value of -C/--config-settings cmake.define.BLACKWHEEL_ARCHS=..., if given."""
    key = "cmake.define.BLACKWHEEL_ARCHS="
    value = None
    for i, a in enumerate(pip_args):
        for prefix in ("-C", "--config-settings="):
            if a == prefix.rstrip("=") and i + 1 < len(pip_args) and pip_args[i + 1].startswith(key):
                value = pip_args[i + 1][len(key):]
            elif a.startswith(prefix + key):
                value = a[len(prefix + key):]
    return value


def _render_upstream_build(product, config, lock, env, root, requires, log):
    """Prepare the sources and the working copy, then render (effects around render_upstream)."""
    from blackwheel_factory.compile.upstream_requirements import RequirementsError, read_requirements
    from blackwheel_factory.sources import fetch as S
    fam_sources = sorted({s for f in config.kernels.values() for s in f.sources} | {product.source})
    dirs = S.prepare(config, fam_sources, S.default_cache_dir(), log=log)
    tree = Path(dirs[product.source])
    plan = make_plan(config, env)
    subset = product.upstream_cmake.subset(subset_name(product, env))   # unknown subset: clear error
    salt = "-".join(str(a).replace(".", "") for a in plan.requested_archs)
    work = S.work_tree(tree, salt, log=log)
    try:
        reqs = [r for f in product.dependencies_from
                for r in read_requirements(f, lambda rel: (tree / rel).read_text(), product.dependencies_drop)]
    except (OSError, RequirementsError) as e:
        raise ConfigError(f"{product.path}: dependencies-from: {e}") from e
    upstream_pyproject = tomllib.loads((tree / "pyproject.toml").read_text()) \
        if (tree / "pyproject.toml").is_file() else {}
    files = render_upstream(product, config, lock, env, root, requires, work,
                            {k: Path(v) for k, v in dirs.items()}, upstream_pyproject,
                            list(dict.fromkeys(reqs)))
    log(f"blackwheel: {product.dist}: {subset.name} build of {', '.join(subset.targets)}"
        + (f" (left out: {', '.join(subset.exclude)})" if subset.exclude else ""))
    return files, tree


def build(name: str, wheel_dir: Path, pip_args: list[str], env: Mapping[str, str] | None = None,
          root: Path | None = None, log=print) -> Path:
    """Render products/<name>.toml into _build/products/<name>/ and pip-build it (the
    root project: pip-build the checkout itself)."""
    root = (root or find_root()).resolve()
    product, config = load_product(name, root)
    lock = load_lock(root / "torch-lock.toml")
    env = _product_env(os.environ if env is None else env, product, config)
    archs = _archs_setting(pip_args)
    if archs is not None:   # -C cmake.define.BLACKWHEEL_ARCHS=... names the variant too
        env["BLACKWHEEL_ARCHS"] = archs
    if product.build == ROOT_PROJECT:
        from blackwheel_factory.compile.metadata import wheel_version as root_version
        project, version = root, root_version(root, env)
    else:
        project, version = _render_project(product, config, lock, env, root, log)
    wheel_dir = Path(wheel_dir).resolve()
    wheel_dir.mkdir(parents=True, exist_ok=True)
    before = set(wheel_dir.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", str(project), "-w", str(wheel_dir),
           *pip_args]
    log("blackwheel: " + " ".join(cmd))
    rc = subprocess.call(cmd, env=env)
    if rc != 0:
        raise RuntimeError(f"pip wheel failed (exit {rc}) for {product.dist}; see the log above")
    dist = product.dist.replace("-", "_")
    built = [w for w in wheel_dir.glob(f"{dist}-{version}-*.whl")]
    new = [w for w in built if w not in before] or built
    if not new:
        raise RuntimeError(f"pip reported success but no {dist}-{version}-*.whl is in {wheel_dir}")
    return max(new, key=lambda p: p.stat().st_mtime)


def _render_project(product, config, lock, env, root, log) -> tuple[Path, str]:
    """Write the rendered project into _build/products/<name>/: (its folder, its version)."""
    from blackwheel_factory.sources import fetch as S
    requires = tomllib.loads((root / "pyproject.toml").read_text())["build-system"]["requires"]
    project = root / RENDER_DIR / product.name
    if product.build == "upstream-cmake":
        files, tree = _render_upstream_build(product, config, lock, env, root, requires, log)
    else:
        files = render(product, config, lock, env, root, requires)
        tree = S.prepare(config, [product.source], S.default_cache_dir(), log=log)[product.source]
    # upstream's README and LICENSE travel with its code
    for extra in ("README.md", "LICENSE"):
        src = Path(tree) / extra
        files[extra] = src.read_text() if src.is_file() else ""
    for fname, text in files.items():
        _write_atomic(project / fname, text)
    version = tomllib.loads(files["pyproject.toml"])["project"]["version"]
    log(f"blackwheel: {product.dist} {version} rendered in {project}")
    return project, version


def add_arguments(p) -> None:
    p.add_argument("product", help="a products/<name>.toml: kernel-pack, flash-attn, vllm")
    p.add_argument("-w", "--wheel-dir", type=Path, default=Path("dist"), help="where the wheel goes")
    p.add_argument("pip_args", nargs=argparse.REMAINDER, metavar="-- PIP_ARGS",
                   help="passed to `pip wheel` (after --), e.g. -- -v --no-build-isolation "
                        "-C cmake.define.BLACKWHEEL_ARCHS=9.0a")


def run(args) -> int:
    try:
        rest = list(args.pip_args)
        pre, pip_args = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else (rest, [])
        wheel_dir = args.wheel_dir
        if pre:   # options given after the product name: -w DIR
            sub = argparse.ArgumentParser(prog="wheel")
            sub.add_argument("-w", "--wheel-dir", type=Path, default=wheel_dir)
            wheel_dir = sub.parse_args(pre).wheel_dir
        wheel = build(args.product, wheel_dir, pip_args)
    except (ConfigError, PlanError) as e:
        print(f"blackwheel: error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"blackwheel: error: {e}", file=sys.stderr)
        return 1
    print(wheel)
    return 0


__all__ = ["render", "build", "wheel_version", "product_names"]
