"""vLLM's FA2 (vllm/vllm_flash_attn over blackwheel's _vllm_fa2_C) on the GPU at hand.

Three measurements, one run (numbers for docs/VLLM_FA2.md and the issue):
  decode   vLLM-shaped decode: batch 1..64, context 1k..32k, paged KV with block size 16
           and 256, 32 query / 8 KV heads, d128, bf16. Kernel time by CUDA-graph replay;
           caches rotated past L2 (ROTATE_BYTES); the KV cache read rate against the
           measured device copy bandwidth
           (a graph-replayed D2D copy of 2 GiB: bytes read + written per second), and
           block 16's cost over block 256; and against a copy moving the same bytes
           (graph-replayed, rotated): small contexts are launch-bound for any kernel.
  prefill  varlen prefill at LLM shapes (causal, 32/8 heads, d128), vLLM's paged path
           (block 16) and unpaged, against torch SDPA's flash backend on the same shapes
           (K/V expanded to 32 heads for SDPA, outside the timing).
  host     eager host cost per call (CPU time to issue, no synchronisation inside the
           loop), interleaved rounds: vLLM's flash_attn_varlen_func (Python wrapper as vLLM
           calls it), the op torch.ops._vllm_fa2_C.varlen_fwd called directly, and the raw
           launch: replay of a CUDA graph holding the same kernels; flash_attn's
           flash_attn_varlen_func too when the flash_attn wheel is installed.

Usage: python benchmarks/bench_vllm_fa2.py [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch

HQ, HK, D = 32, 8, 128
DTYPE = torch.bfloat16
# decode: KV bytes touched before the same cache is read again (H100/H200 L2: 50/60 MiB)
ROTATE_BYTES = 256 << 20


def graph_time_us(fn, iters=20, reps=5) -> float:
    """Median kernel time (us) of fn by CUDA-graph replay (iters calls per graph)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(iters):
            fn()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / iters)
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Bytes/s of a D2D copy (read + write) of 2 GiB, graph-replayed."""
    n = 2 << 30
    return n / (copy_time_us(n) * 1e-6)


def copy_time_us(nbytes: int) -> float:
    """Graph-replayed D2D copy moving nbytes in all (nbytes/2 read + nbytes/2 written), buffers
    cycled past L2 like the decode caches: the same-size reference for small contexts, where
    a 2 GiB copy's rate overstates what any kernel moving a few MiB can reach (launch, ramp)."""
    half = max(nbytes // 2, 1)
    pairs = [(torch.empty(half, dtype=torch.uint8, device="cuda"),
              torch.empty(half, dtype=torch.uint8, device="cuda"))
             for _ in range(-(-ROTATE_BYTES // nbytes))]
    cycle = itertools.cycle(pairs)

    def step():
        dst, src = next(cycle)
        dst.copy_(src)
    t = graph_time_us(step, iters=max(20, len(pairs)))
    del pairs, cycle
    return t


def paged_setup(batch, ctx, block, seqlen_q=1):
    blocks_per_seq = (ctx + block - 1) // block
    num_blocks = batch * blocks_per_seq
    kc = torch.randn(num_blocks, block, HK, D, device="cuda", dtype=DTYPE)
    vc = torch.randn_like(kc)
    perm = torch.randperm(num_blocks, device="cuda", dtype=torch.int32)   # scattered pages, as vLLM's
    table = perm.view(batch, blocks_per_seq)
    q = torch.randn(batch * seqlen_q, HQ, D, device="cuda", dtype=DTYPE)
    cu_q = torch.arange(0, batch + 1, device="cuda", dtype=torch.int32) * seqlen_q
    used = torch.full((batch,), ctx, device="cuda", dtype=torch.int32)
    out = torch.empty_like(q)
    return q, kc, vc, table, cu_q, used, out


def bench_decode(quick):
    from vllm.vllm_flash_attn import flash_attn_varlen_func
    bw = copy_bandwidth()
    rows = []
    batches = [1, 8, 64] if quick else [1, 4, 16, 64]
    ctxs = [1024, 8192, 32768] if quick else [1024, 4096, 8192, 16384, 32768]
    for batch in batches:
        for ctx in ctxs:
            if batch * ctx * HK * D * 4 > 24 << 30:    # K+V bf16 over 24 GiB: skip
                continue
            res = {}
            kv_bytes = batch * ctx * HK * D * 2 * 2
            copies = -(-ROTATE_BYTES // kv_bytes)   # caches cycled so none is read from L2
            for block in (16, 256):
                calls = []
                for _ in range(copies):
                    q, kc, vc, table, cu_q, used, out = paged_setup(batch, ctx, block)
                    calls.append(lambda q=q, kc=kc, vc=vc, table=table, cu_q=cu_q, used=used, out=out:
                                 flash_attn_varlen_func(q, kc, vc, 1, cu_q, ctx, seqused_k=used,
                                                        causal=True, block_table=table, out=out,
                                                        fa_version=2))
                cycle = itertools.cycle(calls)
                res[block] = graph_time_us(lambda: next(cycle)(), iters=max(20, copies))
                del calls, cycle
            same = copy_time_us(kv_bytes)
            row = {"batch": batch, "context": ctx, "us_block16": res[16], "us_block256": res[256],
                   "us_same_size_copy": same, "frac_same_size_copy_block16": same / res[16],
                   "frac_copy_bw_block16": kv_bytes / (res[16] * 1e-6) / bw,
                   "frac_copy_bw_block256": kv_bytes / (res[256] * 1e-6) / bw,
                   "block16_over_256": res[16] / res[256] - 1}
            rows.append(row)
            print(f"decode b={batch:3d} ctx={ctx:6d}: block16 {res[16]:8.1f} us "
                  f"({row['frac_copy_bw_block16']:.2f} of copy BW), block256 {res[256]:8.1f} us "
                  f"({row['frac_copy_bw_block256']:.2f}), 16 vs 256 {row['block16_over_256']:+.1%}; "
                  f"same-size copy {same:7.1f} us ({row['frac_same_size_copy_block16']:.2f} of its rate)",
                  flush=True)
    return {"copy_bandwidth_GBps": bw / 1e9, "rows": rows}


def bench_prefill(quick):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from vllm.vllm_flash_attn import flash_attn_varlen_func
    rows = []
    shapes = [(1, 4096), (4, 2048)] if quick else [(1, 2048), (1, 8192), (4, 2048), (8, 1024), (2, 4096)]
    for batch, s in shapes:
        q, kc, vc, table, cu_q, used, out = paged_setup(batch, s, 16, seqlen_q=s)
        fa_paged = graph_time_us(lambda: flash_attn_varlen_func(
            q, kc, vc, s, cu_q, s, seqused_k=used, causal=True, block_table=table, out=out,
            fa_version=2), iters=5)
        k = torch.randn(batch * s, HK, D, device="cuda", dtype=DTYPE)
        v = torch.randn_like(k)
        fa_flat = graph_time_us(lambda: flash_attn_varlen_func(
            q, k, v, s, cu_q, s, cu_seqlens_k=cu_q, causal=True, out=out, fa_version=2), iters=5)
        qs = q.view(batch, s, HQ, D).transpose(1, 2)
        ks = k.view(batch, s, HK, D).repeat_interleave(HQ // HK, dim=2).transpose(1, 2)
        vs = v.view(batch, s, HK, D).repeat_interleave(HQ // HK, dim=2).transpose(1, 2)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            sdpa = graph_time_us(lambda: torch.nn.functional.scaled_dot_product_attention(
                qs, ks, vs, is_causal=True), iters=5)
        row = {"batch": batch, "seqlen": s, "us_fa2_paged16": fa_paged, "us_fa2_unpaged": fa_flat,
               "us_sdpa_flash": sdpa, "speedup_paged16_vs_sdpa": sdpa / fa_paged,
               "speedup_unpaged_vs_sdpa": sdpa / fa_flat}
        rows.append(row)
        print(f"prefill b={batch} s={s}: FA2 paged16 {fa_paged:9.1f} us, unpaged {fa_flat:9.1f} us, "
              f"SDPA flash {sdpa:9.1f} us -> {row['speedup_paged16_vs_sdpa']:.2f}x / "
              f"{row['speedup_unpaged_vs_sdpa']:.2f}x", flush=True)
    return rows


def host_us(fn, n=200) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n * 1e6


def bench_host(rounds):
    from vllm.vllm_flash_attn import flash_attn_varlen_func
    q, kc, vc, table, cu_q, used, out = paged_setup(1, 512, 16)
    dummy_k = torch.empty_like(cu_q)
    ops = torch.ops._vllm_fa2_C
    scale = D ** -0.5
    cases = {
        "vllm_flash_attn_varlen_func": lambda: flash_attn_varlen_func(
            q, kc, vc, 1, cu_q, 512, seqused_k=used, causal=True, block_table=table, out=out,
            fa_version=2),
        "op_varlen_fwd": lambda: ops.varlen_fwd(
            q, kc, vc, out, cu_q, dummy_k, used, None, table, None, 1, 512, 0.0, scale, False,
            True, -1, -1, 0.0, False, 0, None),
    }
    try:
        from flash_attn import flash_attn_varlen_func as fa_varlen
        cu_k = torch.tensor([0, 512], device="cuda", dtype=torch.int32)
        cases["flash_attn_product_varlen"] = lambda: fa_varlen(
            q, kc, vc, cu_q, cu_k, 1, 512, causal=True, block_table=table)
    except ImportError:
        pass
    g = torch.cuda.CUDAGraph()
    cases["op_varlen_fwd"]()
    torch.cuda.synchronize()
    with torch.cuda.graph(g):
        cases["op_varlen_fwd"]()
    cases["raw_launch_graph_replay"] = g.replay
    for fn in cases.values():       # warm up
        host_us(fn, 20)
    samples = {k: [] for k in cases}
    for _ in range(rounds):         # interleaved
        for k, fn in cases.items():
            samples[k].append(host_us(fn))
    med = {k: statistics.median(v) for k, v in samples.items()}
    raw = med["raw_launch_graph_replay"]
    for k, v in med.items():
        print(f"host {k:32s} {v:7.2f} us/call  ({v - raw:+.2f} over the raw launch)", flush=True)
    return {"median_us": med, "over_raw_us": {k: v - raw for k, v in med.items()}}


def profile_host(n=200):
    """Where the op's host time goes: torch.profiler (CPU + CUDA runtime calls) over n eager
    calls of the host case's op; the table lists the aten ops the op dispatches inside
    (allocations, copies) and the CUDA runtime calls (launches, attribute sets)."""
    from torch.profiler import ProfilerActivity, profile
    q, kc, vc, table, cu_q, used, out = paged_setup(1, 512, 16)
    dummy_k = torch.empty_like(cu_q)
    ops = torch.ops._vllm_fa2_C
    rows = {}
    for splits in (0, 1):
        fn = lambda: ops.varlen_fwd(q, kc, vc, out, cu_q, dummy_k, used, None, table, None, 1, 512,
                                    0.0, D ** -0.5, False, True, -1, -1, 0.0, False, splits, None)
        host_us(fn, 50)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                fn()
            torch.cuda.synchronize()
        table_txt = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        print(f"--- host profile, num_splits={splits}, {n} calls (times are totals over them)\n"
              + table_txt, flush=True)
        rows[str(splits)] = {e.key: {"count": e.count, "self_cpu_us_per_call": e.self_cpu_time_total / n}
                             for e in prof.key_averages()}
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer shapes")
    ap.add_argument("--only", choices=["decode", "prefill", "host"], action="append")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--profile-host", action="store_true",
                    help="also profile the op's host time (torch.profiler, per aten op and CUDA call)")
    args = ap.parse_args(argv)
    which = args.only or ["host", "decode", "prefill"]
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    if "host" in which:
        res["host"] = bench_host(rounds=10 if args.quick else 30)
    if args.profile_host:
        res["host_profile"] = profile_host()
    if "decode" in which:
        res["decode"] = bench_decode(args.quick)
    if "prefill" in which:
        res["prefill"] = bench_prefill(args.quick)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
