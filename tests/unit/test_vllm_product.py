"""products/vllm.toml: the upstream-cmake product kind, its subsets, the rendered
project (vLLM's own CMake with our hooks), Requires-Dist from upstream's requirement
files, and the arch mapping (requested archs -> what the family may run on)."""
import tomllib
from pathlib import Path

import pytest

from blackwheel_factory.compile.product_wheel import render_upstream, subset_name
from blackwheel_factory.compile.upstream_requirements import RequirementsError, read_requirements
from blackwheel_factory.inputs.config import ConfigError, find_root, load_config, load_lock
from blackwheel_factory.inputs.products import load_product, parse_product
from blackwheel_factory.plan.plan import PlanError, make_plan

ROOT = find_root(Path(__file__))
BASE = load_config(ROOT / "blackwheel.toml")
TEXT = (ROOT / "products/vllm.toml").read_text()


def test_vllm_product_parses_as_upstream_cmake():
    product, config = load_product("vllm", ROOT)
    assert product.build == "upstream-cmake" and product.dist == "vllm"
    assert product.record_package == "vllm" and product.own_packages == ()
    up = product.upstream_cmake
    assert up.project == "vllm_extensions" and up.python_variable == "VLLM_PYTHON_EXECUTABLE"
    assert {"_C_stable_libtorch", "_moe_C_stable_libtorch", "cumem_allocator"} <= set(up.targets)
    assert up.defines["VLLM_EXTERNAL_PROJECTS"] == "OFF"      # patch 0003
    assert up.defines["VLLM_NATIVE_SASS_FOR_PTX"] == "ON"     # patch 0004
    reduced = up.subset("reduced")
    assert "_C_stable_libtorch" not in reduced.targets and reduced.exclude == ("csrc/moe/marlin_moe_wna16/",)
    assert up.subset(None).targets == up.targets and up.subset("").name == "complete"
    with pytest.raises(ConfigError, match="unknown subset 'tiny'.*reduced"):
        up.subset("tiny")
    assert list(config.kernels) == ["vllm", "flash_attn_2"] and config.kernels["vllm"].abi == "stable"
    fa2 = config.kernels["flash_attn_2"].extra     # blackwheel's own family (issue 19)
    assert fa2["library"] == "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so"
    assert fa2["frontend"] == "vllm_fa2" and fa2["directions"] == ["fwd"]


def test_fa2_family_plan_reduced_for_ci():
    _, config = load_product("vllm", ROOT)
    plan = make_plan(config, {"BLACKWHEEL_FA_HEAD_DIMS": "128", "BLACKWHEEL_FA_DTYPES": "bf16"})
    fa2 = plan.family("flash_attn_2")
    assert [str(a) for a in fa2.archs] == ["12.0a"]
    assert fa2.options == {"head_dims": [128], "directions": ["fwd"], "dtypes": ["bf16"],
                           "frontend": ["vllm_fa2"]}
    assert plan.family("vllm") is not None


@pytest.mark.parametrize("edit, match", [
    (('build = "upstream-cmake"', 'build = "make"'), "build must be one of"),
    (('project = "vllm_extensions"', 'projekt = "x"'), r"\[upstream-cmake\]: unknown key"),
    (('targets = ["_moe_C_stable_libtorch", "cumem_allocator", "spinloop", "fs_io_C"]',
      'targets = ["_moe_C_stable_libtorch", "not_a_target"]'), "not in \\[upstream-cmake\\] targets"),
    (('exclude = ["csrc/moe/marlin_moe_wna16/"]', 'exclude = ["x"]\nextra = 1'), "unknown key"),
    (('link = { _C_stable_libtorch = ["CUDA::cublas"] }', 'link = { _no_such = ["x"] }'), "not in targets"),
])
def test_strict_schema(edit, match):
    old, new = edit
    assert old in TEXT
    with pytest.raises(ConfigError, match=match):
        parse_product(TEXT.replace(old, new, 1), Path("vllm.toml"), BASE)


def test_upstream_table_needs_the_build_kind_and_vice_versa():
    with pytest.raises(ConfigError, match="needs \\[product\\] build"):
        parse_product(TEXT.replace('build = "upstream-cmake"\n', ""), Path("vllm.toml"), BASE)
    cut = TEXT[:TEXT.index("[upstream-cmake]")] + TEXT[TEXT.index("[family.vllm]"):]
    with pytest.raises(ConfigError, match="\\[upstream-cmake\\]: missing"):
        parse_product(cut, Path("vllm.toml"), BASE)


@pytest.mark.parametrize("env, expected", [
    ({}, ["12.0a"]),
    ({"TORCH_CUDA_ARCH_LIST": "9.0a"}, ["9.0a"]),
    ({"BLACKWHEEL_ARCHS": "12.0f"}, ["12.0f"]),
    ({"BLACKWHEEL_ARCHS": "9.0a;12.0a"}, ["9.0a", "12.0a"]),
])
def test_arch_mapping(env, expected):
    _, config = load_product("vllm", ROOT)
    plan = make_plan(config, env)
    assert [str(a) for a in plan.family("vllm").archs] == expected


def test_arch_outside_the_family_is_refused():
    _, config = load_product("vllm", ROOT)
    with pytest.raises(PlanError):
        make_plan(config, {"BLACKWHEEL_ARCHS": "8.0"})


def _render(env, tmp_path, upstream_pyproject=None, reqs=("regex",)):
    product, config = load_product("vllm", ROOT)
    lock = load_lock(ROOT / "torch-lock.toml")
    dirs = {"vllm": tmp_path / "vllm-tree", "cutlass": tmp_path / "cutlass-tree",
            "cutlass-library": tmp_path / "cutlass-library-tree"}
    files = render_upstream(product, config, lock, env, ROOT, ["scikit-build-core==1.1.2"],
                            tmp_path / "work", dirs, upstream_pyproject or {}, list(reqs))
    return tomllib.loads(files["pyproject.toml"])


def test_rendered_project_drives_upstream_cmake(tmp_path):
    up = {"project": {"scripts": {"vllm": "vllm.entrypoints.cli.main:main"},
                      "entry-points": {"vllm.general_plugins": {"x": "a.b:c"}}}}
    data = _render({"BLACKWHEEL_ARCHS": "12.0a"}, tmp_path, up)
    assert data["project"]["name"] == "vllm" and data["project"]["version"] == "0.33.0+cu130.sm120a"
    deps = data["project"]["dependencies"]
    assert deps[0] == "torch>=2.11" and "regex" in deps
    assert data["project"]["scripts"] == {"vllm": "vllm.entrypoints.cli.main:main"}
    assert data["project"]["entry-points"]["vllm.general_plugins"] == {"x": "a.b:c"}
    sk = data["tool"]["scikit-build"]
    assert sk["cmake"]["source-dir"] == str(tmp_path / "work")
    assert sk["wheel"]["py-api"] == "cp311"           # spinloop/fs_io_C: the 3.11 limited API
    assert sk["build"]["targets"] == [*load_product("vllm", ROOT)[0].upstream_cmake.targets,
                                      "bw_flash_attn_2"]
    assert sk["install"]["components"][-1] == "blackwheel"
    d = sk["cmake"]["define"]
    assert d["CMAKE_PROJECT_vllm_extensions_INCLUDE"].endswith("cmake/UpstreamProduct.cmake")
    assert d["CMAKE_PROJECT_TOP_LEVEL_INCLUDES"].endswith("cmake/upstream/TopLevel.cmake")
    assert d["VLLM_CUTLASS_SRC_DIR"] == str(tmp_path / "cutlass-tree")     # {src:cutlass}
    assert d["CUTLASS_INCLUDE_DIR"] == str(tmp_path / "cutlass-tree") + "/include"
    assert d["VLLM_PYTHON_PATH"] == str(tmp_path / "cutlass-library-tree")   # Machete generator
    assert d["BW_UPSTREAM_EXCLUDE"] == ""
    assert d["BW_UPSTREAM_LINK"] == "_C_stable_libtorch=CUDA::cublas"   # q_gemm.cu's cublasHgemm


def test_rendered_reduced_subset(tmp_path):
    env = {"BLACKWHEEL_VLLM_SUBSET": "reduced"}
    product, _ = load_product("vllm", ROOT)
    assert subset_name(product, env) == "reduced"
    sk = _render(env, tmp_path)["tool"]["scikit-build"]
    assert sk["build"]["targets"] == ["_moe_C_stable_libtorch", "cumem_allocator", "spinloop", "fs_io_C",
                                      "bw_flash_attn_2"]
    assert sk["cmake"]["define"]["BW_UPSTREAM_EXCLUDE"] == "csrc/moe/marlin_moe_wna16/"
    assert sk["cmake"]["define"]["BW_UPSTREAM_LINK"] == ""     # _C_stable_libtorch is not built
    with pytest.raises(ConfigError, match="unknown subset"):
        _render({"BLACKWHEEL_VLLM_SUBSET": "nope"}, tmp_path)


def test_requirements_follow_includes_and_drop_exact_torch_pins():
    files = {
        "requirements/cuda.txt": "-r common.txt\n\nnumba == 0.65.0 # why\ntorch==2.14.0\n"
                                 "torchvision==0.29.0\nflashinfer-python==0.7.2.post1\n",
        "requirements/common.txt": "# header\nregex # fast\nTorch_Audio==2.11\n"
                                   "llguidance >= 1.7.0, < 1.8.0; platform_machine == \"x86_64\"\n"
                                   "--extra-index-url https://example.invalid\nregex\n",
    }
    reqs = read_requirements("requirements/cuda.txt", files.__getitem__,
                             drop=["torch", "torchvision", "torch-audio"])
    assert reqs == ["regex", 'llguidance<1.8.0,>=1.7.0; platform_machine == "x86_64"',
                    "numba==0.65.0", "flashinfer-python==0.7.2.post1"]
    with pytest.raises(RequirementsError, match="common.txt:1"):
        read_requirements("common.txt", {"common.txt": "not a [requirement"}.__getitem__)


def test_pinned_vllm_requirements_do_not_pin_torch():
    """On the real sdist (when it is prepared here): no torch pin survives."""
    from blackwheel_factory.sources import fetch as S
    tree = next(S.source_root().glob("vllm-0.33.0-*/requirements/cuda.txt"), None)
    if tree is None:
        pytest.skip("the vllm sdist is not prepared on this machine")
    root = tree.parent.parent
    reqs = read_requirements("requirements/cuda.txt", lambda rel: (root / rel).read_text(),
                             drop=["torch", "torchvision", "torchaudio"])
    names = {r.split("=")[0].split(">")[0].split("<")[0].split(";")[0].strip().lower() for r in reqs}
    assert "torch" not in names and "transformers" in names and len(reqs) > 40
