"""Arch arithmetic and the configuration -> plan step (pure)."""
from __future__ import annotations

from pathlib import Path

import pytest

from blackwheel_factory.plan import archs as A
from blackwheel_factory.inputs.config import ConfigError, parse_config
from blackwheel_factory.inputs.products import KERNEL_PACK, load_product, parse_product
from blackwheel_factory.plan.plan import PlanError, make_plan, plan_as_dict

REPO = Path(__file__).resolve().parents[2]
NVCC_13 = {75, 80, 86, 87, 88, 89, 90, 100, 110, 103, 120, 121}


@pytest.fixture(scope="module")
def config():
    """The kernel pack's plan input: blackwheel.toml + products/kernel-pack.toml."""
    return load_product(KERNEL_PACK, REPO)[1]


def test_parse_forms():
    a = A.parse_arch("12.0a")
    assert (a.number, a.suffix, a.sm, a.compute) == (120, "a", "sm_120a", "compute_120a")
    assert A.parse_arch("8.0+PTX").ptx and str(A.parse_arch("8.0+PTX")) == "8.0+PTX"
    assert [str(x) for x in A.parse_arch_list("12.0a;9.0a 8.9,12.0a")] == ["12.0a", "9.0a", "8.9"]


@pytest.mark.parametrize("bad,hint", [("sm_120a", "write it as 12.0a"), ("120", "12.0a, 9.0a"),
                                      ("12.0x", "TORCH_CUDA_ARCH_LIST form")])
def test_parse_errors_name_the_fix(bad, hint):
    with pytest.raises(A.ArchError, match=hint):
        A.parse_arch(bad)


def test_gencode():
    assert A.parse_arch("12.0a").gencode() == ["-gencode=arch=compute_120a,code=sm_120a"]
    assert A.parse_arch("8.0+PTX").gencode() == ["-gencode=arch=compute_80,code=sm_80",
                                                 "-gencode=arch=compute_80,code=compute_80"]
    assert A.cmake_cuda_architectures(A.parse_arch_list("12.0a;8.0+PTX")) == "120a-real;80"


@pytest.mark.parametrize("arch,cc,runs", [
    ("12.0a", (12, 0), True), ("12.0a", (12, 1), False),     # arch-specific: exactly 12.0
    ("12.0f", (12, 1), True), ("12.0f", (10, 0), False),     # family: 12.x
    ("9.0a", (9, 0), True), ("9.0a", (12, 0), False),        # wgmma code never on SM_120
    ("8.0", (8, 9), True), ("8.0", (9, 0), False),           # binary compatible within a major
])
def test_runs_on(arch, cc, runs):
    assert A.parse_arch(arch).runs_on(*cc) is runs


def test_runnable_prefers_sass_and_explains():
    built = A.parse_arch_list("9.0a;12.0a")
    assert A.runnable(built, 9, 0) == (A.parse_arch("9.0a"), "sass")
    assert A.runnable(built, 12, 0)[0] == A.parse_arch("12.0a")
    target, why = A.runnable(built, 12, 1)
    assert target is None and "12.1" in why and "9.0a, 12.0a" in why
    assert A.runnable(A.parse_arch_list("8.0+PTX"), 12, 0)[1] == "ptx-jit"


def test_validate_against_project_and_nvcc(config):
    A.validate(A.parse_arch_list("12.0a;9.0a;12.0f"), config.accepted_archs, NVCC_13, (13, 0))
    with pytest.raises(A.ArchError, match="use 12.0a or 12.0f"):
        A.validate([A.parse_arch("12.0")], config.accepted_archs, NVCC_13, (13, 0))
    with pytest.raises(A.ArchError, match="cannot compile for sm_120a"):
        A.validate([A.parse_arch("12.0a")], config.accepted_archs, {80, 90}, (12, 4))
    with pytest.raises(A.ArchError, match="nvcc >= 12.9"):
        A.validate([A.parse_arch("12.0f")], config.accepted_archs, NVCC_13, (12, 8))


def test_nvcc_list_parsing():
    assert A.nvcc_supported("compute_90\ncompute_120\ncompute_121\n") == {90, 120, 121}


def test_default_plan_is_all_sets_for_12_0a(config):
    plan = make_plan(config, {}, nvcc_archs=NVCC_13, nvcc_version=(13, 0))
    assert [f.name for f in plan.families] == ["scaled_mm", "nvfp4", "marlin_fp4", "flash_attn"]
    assert all([str(a) for a in f.archs] == ["12.0a"] for f in plan.families)
    assert plan.family("flash_attn").options["head_dims"] == [64, 128]
    assert plan.sources == ["vllm", "cutlass", "flash-attn"]
    assert plan.archs_origin == "products/kernel-pack.toml default-archs"
    assert plan.kernels_origin == "every [family.*] of products/kernel-pack.toml"


def test_env_precedence(config):
    p = make_plan(config, {"TORCH_CUDA_ARCH_LIST": "9.0a", "BLACKWHEEL_ARCHS": "12.0a;9.0a"})
    assert p.archs_origin == "BLACKWHEEL_ARCHS"
    p = make_plan(config, {"TORCH_CUDA_ARCH_LIST": "9.0a 12.0a"})
    assert p.archs_origin == "TORCH_CUDA_ARCH_LIST"
    p = make_plan(config, {"BLACKWHEEL_ARCHS": "9.0a"}, cmake_archs="12.0a")
    assert p.archs_origin == "-C cmake.define.BLACKWHEEL_ARCHS"
    # pyproject forwards the env var as the define: the message names the env var
    p = make_plan(config, {"BLACKWHEEL_ARCHS": "9.0a;12.0a"}, cmake_archs="9.0a,12.0a")
    assert p.archs_origin == "BLACKWHEEL_ARCHS"


def test_default_set_skips_what_cannot_run_with_the_reason(config):
    plan = make_plan(config, {"BLACKWHEEL_ARCHS": "9.0a"})
    assert "nvfp4" not in [f.name for f in plan.families]
    (name, reason), = plan.skipped
    assert name == "nvfp4" and "12.0a" in reason and "9.0a" in reason
    # per-family intersection: SM120-only CUTLASS never gets 9.0a, wgmma code never 12.x
    plan = make_plan(config, {"BLACKWHEEL_ARCHS": "9.0a;12.0a"})
    assert [str(a) for a in plan.family("nvfp4").archs] == ["12.0a"]
    assert [str(a) for a in plan.family("scaled_mm").archs] == ["9.0a", "12.0a"]


def test_named_set_without_matching_arch_is_an_error(config):
    with pytest.raises(PlanError, match="asked for by name .* cannot be built"):
        make_plan(config, {"BLACKWHEEL_KERNELS": "nvfp4", "BLACKWHEEL_ARCHS": "8.9"})


def test_unknown_kernel_set_and_head_dims(config):
    with pytest.raises(PlanError, match=r"unknown kernel set\(s\) attention; choose from scaled_mm, "
                                        r"nvfp4, marlin_fp4, flash_attn .*products/kernel-pack.toml"):
        make_plan(config, {"BLACKWHEEL_KERNELS": "scaled_mm;attention"})
    with pytest.raises(PlanError, match="choose from"):
        make_plan(config, {"BLACKWHEEL_FA_HEAD_DIMS": "80"})
    p = make_plan(config, {"BLACKWHEEL_KERNELS": "flash_attn", "BLACKWHEEL_FA_HEAD_DIMS": "128,64,256"})
    assert p.family("flash_attn").options["head_dims"] == [64, 128, 256]
    assert plan_as_dict(p)["families"]["flash_attn"]["options"]["head_dims"] == [64, 128, 256]


def test_config_errors_name_file_and_key(tmp_path):
    text = (REPO / "blackwheel.toml").read_text()
    bad = text.replace('sha256 = "f4c33c25', 'sha256 = "zz', 1)
    with pytest.raises(ConfigError, match="vllm.*sha256 must be 64 hex"):
        parse_config(bad, tmp_path / "blackwheel.toml")
    base = parse_config(text, tmp_path / "blackwheel.toml")
    pack = (REPO / "products/kernel-pack.toml").read_text()
    bad = pack.replace('sources = ["flash-attn", "cutlass"]', 'sources = ["flash-attn", "cutlas"]')
    with pytest.raises(ConfigError, match=r"kernel-pack.toml: \[family.flash_attn\]: source 'cutlas' "
                                          r"is not declared"):
        parse_product(bad, tmp_path / "kernel-pack.toml", base)
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[build", tmp_path / "blackwheel.toml")


def test_config_says_why_for_every_pin(config):
    for s in config.sources.values():
        assert len(s.why) > 40, s.name
    assert config.sources["cutlass"].members and config.sources["cutlass"].root
