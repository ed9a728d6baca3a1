"""launch_smem: FlashAttention-2's launch shared memory from kernel names, and which
kernels upstream's dispatch can pick on a target; verify's "fa2-launch" rule on
cuobjdump text of real FA2 2.8.3 TUs compiled for sm_120a
(tests/data/verify_fa2_*.res.txt, see tests/data/verify_fa2_capture.sh)."""
from __future__ import annotations

from pathlib import Path

import pytest

from blackwheel_factory.checks import launch_smem as L
from blackwheel_factory.checks import verify as v

DATA = Path(__file__).resolve().parents[1] / "data"
BF16 = "N7cutlass10bfloat16_tE"

SM120 = L.Target(12, 0, 101376, 102400)
SM90 = L.Target(9, 0, 232448, 233472)
SM80 = L.Target(8, 0, 166912, 167936)


def fwd_name(fn: str, d, m, n, w, qreg=0, share=0, tail="ELb0ELb1EEEv16Flash_fwd_params") -> str:
    return (f"_ZN5flash{len(fn)}{fn}I23Flash_fwd_kernel_traitsILi{d}ELi{m}ELi{n}ELi{w}ELb{qreg}ELb{share}E"
            f"{BF16}19Flash_kernel_traitsILi{d}ELi{m}ELi{n}ELi{w}ES2_EE{tail}")


def bwd_name(fn: str, d, m, n, w, a1, a2, a3, vreg, nodb, head="") -> str:
    return (f"_ZN5flash{len(fn)}{fn}I{head}23Flash_bwd_kernel_traitsILi{d}ELi{m}ELi{n}ELi{w}ELi{a1}ELi{a2}"
            f"ELi{a3}ELb{vreg}ELb{nodb}E{BF16}19Flash_kernel_traitsILi{d}ELi{m}ELi{n}ELi{w}ES2_EE"
            f"ELb0ELb0EEEv16Flash_bwd_params")


BWD = "flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel"


# ------------------------------------------------------------------ formulas
def test_fwd_formula_by_hand():
    # hdim128 128x64: Q 128*128*2 = 32 KiB, K+V 2*64*128*2 = 32 KiB
    assert L.fwd_smem(128, 128, 64, False) == 65536
    # hdim128 128x32 (sm8x, SM_120 after patch 0002): 32 KiB + 16 KiB
    assert L.fwd_smem(128, 128, 32, False) == 49152
    # Share_Q_K_smem: max(Q, KV)
    assert L.fwd_smem(128, 128, 64, True) == 32768
    # hdim256 128x64 8 warps (A100): 128 KiB
    assert L.fwd_smem(256, 128, 64, False) == 131072


def test_bwd_formula_by_hand():
    # hdim128 64x128 8 warps (>= 144 KB devices): QdO 64*128*3*2 = 48 KiB, KV 128*128*2*2 = 64 KiB,
    # dS = P = 64*128*2 = 16 KiB; launched with kSmemSize1colblock = 48+64+16+16 KiB = 144 KiB
    s = L.bwd_smem(128, 64, 128, False, False)
    assert (s.qdo, s.kv, s.ds, s.p, s.dq) == (49152, 65536, 16384, 16384, 16384)
    assert s.smem_1colblock == 147456 and s.smem == 147456
    # hdim128 64x64, V in registers: QdO 48 KiB + max(KV 32 KiB, 16 + 8 + 8 KiB) = 80 KiB;
    # kSmemSize takes max(P, dQ) = 16 KiB instead: 88 KiB
    s = L.bwd_smem(128, 64, 64, True, False)
    assert (s.smem_1colblock, s.smem, s.dq) == (81920, 90112, 16384)
    # hdim256 64x64, no double buffer (A100): QdO 64*256*2*2 = 64 KiB, KV 64 KiB, dS = P = 8 KiB
    assert L.bwd_smem(256, 64, 64, False, True).smem_1colblock == 147456
    # ... double buffered (H100): QdO 96 KiB -> 176 KiB, upstream's `>= 176 * 1024`
    assert L.bwd_smem(256, 64, 64, False, False).smem_1colblock == 180224
    # hdim256 64x32, V in regs, no double buffer (sm86/sm89 and SM_120): 64 + max(32, 16 + 4 + 4) KiB
    assert L.bwd_smem(256, 64, 32, True, True).smem_1colblock == 98304
    # hdim192 64x64 V in regs, no double buffer: the launch (1colblock) fits 99 KB; kSmemSize would not
    s = L.bwd_smem(192, 64, 64, True, True)
    assert s.smem_1colblock == 98304 and s.smem == 106496 > 101376
    # hdim32 128x128: upstream's threshold 2 * ((3*128 + 2*128) * 32 + 2*128*128) = 104 KiB
    assert L.bwd_smem(32, 128, 128, False, False).smem_1colblock == 2 * ((3 * 128 + 2 * 128) * 32 + 2 * 128 * 128)


def test_every_dispatch_threshold_is_the_kernels_own_launch_smem():
    # upstream's max_smem_per_block thresholds are exactly what the picked kernel launches with
    t = L.dispatch_table()
    for key, e in t.items():
        if key == "groups":
            continue
        table, tr = key
        if table == "bwd" and "min_optin" in e:
            assert L.bwd_smem(tr[0], tr[1], tr[2], tr[7], tr[8]).smem_1colblock == e["min_optin"], tr
        if table == "fwd" and "min_optin" in e:
            assert L.fwd_smem(tr[0], tr[1], tr[2], tr[5]) == e["min_optin"], tr


# ------------------------------------------------------------------ names
def test_launch_of_each_fa2_kernel_kind():
    f = L.fa2_launch(fwd_name("flash_fwd_kernel", 128, 128, 64, 4))
    assert (f.table, f.traits, f.dynamic_smem) == ("fwd", (128, 128, 64, 4, False, False), 65536)
    s = L.fa2_launch(fwd_name("flash_fwd_splitkv_kernel", 128, 64, 128, 4))
    assert (s.table, s.dynamic_smem) == ("fwd_split", 16384 + 65536)
    c = L.fa2_launch(fwd_name("flash_fwd_splitkv_combine_kernel", 128, 64, 128, 4, tail="ELi4ELi1ELb1EEEv16Flash_fwd_params"))
    assert (c.table, c.dynamic_smem) == ("fwd_split", 0)       # launched with 0 (static sLSE)
    b = L.fa2_launch(bwd_name(BWD, 128, 64, 128, 8, 2, 4, 2, 0, 0))
    assert (b.table, b.traits, b.dynamic_smem) == ("bwd", (128, 64, 128, 8, 2, 4, 2, False, False), 147456)
    dq = L.fa2_launch(bwd_name("flash_bwd_convert_dq_kernel", 128, 64, 64, 8, 4, 2, 2, 1, 0))
    assert (dq.dynamic_smem, dq.what) == (16384, "kSmemdQSize")
    do = L.fa2_launch(bwd_name("flash_bwd_dot_do_o_kernel", 128, 64, 64, 8, 4, 2, 2, 1, 0, head="Lb1E"))
    assert (do.dynamic_smem, do.traits[-2:]) == (0, (True, False))


def test_unknown_names_are_not_derived():
    assert L.fa2_launch("_ZN6marlin6MarlinIL") is None
    # defined upstream but launched by nothing: not guessed
    assert L.fa2_launch(bwd_name("flash_bwd_convert_dkv_kernel", 128, 64, 64, 8, 4, 2, 2, 1, 0)) is None
    # a 4-byte element type: the 2-byte formulas do not apply
    assert L.fa2_launch(fwd_name("flash_fwd_kernel", 128, 128, 64, 4).replace(BF16, "fE")) is None
    k = L.kernel_launch("fa2-launch", "_Z7bw_axpyfPKfPfi", SM120)
    assert k.underivable and k.dynamic_smem is None
    # the kernel pack's rule only derives forward names and skips the rest
    assert not L.kernel_launch("fa2-kernel-traits", "_Z7bw_axpyfPKfPfi").underivable


# ------------------------------------------------------------ reachability
def reach(name: str, t: L.Target) -> L.Reach:
    return L.fa2_reach(L.fa2_launch(name), t)


def test_bwd_tiles_for_big_devices_never_launch_on_sm120():
    big = bwd_name(BWD, 128, 64, 128, 8, 2, 4, 2, 0, 0)       # max_smem_per_block >= 144 KB
    small = bwd_name(BWD, 128, 64, 64, 8, 4, 2, 2, 1, 0)       # else
    r = reach(big, SM120)
    assert not r.reachable and "needs >= 147456 B opt-in" in r.why
    assert reach(big, SM90).reachable and reach(big, SM80).reachable
    assert reach(small, SM120).reachable
    assert not reach(small, SM90).reachable                    # H100 takes the big tile
    h100 = bwd_name(BWD, 256, 64, 64, 8, 4, 2, 2, 0, 0)        # >= 176 KB: H100 only
    a100 = bwd_name(BWD, 256, 64, 64, 8, 4, 2, 2, 0, 1)        # [144 KB, 176 KB): A100
    assert [reach(h100, t).reachable for t in (SM120, SM80, SM90)] == [False, False, True]
    assert [reach(a100, t).reachable for t in (SM120, SM80, SM90)] == [False, True, False]


def test_fwd_tiles_follow_is_sm8x_with_patch_0002():
    h100 = fwd_name("flash_fwd_kernel", 128, 128, 64, 4)       # !is_sm8x
    sq = fwd_name("flash_fwd_kernel", 128, 64, 64, 4)          # is_sm8x && causal
    assert not reach(h100, SM120).reachable and "sm8x" in reach(h100, SM120).why
    assert reach(h100, SM90).reachable
    assert reach(sq, SM120).reachable and reach(sq, L.Target(8, 9, 101376, 102400)).reachable
    assert not reach(sq, SM80).reachable
    a100 = fwd_name("flash_fwd_kernel", 256, 128, 64, 8)       # A100: opt-in >= 128 KiB, per SM < 192 KiB
    assert [reach(a100, t).reachable for t in (SM120, SM80, SM90)] == [False, True, False]


def test_traits_not_in_the_table_are_checked_everywhere():
    odd = fwd_name("flash_fwd_kernel", 256, 128, 128, 8)
    r = reach(odd, SM120)
    assert r.reachable and not r.listed


# ------------------------------------------------------- verify on real names
def fa2_cubins() -> list[v.Cubin]:
    out = []
    for tu in ("bwd_hdim128", "fwd_split_hdim128", "fwd_hdim32_causal"):
        out += v.cubins_from_outputs((DATA / f"verify_fa2_{tu}.list.txt").read_text(),
                                     (DATA / f"verify_fa2_{tu}.res.txt").read_text())
    return out


def fa2_lib(cubins=None, requested=("sm_120a",)) -> v.Library:
    return v.Library("flash_attn_2", "flash_attn_2_cuda/_C.abi3.so", requested,
                     tuple(fa2_cubins() if cubins is None else cubins))


@pytest.fixture(scope="module")
def policy() -> v.Policy:
    return v.load_policy()


def relabel(cubins, arch: str, reserve_delta: int = 0) -> list[v.Cubin]:
    """The same kernels as if built for another target (names do not depend on it)."""
    return [v.Cubin(c.kind, arch, tuple(v.Kernel(k.name, k.registers, k.stack, max(k.shared + reserve_delta, 0),
                                                 k.local) for k in c.kernels)) for c in cubins]


def test_every_kernel_of_the_real_tus_is_derived():
    kinds = {}
    for c in fa2_cubins():
        for k in c.kernels:
            launch = L.fa2_launch(k.name)
            assert launch is not None, k.name
            assert L.fa2_reach(launch, SM120).listed, k.name
            kinds.setdefault((launch.kernel, launch.traits, launch.dynamic_smem), 0)
            kinds[(launch.kernel, launch.traits, launch.dynamic_smem)] += 1
    bwd_big, bwd_small = (128, 64, 128, 8, 2, 4, 2, False, False), (128, 64, 64, 8, 4, 2, 2, True, False)
    assert kinds[(BWD, bwd_big, 147456)] == 21 and kinds[(BWD, bwd_small, 81920)] == 21
    assert kinds[("flash_bwd_convert_dq_kernel", bwd_small, 16384)] == 1
    assert kinds[("flash_bwd_dot_do_o_kernel", bwd_small, 0)] == 2
    # forward hdim32 (one tile on every GPU): 128x128, Q 8 KiB + K,V 16 KiB
    assert kinds[("flash_fwd_kernel", (32, 128, 128, 4, False, False), 24576)] == 14
    # split-KV hdim128: 64x128, Q 16 KiB + K,V 64 KiB; its combine kernels launch with 0 (static sLSE)
    split = (128, 64, 128, 4, False, False)
    assert kinds[("flash_fwd_splitkv_kernel", split, 81920)] == 52
    assert kinds[("flash_fwd_splitkv_combine_kernel", split, 0)] == 14


def test_verify_fa2_on_sm120(policy):
    rows, viol = v.check([fa2_lib()], policy)
    assert [x for x in viol if x.severity == "error"] == []
    (row,) = rows
    # the 64x128 backward tile (144 KiB) and its dot_do_o/convert_dq: never launched on SM_120
    assert row.unreachable == 24
    assert row.unreachable_why == {"needs >= 147456 B opt-in shared memory per block": 24}
    assert row.kernels == 128 and row.dynamic_smem == 81920
    # static smem is 0 (+1 KiB reserve) but in the combine kernels (sLSE: up to 2,560 B, no dynamic)
    assert row.max_static_smem == 2560 and row.max_smem == 81920
    table = v.format_table(rows)
    assert "unreachable" in table and "24 kernel(s) never launched there (needs >= 147456 B" in table


def test_verify_fa2_on_sm90_picks_the_other_tile(policy):
    rows, viol = v.check([fa2_lib(relabel(fa2_cubins(), "sm_90a"), ("sm_90a",))], policy)
    assert [x for x in viol if x.check != "stack"] == []      # (sm_120a spills vs the 9.0a baseline)
    (row,) = rows
    # H100 (227 KB opt-in) takes the 64x128 backward tile, never the 99 KB parts' 64x64
    assert row.unreachable_why == {"picked only below 147456 B opt-in shared memory per block": 24}
    assert row.max_smem == 147456


def test_reachable_kernels_over_the_limit_fail(policy):
    limits = dict(policy.limits, sm_120=v.Limits(81919, 65536, 255, 1024, 102400))
    _, viol = v.check([fa2_lib()], v.Policy(limits, policy.families, policy.stack, policy.ptx_only))
    smem = [x for x in viol if x.check == "smem"]
    # the 21 reachable backward kernels (64x64) and the 52 split-KV ones (64x128 fwd traits), 80 KiB each
    assert len(smem) == 73
    assert sum("seqk_parallel_kernelI23Flash_bwd_kernel_traitsILi128ELi64ELi64E" in x.message for x in smem) == 21
    assert "static 0 + dynamic max 81920 = 81920 bytes exceeds the 81919-byte limit" in smem[0].message


def test_unknown_kernel_in_an_fa2_launch_family_is_a_violation(policy):
    (c,) = [c for c in fa2_cubins() if c.kind == "sass"][:1]
    odd = v.Kernel("_Z7bw_axpyfPKfPfi", 16, 0, 1024, 0)
    lib = fa2_lib([v.Cubin(c.kind, c.arch, c.kernels + (odd,))])
    _, viol = v.check([lib], policy)
    (e,) = [x for x in viol if x.severity == "error"]
    assert e.check == "smem-underivable" and "_Z7bw_axpyfPKfPfi" in e.message


def test_plain_sm80_sass_is_checked_for_the_99kb_parts_it_runs_on(policy):
    sm80 = relabel(fa2_cubins(), "sm_80", -1024)      # no 1 KiB reserve in SHARED on sm_80
    rows, viol = v.check([fa2_lib(sm80, ("sm_80",))], policy)
    assert [x for x in viol if x.check != "stack"] == []
    # A100 launches the 64x128 tile, 8.6/8.9 GPUs running this sm_80 code the 64x64 one
    assert rows[0].unreachable == 0
    limits = dict(policy.limits, sm_86=v.Limits(81919, 65536, 255, 0, 102400))
    _, viol = v.check([fa2_lib(sm80, ("sm_80",))], v.Policy(limits, policy.families, policy.stack, policy.ptx_only))
    smem = [x for x in viol if x.check == "smem"]
    assert len(smem) == 73 and all("of sm_86 devices, which run this sm_80 code" in x.message for x in smem)


def test_target_without_limits_counts_nothing_unreachable():
    rows, viol = v.check([fa2_lib()], v.Policy({}, {"flash_attn_2": v.FamilyPolicy(dynamic_smem_rule="fa2-launch")},
                                                "error", "error"))
    assert {x.check for x in viol} == {"no-limits"} and rows[0].unreachable == 0


def test_fa2_stack_baseline_on_sm120(policy):
    # forward hdim32's dropout + return-softmax kernels spill 1,208 B at 255 registers on sm_120a:
    # the 12.0a baseline of [families.flash_attn_2]; above it is a regression
    assert policy.families["flash_attn_2"].stack_limit("12.0a") == 1208
    rows, viol = v.check([fa2_lib()], policy)
    assert viol == [] and rows[0].max_stack == 1208
    fam = dict(policy.families, flash_attn_2=v.FamilyPolicy(max_stack_bytes=1200, dynamic_smem_rule="fa2-launch"))
    _, viol = v.check([fa2_lib()], v.Policy(policy.limits, fam, policy.stack, policy.ptx_only))
    assert {x.check for x in viol} == {"stack"} and len(viol) == 1
