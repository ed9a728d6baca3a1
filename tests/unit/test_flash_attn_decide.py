"""flash_attn_2_cuda's port of upstream flash_api.cpp decisions (pure, no GPU)."""
import math

import pytest

from flash_attn_2_cuda import _decide as D


def _reference_heuristic(bnm, sms, nblocks, max_splits):
    # a straightforward double-precision reading of upstream's num_splits_heuristic
    if bnm >= 0.8 * sms:
        return 1
    max_splits = min(max_splits, sms, nblocks)
    cd = lambda a, b: (a + b - 1) // b
    elig = lambda s: s == 1 or cd(nblocks, s) != cd(nblocks, s - 1)
    eff = [0.0 if not elig(s) else (bnm * s / sms) / math.ceil(bnm * s / sms)
           for s in range(1, max_splits + 1)]
    best = max(eff)
    return next(s for s in range(1, max_splits + 1) if elig(s) and eff[s - 1] >= 0.85 * best)


def test_split_heuristic_examples():
    # upstream's comment: 48 blocks on 108 SMs -> 2 splits (0.89) beats 3 (0.67)
    assert D.num_splits_heuristic(48, 108, 64, 128) == 2
    # a grid that nearly fills the GPU is never split
    assert D.num_splits_heuristic(100, 108, 64, 128) == 1
    # one sequence of 32k keys at batch 1, 8 kv heads, H200 (132 SMs x 2)
    n = D.num_splits(1, 8, 128, 32768, 1, 0.0, 0, 132)
    assert 1 < n <= 128


@pytest.mark.parametrize("bnm", [1, 3, 8, 16, 32, 48, 96, 200])
@pytest.mark.parametrize("nblocks", [1, 2, 7, 16, 64, 256])
def test_split_heuristic_matches_a_plain_reading(bnm, nblocks):
    for sms in (108, 132, 170, 264):
        assert D.num_splits_heuristic(bnm, sms, nblocks, 128) == _reference_heuristic(bnm, sms, nblocks, 128)


def test_split_block_sizes_and_dropout():
    assert [D.splitkv_block_n(d) for d in (32, 64, 96, 128, 192, 256)] == [256, 256, 128, 128, 64, 64]
    # split-KV has no dropout: the request is returned unchanged
    assert D.num_splits(2, 8, 128, 4096, 1, 0.1, 0, 132) == 0
    with pytest.raises(RuntimeError, match="num_splits > 128"):
        D.num_splits(1, 1, 64, 1 << 20, 1, 0.0, 200, 132)


def test_ngroups_swap_only_for_plain_gqa_decode():
    assert D.ngroups_swapped(1, 32, 8, -1, -1, 0.0, 128, False)
    assert not D.ngroups_swapped(2, 32, 8, -1, -1, 0.0, 128, False)      # prefill
    assert not D.ngroups_swapped(1, 32, 32, -1, -1, 0.0, 128, False)     # MHA
    assert not D.ngroups_swapped(1, 32, 8, 128, -1, 0.0, 128, False)     # sliding window
    assert not D.ngroups_swapped(1, 32, 8, -1, -1, 0.1, 128, False)      # dropout
    assert not D.ngroups_swapped(1, 32, 8, -1, -1, 0.0, 128, True)       # ALiBi


def test_rounding_windows_philox():
    assert [D.head_size_rounded(d) for d in (32, 40, 96, 128, 160, 256)] == [32, 64, 96, 128, 192, 256]
    assert D.clamp_windows(4096, 0, 4096) == (-1, 0)
    assert D.clamp_windows(100, -1, 4096) == (100, -1)
    assert D.philox_increment(3, 5) == 3 * 5 * 32
    assert D.philox_increment(1, 1) % 4 == 0
    assert D.deterministic_dq_splits(132, 2, 16) == 5


def test_backward_hdim256_dropout_on_99kb_parts_is_refused():
    assert D.bwd_supported(256, 0.1, 101376) is not None       # sm_86/89/120
    assert D.bwd_supported(256, 0.0, 101376) is None
    assert D.bwd_supported(256, 0.1, 232448 - 1024) is None    # H100/H200
    assert D.bwd_supported(128, 0.1, 101376) is None


def test_split_heuristic_is_memoized_and_equal_to_the_computation():
    D.num_splits_heuristic.cache_clear()
    first = D.num_splits(16, 8, 128, 4096, 1, 0.0, 0, 132)
    hits = D.num_splits_heuristic.cache_info().hits
    assert D.num_splits(16, 8, 128, 4096, 1, 0.0, 0, 132) == first
    assert D.num_splits_heuristic.cache_info().hits == hits + 1
    for args in ((48, 108, 64, 128), (16 * 8, 264, 32, 128), (1, 264, 128, 128)):
        assert D.num_splits_heuristic(*args) == D.num_splits_heuristic.__wrapped__(*args)
