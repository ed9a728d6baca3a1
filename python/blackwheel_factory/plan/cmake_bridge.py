"""`python -m blackwheel_factory plan --stage ...`: CMake's one door into the Python side.

  --stage toolchain   before project(): pick nvcc, write toolchain.cmake
  --stage kernels     after project(): resolve kernel sets x archs, prepare the
                      upstream sources, decide job counts; write plan.cmake + plan.json
  --stage record      at the end of configure: write _build_info.json (the build record)

Each stage writes its outputs atomically and fails with one clear message.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from blackwheel_factory.plan import archs as A
from blackwheel_factory.sources import fetch as S
from blackwheel_factory.inputs import toolchain as T
from blackwheel_factory.plan import jobs as J
from blackwheel_factory.inputs.config import ConfigError, load_config, load_lock
from blackwheel_factory.inputs.products import KERNEL_PACK, ROOT_PROJECT, load_product
from blackwheel_factory.plan.plan import PlanError, make_plan, plan_as_dict


def add_arguments(p):
    p.add_argument("--stage", choices=["toolchain", "kernels", "record"], required=True)
    p.add_argument("--build-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--archs", default="", help="value of -C cmake.define.BLACKWHEEL_ARCHS")
    p.add_argument("--kernels", default="", help="value of -C cmake.define.BLACKWHEEL_KERNELS")
    p.add_argument("--nvcc", type=Path, default=None)
    p.add_argument("--compiler-cache", default="",
                   help="value of -DBLACKWHEEL_COMPILER_CACHE (a farm is asked only for sccache)")
    p.add_argument("--flags-json", type=Path, default=None, help="record: compile flags from CMake")
    p.add_argument("--libraries", default="",
                   help="record: the extension files of an upstream-cmake product (comma-separated)")
    p.add_argument("--product", default=KERNEL_PACK,
                   help=f"the products/<name>.toml built (default {KERNEL_PACK}: `pip wheel .`)")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _cmake_str(v: str) -> str:
    return '"' + str(v).replace("\\", "/").replace('"', '\\"') + '"'


def _cmake_list(items) -> str:
    return _cmake_str(";".join(str(i) for i in items))


def stage_toolchain(args) -> int:
    config = load_config(args.config)
    tc = T.resolve(args.build_dir, expected_version=config.nvcc_version)
    lines = [
        "# written by python -m blackwheel_factory plan --stage toolchain",
        f"set(CMAKE_CUDA_COMPILER {_cmake_str(tc.nvcc)} CACHE FILEPATH \"nvcc\" FORCE)",
        f"set(CUDAToolkit_ROOT {_cmake_str(tc.prefix)})",
        f"set(CUDA_TOOLKIT_ROOT_DIR {_cmake_str(tc.prefix)})",
        f"set(ENV{{CUDA_HOME}} {_cmake_str(tc.prefix)})",
        f"set(ENV{{CUDA_PATH}} {_cmake_str(tc.prefix)})",
        f"set(BW_NVCC_ORIGIN {tc.origin})",
        f"set(BW_NVCC_VERSION {tc.version})",
    ]
    _atomic_write(args.out, "\n".join(lines) + "\n")
    print(f"blackwheel: nvcc {tc.version} ({tc.origin}) at {tc.real_prefix}")
    return 0


def _jobs(plan, compiler_cache: str = "") -> dict:
    """Job counts: memory-aware default from blackwheel_factory.plan.jobs; MAX_JOBS and
    NVCC_THREADS honoured; with an sccache-dist farm (SCCACHE_CONF [dist]) the compile
    pool follows the farm (plan/farm_jobs.py)."""
    from blackwheel_factory.plan import jobs as J
    from blackwheel_factory.plan import farm_jobs as FJ
    decision = J.decide_for_host(os.environ, [f.name for f in plan.families])
    env = dict(os.environ)
    if compiler_cache:          # -DBLACKWHEEL_COMPILER_CACHE wins over the environment
        env["BLACKWHEEL_COMPILER_CACHE"] = compiler_cache
    farm = FJ.decide_farm(decision, FJ.farm_status_for_build(env), env,
                          decision.mem_available_bytes)
    if farm.farm:
        from blackwheel_factory.farm.status import FarmStatus
        print(f"blackwheel: {FarmStatus(**farm.farm).describe()}")
    return {"jobs": farm.compile_jobs, "link_jobs": farm.link_jobs,
            "nvcc_threads": decision.nvcc_threads, "reason": farm.reason,
            "farm": farm.farm, "farm_warning": farm.warning}


def _product_config(args):
    """(Product, the Config whose kernels are the families to build): every product,
    the kernel pack included, is read the same way (products/<name>.toml)."""
    root = args.config.parent if args.config else None
    return load_product(args.product, root)


def _family_modules(cmake_dir: Path) -> set[str]:
    """Families a CMake module can build: function(blackwheel_family_<name>) in cmake/kernels/."""
    return {m for f in sorted(cmake_dir.glob("*.cmake"))
            for m in re.findall(r"function\(\s*blackwheel_family_(\w+)\s*\)", f.read_text())}


def unbuildable_families(product, config, modules: set[str]) -> list[str]:
    """The product's families that blackwheel's CMake would compile but no module builds
    (pure). An upstream-cmake product's families without a `library` are upstream's own
    targets, built by its CMake."""
    ours = [n for n, f in config.kernels.items()
            if product.build != "upstream-cmake" or f.extra.get("library")]
    return [n for n in ours if n not in modules]


def stage_kernels(args) -> int:
    product, config = _product_config(args)
    modules = _family_modules(config.root / "cmake" / "kernels")
    missing = unbuildable_families(product, config, modules)
    if missing:
        raise ConfigError(f"{config.declared_in}: no CMake module builds [family.{missing[0]}]"
                          f"{' (and ' + ', '.join(missing[1:]) + ')' if missing[1:] else ''}; "
                          f"cmake/kernels/*.cmake build: {', '.join(sorted(modules))}")
    nvcc_archs = nvcc_ver = None
    if args.nvcc:
        nvcc_archs = A.nvcc_supported(T.list_gpu_arch(args.nvcc))
        v = T.nvcc_version(args.nvcc).split(".")
        nvcc_ver = (int(v[0]), int(v[1]))
    plan = make_plan(config, os.environ, cmake_archs=args.archs or None,
                     cmake_kernels=args.kernels or None, nvcc_archs=nvcc_archs, nvcc_version=nvcc_ver)
    print(f"blackwheel: archs {', '.join(str(a) for a in plan.requested_archs)} (from {plan.archs_origin})")
    for f in plan.families:
        print(f"blackwheel: building {f.name} for {', '.join(str(a) for a in f.archs)}")
    for name, reason in plan.skipped:
        print(f"blackwheel: skipping {name}: {reason}")
    cache = S.default_cache_dir()
    src_root = S.source_root()
    # every tree is verified against its manifest before it is used (set aside and
    # re-created when it differs), at the same absolute path on every machine
    dirs = S.prepare(config, plan.sources, cache, log=print, root=src_root)
    # our own csrc/ too: nvcc's internal symbol names follow the source's real path
    dirs["own"] = S.stage_tree(config.path.parent / "csrc", src_root, "blackwheel-csrc", log=print)
    jobs = _jobs(plan, args.compiler_cache)
    print(f"blackwheel: {jobs['jobs']} parallel compile job(s), nvcc --threads {jobs['nvcc_threads']} "
          f"({jobs['reason']})")
    lines = ["# written by python -m blackwheel_factory plan --stage kernels"]
    lines.append(f"set(BW_FAMILIES {_cmake_list(f.name for f in plan.families)})")
    lines.append(f"set(BW_ARCHS {_cmake_list(plan.requested_archs)})")
    for f in plan.families:
        up = f.name.upper()
        lines.append(f"set(BW_{up}_ARCHS {_cmake_list(f.archs)})")
        lines.append(f"set(BW_{up}_GENCODE {_cmake_list(A.gencode_flags(f.archs))})")
        lines.append(f"set(BW_{up}_ABI {f.abi})")
        for key, value in f.options.items():
            lines.append(f"set(BW_{up}_{key.upper()} {_cmake_list(value)})")
        library = config.kernels[f.name].extra.get("library")
        if library:   # <package>/<name>.abi3.so; default blackwheel/_<family>.abi3.so
            lines.append(f"set(BW_{up}_LIBRARY {_cmake_str(library)})")
    for name, path in dirs.items():
        lines.append(f"set(BW_SRC_{name.upper().replace('-', '_')} {_cmake_str(path)})")
    lines.append(f"set(BW_SOURCE_CACHE {_cmake_str(cache.resolve())})")
    lines.append(f"set(BW_SOURCE_ROOT {_cmake_str(src_root)})")
    from blackwheel_factory.packaging.repair import load_policy
    # BLACKWHEEL_MANYLINUX: the policy the post-link check holds the binaries to, e.g.
    # manylinux_2_39 when building on a newer host than the project's toolchain.
    plat = os.environ.get("BLACKWHEEL_MANYLINUX") or load_policy().plat
    lines.append(f"set(BW_MANYLINUX_POLICY {plat.removesuffix('_x86_64').removesuffix('_aarch64')})")
    lines.append(f"set(BW_JOBS {jobs['jobs']})")
    lines.append(f"set(BW_NVCC_THREADS {jobs['nvcc_threads']})")
    lines.append(f"set(BW_LINK_JOBS {jobs['link_jobs']})")
    lines.append(f"set(BW_FARM_WARNING {_cmake_str(jobs['farm_warning'])})")
    lines.append(f"set(BW_SOURCE_DATE_EPOCH {config.source_date_epoch})")
    lines += _product_lines(product, dirs)
    _atomic_write(args.out, "\n".join(lines) + "\n")
    record = plan_as_dict(plan)
    record["sources"] = S.source_records(config, plan.sources, cache)
    record["own_sources"] = {"csrc_sha256": S.digest_of(S.file_digests(config.path.parent / "csrc"))}
    record["source_root"] = str(src_root)
    record["source_dirs"] = {k: str(v) for k, v in dirs.items()}
    record["jobs"] = jobs
    record["source_date_epoch"] = config.source_date_epoch
    _atomic_write(args.out.with_suffix(".json"), json.dumps(record, indent=1, sort_keys=True))
    return 0


def _product_lines(product, dirs: dict) -> list[str]:
    """What CMake installs besides the extensions, and where the record goes. The root
    project's Python is shipped by its pyproject.toml (wheel.packages)."""
    if product.build == ROOT_PROJECT:
        return [f"set(BW_RECORD_PACKAGE {_cmake_str(product.record_package)})"]
    tree = Path(dirs[product.source])
    missing = [p for p in product.upstream_packages if not (tree / p / "__init__.py").is_file()]
    if missing:
        raise ConfigError(f"{product.path}: upstream-packages {missing} not found in {tree}")
    return [
        f"set(BW_PRODUCT_DIST {_cmake_str(product.dist)})",
        f"set(BW_RECORD_PACKAGE {_cmake_str(product.record_package)})",
        f"set(BW_PRODUCT_UPSTREAM_PACKAGES {_cmake_list(tree / p for p in product.upstream_packages)})",
        f"set(BW_PRODUCT_OWN_PACKAGES {_cmake_list(product.own_packages)})",
    ]


def stage_record(args) -> int:
    """The build record installed as <package>/_build_info.json."""
    product, config = _product_config(args)
    lock = load_lock(config.root / "torch-lock.toml")
    plan = json.loads((args.build_dir / "plan.json").read_text())
    flags = json.loads(args.flags_json.read_text()) if args.flags_json else {}
    tc = json.loads(flags.pop("toolchain", "{}")) if isinstance(flags.get("toolchain"), str) else flags.pop("toolchain", {})
    kernels = {}
    for name, fam in plan["families"].items():
        own = config.kernels[name].extra.get("library")   # blackwheel compiles it (e.g. flash_attn_2)
        library = (own or f"_{name}.abi3.so").rsplit("/", 1)[-1]
        libraries = [x for x in args.libraries.split(",") if x] if not own else []
        if libraries:   # an upstream-cmake product: its targets' files, all under the family's ABI
            library = libraries[0]
        kernels[name] = {"archs": fam["archs"], "abi": fam["abi"], "library": library,
                         **({"libraries": libraries} if libraries else {}),
                         "ops": list(config.kernels[name].extra.get("ops", [])),
                         **fam.get("options", {})}
    abi = "stable" if all(k["abi"] == "stable" for k in kernels.values()) else "classic"
    requirement = (f"torch>={lock.stable_target}" if abi == "stable"
                   else f"torch=={lock.public_version}")
    from blackwheel_factory.compile.metadata import public_version
    version = _version(config.root, plan["archs"], lock)
    # the kernel pack's name comes from the metadata provider (environment); a product's
    # from its rendered pyproject (compile/product_wheel.py), which reads -C too
    root_project = product.build == ROOT_PROJECT
    env_version = _env_version(config.root) if root_project else None
    if env_version is not None and env_version != version:
        raise PlanError(
            f"the wheel is named {env_version} (archs from the environment) but CMake builds "
            f"archs {', '.join(plan['archs'])} ({version}): pass the archs as BLACKWHEEL_ARCHS in "
            f"the environment, not as -C cmake.define (the name is decided before CMake runs)")
    info = {
        "schema": 1,
        "blackwheel_version": version if root_project else public_version(config.root),
        "product": _product_record(product, plan, lock),
        "archs": plan["archs"],
        "kernels": kernels,
        "skipped": plan["skipped"],
        "abi": abi,
        "torch": {"lock": lock.as_dict(), "requirement": requirement,
                  "min_version": lock.stable_target if abi == "stable" else lock.public_version},
        "sources": plan["sources"],
        "own_sources": plan.get("own_sources", {}),
        "toolchain": {**tc, **_tool_versions()},
        "flags": flags,
        "source_date_epoch": plan["source_date_epoch"],
    }
    _atomic_write(args.out, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return 0


def _product_record(product, plan: dict, lock) -> dict:
    """dist and version of the wheel (the variant label names CUDA and archs)."""
    from blackwheel_factory.packaging.variant import variant_version
    if product.build == ROOT_PROJECT:   # its version is the record's blackwheel_version
        return {"name": product.name, "dist": product.dist}
    return {"name": product.name, "dist": product.dist,
            "version": variant_version(product.version, lock.cuda or "0.0", plan["archs"]),
            "upstream_version": product.version}


def _version(root: Path, archs: list[str], lock) -> str:
    """The wheel's version: public version + variant label (packaging/variant.py)."""
    from blackwheel_factory.compile.metadata import public_version
    from blackwheel_factory.packaging.variant import variant_version
    return variant_version(public_version(root), lock.cuda, archs)


def _env_version(root: Path) -> str | None:
    """The version the metadata provider gave the wheel (same env), or None if unknown."""
    from blackwheel_factory.compile.metadata import wheel_version
    try:
        return wheel_version(root, os.environ)
    except Exception:
        return None


def _tool_versions() -> dict:
    """Versions of the Python-side tools that shape the bytes (the build backend that
    writes the zip, the ABI checker's policy data, the generator's template engine), all
    pinned in build-system.requires. (Not the Python version: it decides no byte.)"""
    from importlib import metadata as md
    out = {}
    for dist in ("scikit-build-core", "ninja", "cmake", "jinja2", "auditwheel", "pyelftools",
                 "packaging"):
        try:
            out[f"{dist}_dist"] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def run(args) -> int:
    try:
        return {"toolchain": stage_toolchain, "kernels": stage_kernels, "record": stage_record}[args.stage](args)
    except (ConfigError, PlanError, S.SourceError, T.ToolchainError, J.JobsError) as e:
        print(f"blackwheel: error: {e}", file=sys.stderr)
        return 1
