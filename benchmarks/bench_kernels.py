"""Kernel benchmarks (not tests): every number is a ratio against a baseline
measured in the same run on the same GPU.

  scaled_mm   blackwheel.scaled_mm vs torch._scaled_mm (FP8 e4m3, per-tensor
              scales, bf16 out, use_fast_accum=True like CUTLASS FP8FastAccum)
              at LLM shapes; ratio = torch time / ours (> 1: ours faster).
  marlin_fp4  FP4 Marlin GEMM at decode shapes (M <= 16): achieved weight
              bandwidth (packed weight + scale bytes / time) as a fraction of
              the device-to-device copy bandwidth ((read + write bytes) / time
              of copying a 1 GiB buffer), measured in this run.
  flash_attn  blackwheel.flash_attn_func vs torch SDPA restricted to its flash
              backend; ratio = SDPA time / ours.

Timing: torch.cuda.Event around each call, warmup then the median of --iters.
Output: OUT/bench_kernels.csv and OUT/bench_kernels.png (if matplotlib is
installed; otherwise the plot is skipped with a message).

    python benchmarks/bench_kernels.py [--out-dir bench-results] [--only scaled_mm,marlin_fp4,flash_attn]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import torch

ROWS: list[dict] = []


def time_ms(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def record(bench, shape, dtype, ours_ms, base_ms, ratio, metric, note=""):
    row = {"benchmark": bench, "shape": shape, "dtype": dtype, "ours_ms": f"{ours_ms:.4f}",
           "baseline_ms": "" if base_ms is None else f"{base_ms:.4f}", "ratio": f"{ratio:.3f}",
           "metric": metric, "note": note}
    ROWS.append(row)
    print(f"{bench:11s} {shape:34s} {dtype:6s} ours {ours_ms:8.4f} ms  "
          f"{'' if base_ms is None else f'base {base_ms:8.4f} ms  '}{metric} = {ratio:.3f} {note}")


def available(family: str) -> bool:
    from blackwheel import ops
    try:
        t = ops.kernel_target(family)
    except RuntimeError as e:
        print(f"{family}: skipped: {e}")
        return False
    print(f"{family}: running {t.describe()}")
    return True


def bench_scaled_mm(args):
    from blackwheel import ops
    from blackwheel.testing import quantize_fp8
    for m, n, k in ((1, 4096, 4096), (16, 4096, 4096), (128, 14336, 4096), (2048, 4096, 14336),
                    (4096, 4096, 4096)):
        a, sa = quantize_fp8(torch.randn(m, k, device="cuda"))
        w, sw = quantize_fp8(torch.randn(n, k, device="cuda") * 0.05)
        b = w.t()
        ours = time_ms(lambda: ops.scaled_mm(a, b, sa, sw, torch.bfloat16), args.warmup, args.iters)
        try:
            base = time_ms(lambda: torch._scaled_mm(a, b, scale_a=sa.reshape(()), scale_b=sw.reshape(()),
                                                    out_dtype=torch.bfloat16, use_fast_accum=True),
                           args.warmup, args.iters)
        except RuntimeError as e:
            print(f"scaled_mm m{m}n{n}k{k}: torch._scaled_mm unavailable ({e}); skipped")
            continue
        record("scaled_mm", f"M={m} N={n} K={k}", "e4m3", ours, base, base / ours, "torch/ours",
               f"{2 * m * n * k / ours / 1e9:.1f} TFLOP/s")


def copy_bandwidth(args) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting read + write."""
    nbytes = 1 << 30
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), args.warmup, args.iters)
    del src, dst
    bw = 2 * nbytes / (ms / 1e3)
    record("copy", "1 GiB d2d", "u8", ms, None, bw / 1e9, "GB/s (read+write)")
    return bw


def bench_marlin(args):
    from blackwheel import marlin_fp4, ops
    from blackwheel.testing import quantize_mxfp4, quantize_nvfp4
    bw = copy_bandwidth(args)
    for fmt in ("nvfp4", "mxfp4"):
        for n, k in ((4096, 4096), (14336, 4096), (4096, 14336)):
            w_hp = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
            if fmt == "nvfp4":
                q = quantize_nvfp4(w_hp)
                w = marlin_fp4.prepare_nvfp4_weight(q.packed, q.block_scales, q.global_scale, torch.bfloat16)
            else:
                q = quantize_mxfp4(w_hp)
                w = marlin_fp4.prepare_mxfp4_weight(q.packed, q.scales, torch.bfloat16)
            wbytes = w.qweight.numel() * 4 + w.scales.numel() * w.scales.element_size()
            for m in (1, 4, 16):
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
                ms = time_ms(lambda: ops.marlin_fp4_gemm(x, w), args.warmup, args.iters)
                frac = (wbytes / (ms / 1e3)) / bw
                record("marlin_fp4", f"{fmt} M={m} N={n} K={k}", "bf16", ms, None, frac, "weight BW / copy BW",
                       f"{wbytes / (ms / 1e3) / 1e9:.0f} GB/s")


def bench_flash_attn(args):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from blackwheel import ops
    for b, s, h, d, causal in ((1, 4096, 32, 128, True), (8, 1024, 32, 128, True), (4, 2048, 16, 64, False),
                               (16, 512, 32, 128, False)):
        for dt in (torch.bfloat16,):
            q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=dt) for _ in range(3))
            ours = time_ms(lambda: ops.flash_attn_func(q, k, v, causal=causal), args.warmup, args.iters)
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))

            def sdpa():
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                    return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
            try:
                base = time_ms(sdpa, args.warmup, args.iters)
            except RuntimeError as e:
                print(f"flash_attn: SDPA flash backend unavailable ({e}); skipped")
                continue
            flops = 4 * b * h * s * s * d / (2 if causal else 1)
            record("flash_attn", f"B={b} S={s} H={h} D={d}{' causal' if causal else ''}", "bf16", ours, base,
                   base / ours, "sdpa/ours", f"{flops / ours / 1e9:.1f} TFLOP/s")


def write_outputs(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bench_kernels.csv"
    with path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(ROWS[0]))
        wr.writeheader()
        wr.writerows(ROWS)
    print(f"wrote {path}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: plot skipped (pip install matplotlib)")
        return
    groups = [g for g in ("scaled_mm", "marlin_fp4", "flash_attn") if any(r["benchmark"] == g for r in ROWS)]
    if not groups:
        return
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.2 * len(groups)), squeeze=False)
    for ax, g in zip(axes[:, 0], groups):
        rows = [r for r in ROWS if r["benchmark"] == g]
        ax.barh([r["shape"] for r in rows], [float(r["ratio"]) for r in rows])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(f"{g}: {rows[0]['metric']}")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    png = out_dir / "bench_kernels.png"
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default="bench-results")
    p.add_argument("--only", default="scaled_mm,marlin_fp4,flash_attn")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU is visible; run it on the GPU host", file=sys.stderr)
        return 2
    import blackwheel
    if blackwheel.build_info() is None:
        print("bench_kernels: blackwheel has no built kernels here (source checkout); install the wheel",
              file=sys.stderr)
        return 2
    print(f"GPU: {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}), "
          f"torch {torch.__version__}")
    benches = {"scaled_mm": bench_scaled_mm, "marlin_fp4": bench_marlin, "flash_attn": bench_flash_attn}
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        if name not in benches:
            p.error(f"unknown benchmark {name!r}; choose from {', '.join(benches)}")
        if available(name):
            with torch.no_grad():
                benches[name](args)
    if not ROWS:
        print("bench_kernels: nothing ran", file=sys.stderr)
        return 1
    write_outputs(Path(args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
