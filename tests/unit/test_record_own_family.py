"""The build record of an upstream-cmake product with one of blackwheel's own families
(products/vllm.toml: vLLM's targets + flash_attn_2 -> vllm_flash_attn/_vllm_fa2_C): the
upstream targets' libraries belong to the upstream family only; flash_attn_2 records its
own library and options (plan --stage record, as CMake calls it)."""
import argparse
import json
from pathlib import Path

from blackwheel_factory.inputs.products import load_product
from blackwheel_factory.plan import cmake_bridge as B
from blackwheel_factory.plan.plan import make_plan, plan_as_dict

ROOT = Path(__file__).resolve().parents[2]


def test_upstream_libraries_stay_with_the_upstream_family(tmp_path):
    _, config = load_product("vllm", ROOT)
    plan = plan_as_dict(make_plan(config, {"BLACKWHEEL_FA_HEAD_DIMS": "128",
                                           "BLACKWHEEL_FA_DTYPES": "bf16"}))
    plan.update(sources={}, source_date_epoch=config.source_date_epoch)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    p = argparse.ArgumentParser()
    B.add_arguments(p)
    args = p.parse_args(["--stage", "record", "--product", "vllm", "--build-dir", str(tmp_path),
                         "--out", str(tmp_path / "rec.json"),
                         "--libraries=_moe_C_stable_libtorch.abi3.so,cumem_allocator.abi3.so"])
    assert B.stage_record(args) == 0
    rec = json.loads((tmp_path / "rec.json").read_text())
    vllm, fa2 = rec["kernels"]["vllm"], rec["kernels"]["flash_attn_2"]
    assert vllm["libraries"] == ["_moe_C_stable_libtorch.abi3.so", "cumem_allocator.abi3.so"]
    assert fa2["library"] == "_vllm_fa2_C.abi3.so" and "libraries" not in fa2
    assert fa2["head_dims"] == [128] and fa2["dtypes"] == ["bf16"] and fa2["frontend"] == ["vllm_fa2"]
    assert fa2["ops"] == ["varlen_fwd"] and rec["abi"] == "stable"
