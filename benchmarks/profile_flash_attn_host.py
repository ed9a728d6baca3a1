#!/usr/bin/env python3
"""Where the host time of an eager flash_attn call goes (not a test): wall time per
call of upstream's Python entry points over our flash_attn_2_cuda module at small
decode/prefill shapes (where the host path, not the kernel, sets the time), next to
torch SDPA's flash backend, then a cProfile of each
entry point, sorted by own time.

    python benchmarks/profile_flash_attn_host.py [--calls 2000] [--top 25]
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def per_call_us(fn, calls: int) -> float:
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / calls * 1e6)
    return best


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    import flash_attn
    from flash_attn import flash_attn_func, flash_attn_with_kvcache
    dev, dt = "cuda", torch.bfloat16
    q1 = torch.randn(16, 1, 32, 128, device=dev, dtype=dt)
    kc = torch.randn(16, 1024, 8, 128, device=dev, dtype=dt)
    vc = torch.randn_like(kc)
    lens = torch.full((16,), 1000, device=dev, dtype=torch.int32)
    qp = torch.randn(1, 128, 32, 128, device=dev, dtype=dt)
    kp = torch.randn(1, 128, 8, 128, device=dev, dtype=dt)
    qs, ks = qp.transpose(1, 2), kp.transpose(1, 2).repeat_interleave(4, 1)
    cases = {
        "flash_attn_with_kvcache B16 cache1k 32/8 d128": lambda: flash_attn_with_kvcache(q1, kc, vc, cache_seqlens=lens),
        "flash_attn_func B1 S128 32/8 d128 causal": lambda: flash_attn_func(qp, kp, kp, causal=True),
        "torch SDPA flash (same prefill, K/V expanded)": lambda: torch.nn.functional.scaled_dot_product_attention(
            qs, ks, ks, is_causal=True),
    }
    print(f"torch {torch.__version__}, flash_attn {flash_attn.__version__}, {torch.cuda.get_device_name()}")
    for name, fn in cases.items():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION) if "SDPA" in name else contextlib.nullcontext():
            print(f"{name:58s} {per_call_us(fn, a.calls):8.1f} us per eager call")
    for name in ("flash_attn_with_kvcache B16 cache1k 32/8 d128", "flash_attn_func B1 S128 32/8 d128 causal"):
        fn = cases[name]
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(a.calls):
            fn()
        pr.disable()
        torch.cuda.synchronize()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(a.top)
        print(f"\n=== cProfile: {name}, {a.calls} calls\n" + s.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
