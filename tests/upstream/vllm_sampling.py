"""pytest plugin: a stated, reproducible sample of vLLM's own kernel tests (pinned sdist).

vLLM's kernel test files parametrize thousands of cases each (tests/kernels/attention/
test_cache.py alone: 2,491 ids, test_layernorm.py 1,945) and vLLM's CI shards them over
many GPUs. For one GPU-host run this keeps, for every test function and every dtype it
is parametrized with, the first N cases in the order of a fixed hash of the test id
(sampling.hashed_sample, as for flash_attn's suite): every function x dtype runs, the
other parameters (shapes, token counts, seeds, block sizes, ...) are sampled, and the
same sample is drawn on every run.

  pytest -p vllm_sampling tests/kernels/...        (rootdir: the sdist's test tree)
  BW_VLLM_PER_GROUP=8    cases kept per (file, function, dtype) group (0: keep all)
  BW_VLLM_SAMPLE_REPORT  a file to write the per-file counts to (under pytest-xdist the
                         workers sample, each the same way, and the terminal summary of
                         the controlling process has no counts)
Deselected cases are counted in the terminal summary (never reported as skips).
"""
from __future__ import annotations

import os
from collections import defaultdict

from sampling import hashed_sample

DTYPE_KEYS = ("dtype", "in_dtype", "out_dtype", "act_dtype", "kv_cache_dtype", "cache_dtype",
              "quant_type", "scalar_type", "a_type", "b_type", "c_type")   # Marlin: every type combination


def _group(item) -> tuple:
    params = getattr(getattr(item, "callspec", None), "params", {})
    dt = tuple(str(params[k]) for k in DTYPE_KEYS if k in params)
    return (item.path.name, item.originalname, dt)


def pytest_collection_modifyitems(session, config, items):
    per_group = int(os.environ.get("BW_VLLM_PER_GROUP", "8"))
    if per_group <= 0:
        return
    groups: dict[tuple, list] = defaultdict(list)
    for item in items:
        groups[_group(item)].append(item)
    keep_ids = {id(i) for i in hashed_sample(groups, per_group)}
    deselected = [i for i in items if id(i) not in keep_ids]
    config.hook.pytest_deselected(items=deselected)
    per_file: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in items:
        per_file[i.path.name][0 if id(i) in keep_ids else 1] += 1
    items[:] = [i for i in items if id(i) in keep_ids]
    config._bw_vllm_sample = _report(per_group, len(groups), per_file)
    if os.environ.get("BW_VLLM_SAMPLE_REPORT"):
        with open(os.environ["BW_VLLM_SAMPLE_REPORT"], "w") as f:
            f.write("\n".join(config._bw_vllm_sample) + "\n")


def _report(per_group: int, groups: int, per_file: dict) -> list[str]:
    lines = [f"blackwheel sampling: <= {per_group} cases per (file, function, dtype) group, {groups} groups"]
    for f, (kept, desel) in sorted(per_file.items()):
        lines.append(f"  {f:<36} kept {kept:5d} of {kept + desel:5d}")
    total = sum(k for k, _ in per_file.values()), sum(k + d for k, d in per_file.values())
    return lines + [f"  {'total':<36} kept {total[0]:5d} of {total[1]:5d}"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for line in getattr(config, "_bw_vllm_sample", None) or []:
        terminalreporter.write_line(line)
