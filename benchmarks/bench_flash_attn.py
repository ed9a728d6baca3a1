"""Benchmark the flash_attn wheel against torch SDPA, on one GPU, in one run.

Kernel time: CUDA-graph replay of many calls (`--calls` per graph, the graph
replayed `--replays` times, CUDA events around the replays); eager time: wall
time per call of a plain Python loop. Both for flash_attn and the reference,
same shapes, same run, so the figures are ratios.

  forward / forward+backward: flash_attn_func vs SDPA's flash backend
      (GQA: the reference gets K/V expanded to the query heads beforehand;
      the expansion is not timed). backward = (fwd+bwd) - fwd.
  decode: flash_attn_with_kvcache (seqlen_q 1; contiguous and paged cache,
      page 256) vs SDPA (flash backend, K/V expanded); KV read bandwidth as a
      fraction of the measured device-to-device copy bandwidth. Caches are
      rotated through enough copies to exceed the L2 cache, so the figure is
      HBM, not L2.

  python benchmarks/bench_flash_attn.py --out DIR   (CSV, plot, text table)
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

L2_EXCESS = 4  # rotate through at least this many times the L2 size


def graph_time_us(fn, calls: int, replays: int) -> float:
    """Mean time per call of fn() from CUDA-graph replay."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    g.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / (calls * replays)


def eager_time_us(fn, iters: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e6 / iters


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    n = 1 << 30   # 4 GiB of float32, as the device notes measure it
    a = torch.empty(n, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    us = graph_time_us(lambda: b.copy_(a), 3, 5)
    return 2 * 4 * n / (us * 1e-6)


def bench_prefill(rows, args, dev):
    from flash_attn import flash_attn_func
    dt = torch.bfloat16
    for (b, s) in ((4, 2048), (2, 8192), (1, 16384)):
        for d in args.head_dims:
            for hq, hk in ((32, 32), (32, 8)):
                for causal in (False, True):
                    q = torch.randn(b, s, hq, d, device=dev, dtype=dt, requires_grad=True)
                    k = torch.randn(b, s, hk, d, device=dev, dtype=dt, requires_grad=True)
                    v = torch.randn(b, s, hk, d, device=dev, dtype=dt, requires_grad=True)
                    do = torch.randn(b, s, hq, d, device=dev, dtype=dt)
                    rep = hq // hk
                    qt = q.detach().transpose(1, 2).contiguous().requires_grad_()
                    kt = k.detach().repeat_interleave(rep, dim=2).transpose(1, 2).contiguous().requires_grad_()
                    vt = v.detach().repeat_interleave(rep, dim=2).transpose(1, 2).contiguous().requires_grad_()
                    dot = do.transpose(1, 2).contiguous()

                    def fa_fwd():
                        with torch.no_grad():
                            flash_attn_func(q, k, v, causal=causal)

                    def fa_step():
                        o = flash_attn_func(q, k, v, causal=causal)
                        torch.autograd.grad(o, (q, k, v), do)

                    def sd_fwd():
                        with torch.no_grad(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                            F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)

                    def sd_step():
                        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                            o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
                        torch.autograd.grad(o, (qt, kt, vt), dot)

                    t = {name: graph_time_us(fn, args.calls, args.replays)
                         for name, fn in (("fa_fwd", fa_fwd), ("fa_step", fa_step),
                                          ("sd_fwd", sd_fwd), ("sd_step", sd_step))}
                    e_fa = eager_time_us(fa_fwd, 20)
                    e_sd = eager_time_us(sd_fwd, 20)
                    flops = 4 * b * s * s * hq * d * (0.5 if causal else 1.0)
                    fa_bwd, sd_bwd = t["fa_step"] - t["fa_fwd"], t["sd_step"] - t["sd_fwd"]
                    rows.append(dict(kind="prefill", b=b, s=s, hq=hq, hk=hk, d=d, causal=causal,
                                     paged="", fa_us=t["fa_fwd"], ref_us=t["sd_fwd"],
                                     ratio=t["sd_fwd"] / t["fa_fwd"], fa_bwd_us=fa_bwd, ref_bwd_us=sd_bwd,
                                     bwd_ratio=sd_bwd / fa_bwd, fa_eager_us=e_fa, ref_eager_us=e_sd,
                                     fa_tflops=flops / t["fa_fwd"] / 1e6, bw_frac=""))
                    print(_fmt(rows[-1]), flush=True)
                    del q, k, v, do, qt, kt, vt, dot
                    torch.cuda.empty_cache()


def bench_decode(rows, args, dev, copy_bw):
    from flash_attn import flash_attn_with_kvcache
    dt = torch.bfloat16
    l2 = torch.cuda.get_device_properties(dev).L2_cache_size
    hq, hk, d = 32, 8, 128
    page = 256
    for b in (1, 4, 16, 64):
        for cache in (1024, 4096, 16384, 32768):
            kv_bytes = 2 * b * cache * hk * d * 2
            if kv_bytes > 24e9:
                continue
            copies = max(1, math.ceil(L2_EXCESS * l2 / kv_bytes))
            q = torch.randn(b, 1, hq, d, device=dev, dtype=dt)
            seqlens = torch.full((b,), cache, dtype=torch.int32, device=dev)
            for paged in (False, True):
                if paged:
                    nblk = b * cache // page
                    caches = [(torch.randn(nblk, page, hk, d, device=dev, dtype=dt),
                               torch.randn(nblk, page, hk, d, device=dev, dtype=dt)) for _ in range(copies)]
                    table = torch.randperm(nblk, device=dev, dtype=torch.int32).reshape(b, cache // page)
                else:
                    caches = [(torch.randn(b, cache, hk, d, device=dev, dtype=dt),
                               torch.randn(b, cache, hk, d, device=dev, dtype=dt)) for _ in range(copies)]
                    table = None
                it = iter(range(1 << 62))

                def fa():
                    kc, vc = caches[next(it) % copies]
                    flash_attn_with_kvcache(q, kc, vc, cache_seqlens=seqlens, block_table=table)

                fa_us = graph_time_us(fa, max(copies, args.calls), args.replays)
                fa_e = eager_time_us(fa, 50)
                ref_us = ref_e = float("nan")
                if not paged:
                    qt = q.transpose(1, 2)
                    exp = [(kc.repeat_interleave(hq // hk, dim=2).transpose(1, 2),
                            vc.repeat_interleave(hq // hk, dim=2).transpose(1, 2)) for kc, vc in caches[:1]]
                    ref_copies = max(1, math.ceil(L2_EXCESS * l2 / (kv_bytes * hq // hk)))
                    if kv_bytes * hq // hk * ref_copies < 40e9:
                        exp = [(kc.repeat_interleave(hq // hk, dim=2).transpose(1, 2),
                                vc.repeat_interleave(hq // hk, dim=2).transpose(1, 2))
                               for kc, vc in caches[:ref_copies]] if ref_copies > 1 else exp
                        jt = iter(range(1 << 62))

                        def sd():
                            kt, vt = exp[next(jt) % len(exp)]
                            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                                F.scaled_dot_product_attention(qt, kt, vt)

                        ref_us = graph_time_us(sd, max(len(exp), args.calls), args.replays)
                        ref_e = eager_time_us(sd, 50)
                        del exp
                rows.append(dict(kind="decode", b=b, s=cache, hq=hq, hk=hk, d=d, causal=False,
                                 paged=paged, fa_us=fa_us, ref_us=ref_us, ratio=ref_us / fa_us,
                                 fa_bwd_us="", ref_bwd_us="", bwd_ratio="", fa_eager_us=fa_e,
                                 ref_eager_us=ref_e, fa_tflops="",
                                 bw_frac=kv_bytes / (fa_us * 1e-6) / copy_bw,
                                 ref_bw_frac=kv_bytes / (ref_us * 1e-6) / copy_bw))
                print(_fmt(rows[-1]), flush=True)
                del caches
                torch.cuda.empty_cache()


def _fmt(r: dict) -> str:
    def f(x, p=1):
        return f"{x:.{p}f}" if isinstance(x, float) and not math.isnan(x) else str(x if x != "" else "-")
    base = (f"{r['kind']:7} b={r['b']:<3} s={r['s']:<6} h={r['hq']}/{r['hk']} d={r['d']:<3} "
            f"causal={str(r['causal'])[0]} paged={str(r['paged'])[:1] or '-'}  "
            f"fa {f(r['fa_us'])} us  ref {f(r['ref_us'])} us  ratio {f(r['ratio'], 3)}")
    if r["kind"] == "prefill":
        base += (f" | bwd fa {f(r['fa_bwd_us'])} ref {f(r['ref_bwd_us'])} ratio {f(r['bwd_ratio'], 3)}"
                 f" | {f(r['fa_tflops'])} TFLOP/s")
    else:
        base += f" | KV {f(r['bw_frac'], 3)} of copy bw (ref {f(r['ref_bw_frac'], 3)})"
    return base + f" | eager {f(r['fa_eager_us'])} / ref {f(r['ref_eager_us'])} us"


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    pre = [r for r in rows if r["kind"] == "prefill"]
    lab = [f"{r['b']}x{r['s']} d{r['d']} {r['hq']}/{r['hk']}{' c' if r['causal'] else ''}" for r in pre]
    x = range(len(pre))
    axes[0].bar([i - 0.2 for i in x], [r["ratio"] for r in pre], 0.4, label="forward")
    axes[0].bar([i + 0.2 for i in x], [r["bwd_ratio"] for r in pre], 0.4, label="backward")
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].set_xticks(list(x), lab, rotation=90, fontsize=7)
    axes[0].set_ylabel("speed vs SDPA flash (x)")
    axes[0].legend()
    dec = [r for r in rows if r["kind"] == "decode"]
    lab = [f"b{r['b']} {r['s'] // 1024}k{' paged' if r['paged'] else ''}" for r in dec]
    axes[1].bar(range(len(dec)), [r["bw_frac"] for r in dec])
    axes[1].axhline(0.6, color="r", lw=0.8)
    axes[1].set_xticks(range(len(dec)), lab, rotation=90, fontsize=7)
    axes[1].set_ylabel("KV read / copy bandwidth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--replays", type=int, default=10)
    p.add_argument("--only", choices=["prefill", "decode"], default=None)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda", 0)
    props = torch.cuda.get_device_properties(dev)
    bw = copy_bandwidth()
    print(f"{props.name} sm_{props.major}{props.minor}, torch {torch.__version__}; "
          f"device-to-device copy {bw / 1e12:.2f} TB/s (read+write)", flush=True)
    rows: list[dict] = []
    if args.only in (None, "prefill"):
        bench_prefill(rows, args, dev)
    if args.only in (None, "decode"):
        bench_decode(rows, args, dev, bw)
    keys = sorted({k for r in rows for k in r})
    with open(args.out / "bench_flash_attn.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    (args.out / "bench_flash_attn.txt").write_text(
        f"{props.name}, torch {torch.__version__}, copy {bw / 1e12:.2f} TB/s\n" +
        "\n".join(_fmt(r) for r in rows) + "\n")
    try:
        plot(rows, args.out / "bench_flash_attn.png")
    except Exception as e:  # the numbers matter more than the picture
        print(f"plot skipped: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
