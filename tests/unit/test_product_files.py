"""products/*.toml: the three products, the kernel pack included, are declared the same
way and read by one loader (load_product); blackwheel.toml keeps only shared inputs."""
import re
import tomllib
from argparse import Namespace
from pathlib import Path

import pytest

from blackwheel_factory.checks import verify as V
from blackwheel_factory.compile import product_wheel as PW
from blackwheel_factory.inputs.config import ConfigError, find_root, load_config, parse_config
from blackwheel_factory.inputs.products import (KERNEL_PACK, ROOT_PROJECT, load_product, parse_product,
                                                product_names)
from blackwheel_factory.plan import cmake_bridge as CB

ROOT = find_root(Path(__file__))
BASE = load_config(ROOT / "blackwheel.toml")
PACK = (ROOT / "products/kernel-pack.toml").read_text()


def test_three_products_in_one_folder_one_loader():
    assert product_names(ROOT) == ["flash-attn", "kernel-pack", "vllm"]
    builds = {}
    for name in product_names(ROOT):
        product, config = load_product(name, ROOT)
        builds[name] = product.build
        assert config.kernels and config.default_kernels == tuple(config.kernels)
        assert config.sources == BASE.sources and config.source_date_epoch == BASE.source_date_epoch
        assert config.declared_in == f"products/{name}.toml"
        assert config.default_archs == ("12.0a",)
    assert builds == {"flash-attn": "blackwheel-cmake", "kernel-pack": ROOT_PROJECT,
                      "vllm": "upstream-cmake"}


def test_kernel_pack_families_as_they_were_in_blackwheel_toml():
    product, config = load_product(KERNEL_PACK, ROOT)
    assert (product.dist, product.record_package, product.own_packages) == \
        ("blackwheel", "blackwheel", ("blackwheel",))
    assert list(config.kernels) == ["scaled_mm", "nvfp4", "marlin_fp4", "flash_attn"]
    fa = config.kernels["flash_attn"]
    assert fa.sources == ("flash-attn", "cutlass") and fa.abi == "stable"
    assert fa.extra == {"ops": ["flash_attn_fwd"], "head_dims": [64, 128],
                        "available_head_dims": [32, 64, 96, 128, 192, 256]}
    assert config.kernels["nvfp4"].archs == ("12.0a", "12.0f", "12.1a")
    assert all(f.extra["ops"] for f in config.kernels.values())


def test_kernel_pack_file_agrees_with_the_root_project():
    """dist = pyproject's name, own-packages = its wheel.packages, and the root
    CMakeLists.txt builds the one root-project product."""
    product, _ = load_product(KERNEL_PACK, ROOT)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == product.dist
    packages = pyproject["tool"]["scikit-build"]["wheel"]["packages"]
    assert packages == [f"python/{p}" for p in product.own_packages]
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(rf"set\(BW_PRODUCT {KERNEL_PACK}\)", cmake)
    roots = [n for n in product_names(ROOT) if load_product(n, ROOT)[0].build == ROOT_PROJECT]
    assert roots == [KERNEL_PACK]


def test_blackwheel_toml_keeps_only_shared_inputs():
    data = tomllib.loads((ROOT / "blackwheel.toml").read_text())
    assert set(data) == {"build", "toolchain", "source"}
    assert set(data["build"]) == {"source_date_epoch", "accepted_archs"}
    assert not hasattr(BASE, "kernels")   # families come from a product file only


@pytest.mark.parametrize("extra,hint", [
    ("[kernels.scaled_mm]\narchs = [\"12.0a\"]\n", r"'kernels' is no longer read here: .*"
                                                    r"\[family\.\*\] tables of products/kernel-pack.toml"),
    ("[colour]\nx = 1\n", r"unknown key\(s\) \['colour'\]"),
])
def test_blackwheel_toml_refuses_what_moved_and_unknown_tables(tmp_path, extra, hint):
    text = (ROOT / "blackwheel.toml").read_text() + "\n" + extra
    with pytest.raises(ConfigError, match=hint):
        parse_config(text, tmp_path / "blackwheel.toml")


@pytest.mark.parametrize("key,hint", [("default_kernels", "every \\[family.\\*\\] of products/kernel-pack"),
                                      ("default_archs", "default-archs in products/<name>.toml")])
def test_blackwheel_toml_build_keys_that_moved_say_where(tmp_path, key, hint):
    text = (ROOT / "blackwheel.toml").read_text().replace(
        "[build]\n", f'[build]\n{key} = ["12.0a"]\n', 1)
    with pytest.raises(ConfigError, match=rf"\[build\]: '{key}' is no longer read here: .*{hint}"):
        parse_config(text, tmp_path / "blackwheel.toml")


@pytest.mark.parametrize("old,new,hint", [
    # an unknown [product] key
    ('record-package = "blackwheel"', 'record-package = "blackwheel"\ncolour = "red"',
     r"\[product\] unknown key\(s\) \['colour'\]"),
    # metadata the root project's pyproject.toml owns
    ('dist = "blackwheel"', 'dist = "blackwheel"\nversion = "0.2.0"',
     r"\[product\] \['version'\] not allowed with build = \"root-project\": .*pyproject.toml"),
    ('dist = "blackwheel"', 'dist = "blackwheel"\nsource = "vllm"', r"\['source'\] not allowed"),
    # an unknown family key
    ('head_dims = [64, 128]', 'head_dims = [64, 128]\nhead_dim = 96',
     r"\[family.flash_attn\]: unknown key\(s\) \['head_dim'\]; allowed: "),
    ('abi = "stable"', 'abi = "stabel"', r"\[family.scaled_mm\]: abi must be 'stable' or 'classic'"),
    ('default-archs = ["12.0a"]', '', r"\[product\]: missing key 'default-archs'"),
    ('build = "root-project"', 'build = "setup.py"', r"build must be one of"),
])
def test_kernel_pack_file_is_strict(old, new, hint):
    assert old in PACK
    with pytest.raises(ConfigError, match=hint):
        parse_product(PACK.replace(old, new, 1), Path("products/kernel-pack.toml"), BASE)


def test_a_product_without_families_is_refused():
    text = PACK[:PACK.index("[family.scaled_mm]")]
    with pytest.raises(ConfigError, match=r"no \[family\.\*\] table"):
        parse_product(text, Path("products/kernel-pack.toml"), BASE)


def test_every_family_has_a_cmake_module():
    modules = CB._family_modules(ROOT / "cmake" / "kernels")
    assert {"scaled_mm", "nvfp4", "marlin_fp4", "flash_attn", "flash_attn_2"} <= modules
    for name in product_names(ROOT):
        product, config = load_product(name, ROOT)
        assert CB.unbuildable_families(product, config, modules) == [], name


def test_an_unknown_family_fails_the_plan_with_a_clear_message(tmp_path, capsys):
    """A [family.X] no cmake/kernels module builds stops `plan` before any source is fetched."""
    (tmp_path / "products").mkdir()
    (tmp_path / "cmake").mkdir()
    for name in ("blackwheel.toml", "torch-lock.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "cmake/kernels").mkdir()
    for f in (ROOT / "cmake/kernels").glob("*.cmake"):
        (tmp_path / "cmake/kernels" / f.name).write_text(f.read_text())
    (tmp_path / "products/kernel-pack.toml").write_text(
        PACK + '\n[family.attention]\narchs = ["12.0a"]\nsources = ["vllm"]\n')
    args = Namespace(stage="kernels", product=KERNEL_PACK, config=tmp_path / "blackwheel.toml",
                     build_dir=tmp_path / "b", out=tmp_path / "b/plan.cmake", archs="", kernels="",
                     nvcc=None, compiler_cache="")
    assert CB.run(args) == 1
    err = capsys.readouterr().err
    assert "products/kernel-pack.toml: no CMake module builds [family.attention]" in err
    assert "flash_attn, flash_attn_2, marlin_fp4, nvfp4, scaled_mm" in err
    assert not (tmp_path / "b/plan.cmake").exists()


def test_upstream_families_without_a_library_are_upstreams_to_build():
    product, config = load_product("vllm", ROOT)
    assert CB.unbuildable_families(product, config, set()) == ["flash_attn_2"]   # vllm: upstream's


def test_kernel_pack_cmake_lines_and_record_are_unchanged():
    """The kernel pack's record keeps its product entry and record package."""
    product, _ = load_product(KERNEL_PACK, ROOT)
    assert CB._product_lines(product, {}) == ['set(BW_RECORD_PACKAGE "blackwheel")']
    assert CB._product_record(product, {"archs": ["12.0a"]}, None) == \
        {"name": "kernel-pack", "dist": "blackwheel"}


def test_verify_takes_family_archs_from_the_records_product():
    pack = V.supported_archs({"product": {"name": "kernel-pack", "dist": "blackwheel"}})
    assert pack["nvfp4"] == ["12.0a", "12.0f", "12.1a"]
    assert V.supported_archs({}) == pack                 # an older record without a product
    fa = V.supported_archs({"product": {"name": "flash-attn"}})
    assert list(fa) == ["flash_attn_2"]
    assert V.supported_archs({"product": {"name": "not-here"}}) is None


def test_wheel_command_keeps_kernel_selection_for_the_kernel_pack_only():
    env = {"BLACKWHEEL_KERNELS": "marlin_fp4"}
    pack, pack_config = load_product(KERNEL_PACK, ROOT)
    fa, fa_config = load_product("flash-attn", ROOT)
    assert PW._product_env(env, pack, pack_config)["BLACKWHEEL_KERNELS"] == "marlin_fp4"
    assert "BLACKWHEEL_KERNELS" not in PW._product_env(env, fa, fa_config)
