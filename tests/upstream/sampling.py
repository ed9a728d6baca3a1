"""pytest plugin: a stated, reproducible sample of upstream's tests/test_flash_attn.py.

Upstream's suite is hundreds of thousands of parametrized cases (one function
alone runs for minutes on an H200). This plugin keeps, for every test function,
every head dim whose kernel tile is in the installed wheel and every dtype, the
first N cases of that (function, d, dtype) group in the order of a fixed hash of
the test id: every function x built head dim x dtype runs, the other parameters
(seqlens, causal, local, dropout, alibi, softcap, deterministic, GQA/MQA, ...)
are sampled, and the same sample is drawn on every run.

  pytest -p sampling tests/test_flash_attn.py            (rootdir: the sdist's tests/)
  BW_UPSTREAM_PER_GROUP=12   cases kept per (function, d, dtype) group
  BW_UPSTREAM_HEAD_DIMS      built kernel tiles, default: the installed wheel's record
Deselected cases are counted in the terminal summary (never reported as skips).
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict

TILES = (32, 64, 96, 128, 192, 256)


def _tile(d: int) -> int:
    return next(t for t in TILES if d <= t)


def _built_tiles() -> set[int]:
    env = os.environ.get("BW_UPSTREAM_HEAD_DIMS")
    if env:
        return {int(x) for x in env.replace(";", ",").split(",") if x}
    import flash_attn_2_cuda
    return set(flash_attn_2_cuda.head_dims_built() or TILES)


def _key(item) -> str:
    return hashlib.sha256(item.nodeid.encode()).hexdigest()


def hashed_sample(groups: dict, per_group: int) -> list:
    """The first `per_group` items of every group in the order of a fixed hash of the
    test id: the same sample on every run (also used by vllm_sampling.py)."""
    keep = []
    for members in groups.values():
        keep += sorted(members, key=_key)[:per_group]
    return keep


def pytest_collection_modifyitems(session, config, items):
    per_group = int(os.environ.get("BW_UPSTREAM_PER_GROUP", "12"))
    tiles = _built_tiles()
    groups: dict[tuple, list] = defaultdict(list)
    not_built = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        d = params.get("d")
        if d is not None and _tile(int(d)) not in tiles:
            not_built.append(item)
            continue
        groups[(item.originalname, d, str(params.get("dtype")))].append(item)
    keep = hashed_sample(groups, per_group)
    keep_ids = {id(i) for i in keep}
    deselected = [i for i in items if id(i) not in keep_ids]
    config.hook.pytest_deselected(items=deselected)
    items[:] = [i for i in items if id(i) in keep_ids]
    config._bw_sample = (len(keep), len(deselected), len(not_built), per_group, sorted(tiles), len(groups))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    s = getattr(config, "_bw_sample", None)
    if s:
        kept, desel, nb, n, tiles, g = s
        terminalreporter.write_line(
            f"blackwheel sampling: kept {kept} cases ({g} groups of function x d x dtype, <= {n} each); "
            f"deselected {desel} (of which {nb} need head-dim tiles not built; built: {tiles})")
