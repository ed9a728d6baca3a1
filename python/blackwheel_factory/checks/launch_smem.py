"""Dynamic shared memory a kernel's launcher requests, derived from the kernel's
own (mangled) name where upstream makes it a pure function of template
parameters, and whether the launcher can pick that kernel on a target at all.
Pure, but for reading the packaged dispatch table (policies/fa2_dispatch.toml).

Dynamic shared memory is not recorded in a cubin, so `verify` needs this per
kernel family (dynamic_smem_rule in policies/verify.toml):
  - "fa2-kernel-traits": FlashAttention-2 forward kernels (the kernel pack's
    `flash_attn`): Kernel_traits::kSmemSize of the Flash_fwd_kernel_traits in
    the name. Other names: not derived, not checked.
  - "fa2-launch": every kernel of FlashAttention-2 2.8.3 as the `flash_attn`
    wheel (`flash_attn_2`) builds it: forward, split-KV forward and its combine
    kernel, backward and its dot(dO, O) / convert-dQ kernels (see FA2_KERNELS
    for the shared memory each is launched with). A name this rule cannot read
    is a violation. Reachability: the launchers pick tiles from the device's
    compute capability and shared-memory attributes (fa2_dispatch.toml); a
    kernel whose pick needs more than a target has is never launched there.
  - "launcher-checked": the launcher sizes shared memory at run time against the
    device's opt-in maximum (vLLM Marlin queries cudaDevAttrMaxSharedMemoryPerBlockOptin;
    CUTLASS 3.x SM90/SM120 collectives pick their stage count from the arch's
    shared-memory capacity at compile time). Nothing to derive from the name.

Shared-memory formulas (kernel_traits.h, FlashAttention 2.8.3; Element is fp16 or
bf16, 2 bytes; tile_to_shape asserts that the tiles divide the shapes, so every
smem layout has exactly rows * cols elements):
  forward  Flash_fwd_kernel_traits<D, M, N, W, Q_in_regs, Share_Q_K>
      kSmemQSize  = M*D*2, kSmemKVSize = N*D*2*2 (K and V)
      kSmemSize   = Share_Q_K ? max(Q, KV) : Q + KV
  backward Flash_bwd_kernel_traits<D, M, N, W, AtomMSdP, AtomNdKV, AtomMdQ, V_in_regs, No_double_buffer>
      kSmemQdOSize = M*D*(No_double_buffer ? 2 : 3)*2, kSmemKVSize = N*D*2*2
      kSmemdSSize = kSmemPSize = M*N*2, kSmemdQSize = M*D*2
      kSmemSize          = QdO + (!V_in_regs ? KV + dS + max(P, dQ)
                                             : max(KV, KV/2 + dS + max(P, dQ)))
      kSmemSize1colblock = QdO + (!V_in_regs ? KV + dS + P : max(KV, KV/2 + dS + P))
"""
from __future__ import annotations

import fnmatch
import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RULES = ("fa2-kernel-traits", "fa2-launch", "launcher-checked")
DISPATCH_RULES = ("fa2-launch",)      # rules that also say on which devices a kernel can launch
DISPATCH_PATH = Path(__file__).parent.parent / "policies" / "fa2_dispatch.toml"

_ELEM = r"N7cutlass(?:6half_t|10bfloat16_t)E"    # 2-byte elements only
_FA2_TRAITS = re.compile(
    r"Flash_fwd_kernel_traitsILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELb([01])ELb([01])E")
_FWD_TRAITS = re.compile(
    r"23Flash_fwd_kernel_traitsILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELb([01])ELb([01])E" + _ELEM)
_BWD_TRAITS = re.compile(
    r"23Flash_bwd_kernel_traitsILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)"
    r"ELb([01])ELb([01])E" + _ELEM)

# kernel function (flash_fwd_launch_template.h, flash_bwd_launch_template.h) ->
# (its traits: "fwd" or "bwd"; the dispatch table its pick follows; what the
# launcher passes as dynamic shared memory)
FA2_KERNELS = {
    # run_flash_fwd: smem_size = Kernel_traits::kSmemSize
    "flash_fwd_kernel": ("fwd", "fwd", "kSmemSize"),
    # run_flash_splitkv_fwd: smem_size = Kernel_traits::kSmemSize
    "flash_fwd_splitkv_kernel": ("fwd", "fwd_split", "kSmemSize"),
    # run_flash_splitkv_fwd: <<<grid_combine, kNThreads, 0>>> (its sLSE is static __shared__)
    "flash_fwd_splitkv_combine_kernel": ("fwd", "fwd_split", "0"),
    # run_flash_bwd_seqk_parallel: smem_size_dq_dk_dv = Kernel_traits::kSmemSize1colblock
    "flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel": ("bwd", "bwd", "kSmemSize1colblock"),
    # run_flash_bwd_seqk_parallel: <<<grid_m, kNThreads, 0>>>
    "flash_bwd_dot_do_o_kernel": ("bwd", "bwd", "0"),
    # run_flash_bwd_seqk_parallel: <<<grid_m, kNThreads, Kernel_traits::kSmemdQSize>>>
    "flash_bwd_convert_dq_kernel": ("bwd", "bwd", "kSmemdQSize"),
}
# Not listed: flash_bwd_dq_dk_dv_loop_kernel, flash_bwd_convert_dkv_kernel and
# flash_bwd_clear_dkvaccum_kernel are defined but launched by nothing in 2.8.3;
# if one shows up in a wheel, "fa2-launch" reports that it cannot derive it.


# ------------------------------------------------------------------ formulas
def fwd_smem(head_dim: int, block_m: int, block_n: int, share_qk: bool) -> int:
    """Flash_fwd_kernel_traits::kSmemSize."""
    q = block_m * head_dim * 2
    kv = block_n * head_dim * 2 * 2
    return max(q, kv) if share_qk else q + kv


@dataclass(frozen=True)
class BwdSmem:
    qdo: int
    kv: int
    ds: int
    p: int
    dq: int
    smem: int           # kSmemSize
    smem_1colblock: int  # kSmemSize1colblock


def bwd_smem(head_dim: int, block_m: int, block_n: int, v_in_regs: bool,
             no_double_buffer: bool) -> BwdSmem:
    """The shared-memory constants of Flash_bwd_kernel_traits."""
    qdo = block_m * head_dim * (2 if no_double_buffer else 3) * 2
    kv = block_n * head_dim * 2 * 2
    ds = p = block_m * block_n * 2
    dq = block_m * head_dim * 2
    if not v_in_regs:
        smem = qdo + kv + ds + max(p, dq)
        one = qdo + kv + ds + p
    else:
        smem = qdo + max(kv, kv // 2 + ds + max(p, dq))
        one = qdo + max(kv, kv // 2 + ds + p)
    return BwdSmem(qdo, kv, ds, p, dq, smem, one)


def fa2_dynamic_smem(kernel_name: str) -> int | None:
    """kSmemSize of a FlashAttention-2 forward kernel, from its mangled name."""
    m = _FA2_TRAITS.search(kernel_name)
    if not m:
        return None
    head_dim, block_m, block_n, _warps, _q_in_regs, share_qk = (int(g) for g in m.groups())
    return fwd_smem(head_dim, block_m, block_n, bool(share_qk))


# ------------------------------------------------------------ names -> launches
@dataclass(frozen=True)
class Launch:
    kernel: str         # "flash_bwd_convert_dq_kernel"
    table: str          # the dispatch table its pick follows: "fwd", "fwd_split", "bwd"
    traits: tuple       # the traits' template arguments (ints and bools) as in fa2_dispatch.toml
    dynamic_smem: int   # what the launcher passes as dynamic shared memory
    what: str           # "kSmemSize1colblock" etc.


def _function(kernel_name: str) -> str | None:
    for fn in FA2_KERNELS:
        if f"{len(fn)}{fn}I" in kernel_name:
            return fn
    return None


def fa2_launch(kernel_name: str) -> Launch | None:
    """The launch of one FlashAttention-2 kernel, from its mangled name (None: not one we know)."""
    fn = _function(kernel_name)
    if fn is None:
        return None
    kind, table, what = FA2_KERNELS[fn]
    m = (_FWD_TRAITS if kind == "fwd" else _BWD_TRAITS).search(kernel_name)
    if not m:
        return None
    g = m.groups()
    if kind == "fwd":
        d, bm, bn, w, qreg, share = (int(x) for x in g)
        traits = (d, bm, bn, w, bool(qreg), bool(share))
        sizes = {"kSmemSize": fwd_smem(d, bm, bn, bool(share))}
    else:
        d, bm, bn, w, a1, a2, a3, vreg, nodb = (int(x) for x in g)
        traits = (d, bm, bn, w, a1, a2, a3, bool(vreg), bool(nodb))
        s = bwd_smem(d, bm, bn, bool(vreg), bool(nodb))
        sizes = {"kSmemSize": s.smem, "kSmemSize1colblock": s.smem_1colblock, "kSmemdQSize": s.dq}
    sizes["0"] = 0
    return Launch(fn, table, traits, sizes[what], what)


# ---------------------------------------------------------------- reachability
@dataclass(frozen=True)
class Target:
    """What the dispatch conditions read from the device, for one SASS target."""
    major: int
    minor: int
    optin: int              # cudaDevAttrMaxSharedMemoryPerBlockOptin
    per_sm: int = 0         # cudaDevAttrMaxSharedMemoryPerMultiprocessor; 0 = unknown


@dataclass(frozen=True)
class Reach:
    reachable: bool
    why: str = ""           # why not, e.g. "needs >= 147456 B opt-in shared memory per block"
    listed: bool = True     # False: traits not in the dispatch table (assumed reachable)


def parse_dispatch(data: dict) -> dict:
    """fa2_dispatch.toml -> {"groups": {...}, (table, traits): entry}."""
    out: dict = {"groups": {k: tuple(v) for k, v in (data.get("groups") or {}).items()}}
    for table in ("fwd", "fwd_split", "bwd"):
        for e in data.get(table) or []:
            key = (table, tuple(e["traits"]))
            if key in out:
                raise ValueError(f"fa2 dispatch: {table} traits {e['traits']} listed twice")
            for g in (e.get("cc_in"), e.get("cc_not_in")):
                if g is not None and g not in out["groups"]:
                    raise ValueError(f"fa2 dispatch: unknown group {g!r}")
            out[key] = e
    return out


@functools.lru_cache(maxsize=None)
def dispatch_table(path: Path = DISPATCH_PATH) -> dict:
    return parse_dispatch(tomllib.loads(Path(path).read_text()))


def _in_group(patterns: tuple, t: Target) -> bool:
    return any(fnmatch.fnmatchcase(f"{t.major}.{t.minor}", p) for p in patterns)


def fa2_reach(launch: Launch, target: Target, table: dict | None = None) -> Reach:
    """Whether upstream's dispatch can pick this launch's traits on the target."""
    table = dispatch_table() if table is None else table
    e = table.get((launch.table, launch.traits))
    if e is None:
        return Reach(True, listed=False)
    groups = table["groups"]
    why = []
    if target.optin < e.get("min_optin", 0):
        why.append(f"needs >= {e['min_optin']} B opt-in shared memory per block")
    if "optin_below" in e and target.optin >= e["optin_below"]:
        why.append(f"picked only below {e['optin_below']} B opt-in shared memory per block")
    if "sm_smem_below" in e and target.per_sm and target.per_sm >= e["sm_smem_below"]:
        why.append(f"picked only below {e['sm_smem_below']} B shared memory per SM")
    if "cc_in" in e and not _in_group(groups[e["cc_in"]], target):
        why.append(f"picked only on {e['cc_in']} ({', '.join(groups[e['cc_in']])})")
    if "cc_not_in" in e and _in_group(groups[e["cc_not_in"]], target):
        why.append(f"not picked on {e['cc_not_in']} ({', '.join(groups[e['cc_not_in']])})")
    return Reach(not why, "; ".join(why))


# ------------------------------------------------------------------ per rule
@dataclass(frozen=True)
class KernelLaunch:
    """What verify needs of one kernel under a family's rule."""
    dynamic_smem: int | None    # None: not derived
    reachable: bool = True
    why: str = ""               # why not reachable
    underivable: bool = False   # the rule must derive it and cannot: a violation


def kernel_launch(rule: str, kernel_name: str, target: Target | None = None) -> KernelLaunch:
    if rule == "fa2-kernel-traits":
        return KernelLaunch(fa2_dynamic_smem(kernel_name))
    if rule == "fa2-launch":
        launch = fa2_launch(kernel_name)
        if launch is None:
            return KernelLaunch(None, underivable=True)
        if target is None:
            return KernelLaunch(launch.dynamic_smem)
        r = fa2_reach(launch, target)
        return KernelLaunch(launch.dynamic_smem, r.reachable, r.why)
    return KernelLaunch(None)


def dynamic_smem(rule: str, kernel_name: str) -> int | None:
    return kernel_launch(rule, kernel_name).dynamic_smem
