"""Dynamic shared memory a kernel's launcher requests, derived from the kernel's
own (mangled) name where upstream makes it a pure function of template
parameters. Pure.

Dynamic shared memory is not recorded in a cubin, so `verify` needs this per
kernel family:
  - "fa2-kernel-traits": FlashAttention-2 launches every forward kernel with
    Kernel_traits::kSmemSize (flash_fwd_launch_template.h), where
    kSmemQSize = kBlockM*kHeadDim*2, kSmemKVSize = kBlockN*kHeadDim*2*2 (K and V),
    kSmemSize = Share_Q_K_smem ? max(Q, KV) : Q + KV (kernel_traits.h; 2-byte
    fp16/bf16 elements). Those parameters are the first six template arguments
    of Flash_fwd_kernel_traits in the kernel's name.
  - "launcher-checked": the launcher sizes shared memory at run time against the
    device's opt-in maximum (vLLM Marlin queries cudaDevAttrMaxSharedMemoryPerBlockOptin;
    CUTLASS 3.x SM90/SM120 collectives pick their stage count from the arch's
    shared-memory capacity at compile time). Nothing to derive from the name.
"""
from __future__ import annotations

import re

_FA2_TRAITS = re.compile(
    r"Flash_fwd_kernel_traitsILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELb([01])ELb([01])E")

RULES = ("fa2-kernel-traits", "launcher-checked")


def fa2_dynamic_smem(kernel_name: str) -> int | None:
    """kSmemSize of a FlashAttention-2 forward kernel, from its mangled name."""
    m = _FA2_TRAITS.search(kernel_name)
    if not m:
        return None
    head_dim, block_m, block_n, _warps, _q_in_regs, share_qk = (int(g) for g in m.groups())
    q = block_m * head_dim * 2
    kv = block_n * head_dim * 2 * 2
    return max(q, kv) if share_qk else q + kv


def dynamic_smem(rule: str, kernel_name: str) -> int | None:
    if rule == "fa2-kernel-traits":
        return fa2_dynamic_smem(kernel_name)
    return None
