"""products/*.toml: strict parsing, the rendered PEP 517 project, variant versions."""
import tomllib
from pathlib import Path

import pytest

from blackwheel_factory.compile.product_wheel import _archs_setting, render
from blackwheel_factory.inputs.config import ConfigError, find_root, load_config, load_lock
from blackwheel_factory.inputs.products import load_product, parse_product, product_names
from blackwheel_factory.plan.plan import PlanError, make_plan

ROOT = find_root(Path(__file__))


def test_products_listed_and_flash_attn_parses():
    assert "flash-attn" in product_names(ROOT)
    product, config = load_product("flash-attn", ROOT)
    assert product.dist == "flash-attn" and product.upstream_packages == ("flash_attn",)
    assert list(config.kernels) == ["flash_attn_2"]
    fam = config.kernels["flash_attn_2"]
    assert fam.extra["head_dims"] == [32, 64, 96, 128, 192, 256]
    assert fam.extra["directions"] == ["fwd", "bwd"]
    # the shared pins come from blackwheel.toml
    assert config.sources == load_config(ROOT / "blackwheel.toml").sources


def test_unknown_keys_and_editions_are_errors():
    base = load_config(ROOT / "blackwheel.toml")
    text = (ROOT / "products/flash-attn.toml").read_text()
    with pytest.raises(ConfigError, match="unknown key"):
        parse_product(text.replace('license = "BSD-3-Clause"', 'licence = "BSD"'), Path("x.toml"), base)
    with pytest.raises(ConfigError, match="edition"):
        parse_product(text.replace("edition = 1", "edition = 9"), Path("x.toml"), base)
    with pytest.raises(ConfigError, match="source 'nope'"):
        parse_product(text.replace('source = "flash-attn"', 'source = "nope"'), Path("x.toml"), base)
    with pytest.raises(ConfigError, match="unknown product"):
        load_product("no-such-product", ROOT)


def test_plan_options_head_dims_and_directions():
    _, config = load_product("flash-attn", ROOT)
    plan = make_plan(config, {})
    f = plan.family("flash_attn_2")
    assert [str(a) for a in f.archs] == ["12.0a"]
    assert f.options == {"head_dims": [32, 64, 96, 128, 192, 256], "directions": ["fwd", "bwd"],
                         "dtypes": ["fp16", "bf16"]}
    plan = make_plan(config, {"BLACKWHEEL_FA_HEAD_DIMS": "128", "BLACKWHEEL_FA_DIRECTIONS": "fwd",
                              "BLACKWHEEL_FA_DTYPES": "bf16", "BLACKWHEEL_ARCHS": "9.0a;12.0a"})
    f = plan.family("flash_attn_2")
    assert f.options == {"head_dims": [128], "directions": ["fwd"], "dtypes": ["bf16"]}
    with pytest.raises(PlanError, match="unknown dtype"):
        make_plan(config, {"BLACKWHEEL_FA_DTYPES": "fp8"})
    with pytest.raises(PlanError, match="backward needs the forward"):
        make_plan(config, {"BLACKWHEEL_FA_DIRECTIONS": "bwd"})
    with pytest.raises(PlanError, match="unknown direction"):
        make_plan(config, {"BLACKWHEEL_FA_DIRECTIONS": "fwd,sideways"})


def test_rendered_project_names_the_variant():
    product, config = load_product("flash-attn", ROOT)
    lock = load_lock(ROOT / "torch-lock.toml")
    files = render(product, config, lock, {"BLACKWHEEL_ARCHS": "9.0a;12.0a"}, ROOT, ["scikit-build-core"])
    meta = tomllib.loads(files["pyproject.toml"])["project"]
    assert meta["name"] == "flash-attn"
    assert meta["version"] == "2.8.3.post2+cu130.sm90a.sm120a"
    assert meta["dependencies"][0] == f"torch>={lock.stable_target}"
    assert 'set(BW_PRODUCT "flash-attn")' in files["CMakeLists.txt"]
    one = tomllib.loads(render(product, config, lock, {}, ROOT, [])["pyproject.toml"])["project"]
    assert one["version"] == "2.8.3.post2+cu130.sm120a"


def test_archs_config_setting_is_read_for_the_label():
    assert _archs_setting(["-v", "-C", "cmake.define.BLACKWHEEL_ARCHS=9.0a"]) == "9.0a"
    assert _archs_setting(["-Ccmake.define.BLACKWHEEL_ARCHS=8.0;12.0a"]) == "8.0;12.0a"
    assert _archs_setting(["--config-settings=cmake.define.BLACKWHEEL_ARCHS=12.0f"]) == "12.0f"
    assert _archs_setting(["-v"]) is None
