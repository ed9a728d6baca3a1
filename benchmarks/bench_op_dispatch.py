#!/usr/bin/env python3
"""What the op layer costs per call, on the CPU: vLLM's FA2 schema on the stable ABI vs the same
schema on the classic (unstable) torch library API, no kernel at all.

issue 19 measured `torch.ops._vllm_fa2_C.varlen_fwd` on an H100 at 30.6 us per call above the raw
kernel launch (target: 10 us). This separates the part no kernel code can remove: Python ->
torch.ops -> dispatcher -> (stable ABI: every argument boxed into a StableIValue and every
tensor into a new handle) -> the C++ function -> the results back. Four ops are built here
(torch.utils.cpp_extension, g++, the installed torch), registered for CPU, each doing what
the real op does besides its checks and the launch: one new_empty (the LSE) and return:

  stable_varlen   vLLM's varlen_fwd schema (21 arguments, the generator dropped), stable ABI
  classic_varlen  the same schema, TORCH_LIBRARY (at::Tensor)
  stable_one      one tensor in, (tensor, new_empty) out, stable ABI
  classic_one     the same, TORCH_LIBRARY

and `torch.empty` as the floor of a Python call that allocates. Calls are interleaved in
rounds; the median per call of each is printed, and ratios against classic_varlen of the
same run. Run on the machine whose numbers you compare (the GPU host's CPU is another CPU).

    python benchmarks/bench_op_dispatch.py [--calls 20000] [--rounds 7] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

SCHEMA_ARGS = ("Tensor q, Tensor k, Tensor v, Tensor(a!)? out, Tensor cu_seqlens_q, Tensor cu_seqlens_k, "
               "Tensor? seqused_k, Tensor? leftpad_k, Tensor? block_table, Tensor? alibi_slopes, "
               "int max_seqlen_q, int max_seqlen_k, float p_dropout, float softmax_scale, "
               "bool zero_tensors, bool is_causal, int window_size_left, int window_size_right, "
               "float softcap, bool return_softmax, int num_splits")

STABLE = r"""
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <tuple>
using torch::stable::Tensor;
using OptTensor = std::optional<Tensor>;
std::tuple<Tensor, Tensor> varlen(Tensor q, Tensor k, Tensor v, OptTensor out, Tensor cq, Tensor ck,
    OptTensor su, OptTensor lp, OptTensor bt, OptTensor al, int64_t mq, int64_t mk, double p,
    double scale, bool zt, bool causal, int64_t wl, int64_t wr, double softcap, bool rs, int64_t ns) {
  Tensor lse = torch::stable::new_empty(q, {q.size(1), q.size(0)},
                                        torch::headeronly::ScalarType::Float);
  return {out.has_value() ? *out : q, lse};
}
std::tuple<Tensor, Tensor> one(Tensor q) {
  Tensor lse = torch::stable::new_empty(q, {q.size(1), q.size(0)},
                                        torch::headeronly::ScalarType::Float);
  return {q, lse};
}
STABLE_TORCH_LIBRARY(bw_dispatch_stable, m) {
  m.def("varlen(SCHEMA) -> (Tensor, Tensor)");
  m.def("one(Tensor q) -> (Tensor, Tensor)");
}
STABLE_TORCH_LIBRARY_IMPL(bw_dispatch_stable, CPU, m) {
  m.impl("varlen", TORCH_BOX(&varlen));
  m.impl("one", TORCH_BOX(&one));
}
"""

CLASSIC = r"""
#include <torch/library.h>
#include <ATen/ATen.h>
#include <tuple>
using at::Tensor;
using OptTensor = std::optional<Tensor>;
std::tuple<Tensor, Tensor> varlen(const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& out,
    const Tensor& cq, const Tensor& ck, const OptTensor& su, const OptTensor& lp, const OptTensor& bt,
    const OptTensor& al, int64_t mq, int64_t mk, double p, double scale, bool zt, bool causal,
    int64_t wl, int64_t wr, double softcap, bool rs, int64_t ns) {
  Tensor lse = q.new_empty({q.size(1), q.size(0)}, q.options().dtype(at::kFloat));
  return {out.has_value() ? *out : q, lse};
}
std::tuple<Tensor, Tensor> one(const Tensor& q) {
  Tensor lse = q.new_empty({q.size(1), q.size(0)}, q.options().dtype(at::kFloat));
  return {q, lse};
}
TORCH_LIBRARY(bw_dispatch_classic, m) {
  m.def("varlen(SCHEMA) -> (Tensor, Tensor)");
  m.def("one(Tensor q) -> (Tensor, Tensor)");
}
TORCH_LIBRARY_IMPL(bw_dispatch_classic, CPU, m) {
  m.impl("varlen", &varlen);
  m.impl("one", &one);
}
"""


def build(build_dir: Path) -> None:
    from torch.utils.cpp_extension import load     # (load_inline adds torch/extension.h: not stable)
    for name, src, flags in (
            ("bw_dispatch_stable", STABLE, ["-DTORCH_TARGET_VERSION=0x020B000000000000ULL"]),
            ("bw_dispatch_classic", CLASSIC, [])):
        d = build_dir / name
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.cpp").write_text(src.replace("SCHEMA", SCHEMA_ARGS))
        load(name, sources=[str(d / f"{name}.cpp")], extra_cflags=["-O2", *flags],
             build_directory=str(d), is_python_module=False, verbose=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--build-dir", type=Path, default=None, help="default: a temporary directory")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory(prefix="bw-dispatch-") as tmp:
        t0 = time.monotonic()
        build(a.build_dir or Path(tmp))
        built_s = time.monotonic() - t0
    total_q, heads, hk, d, blocks = 8, 32, 8, 128, 64
    q = torch.randn(total_q, heads, d, dtype=torch.bfloat16)
    k = torch.randn(blocks, 16, hk, d, dtype=torch.bfloat16)
    v = torch.randn_like(k)
    out = torch.empty_like(q)
    cq = torch.arange(0, total_q + 1, dtype=torch.int32)
    ck = cq.clone()
    su = torch.full((total_q,), 100, dtype=torch.int32)
    bt = torch.zeros(total_q, 8, dtype=torch.int32)
    args = (q, k, v, out, cq, ck, su, None, bt, None, 1, 128, 0.0, d ** -0.5, False, True, -1, -1,
            0.0, False, 0)
    s, c = torch.ops.bw_dispatch_stable, torch.ops.bw_dispatch_classic
    calls = {
        "stable_varlen": lambda: s.varlen(*args),
        "classic_varlen": lambda: c.varlen(*args),
        "stable_one": lambda: s.one(q),
        "classic_one": lambda: c.one(q),
        "torch_empty": lambda: torch.empty((heads, total_q), dtype=torch.float32),
    }
    # the ops agree before they are timed
    r_s, r_c = calls["stable_varlen"](), calls["classic_varlen"]()
    assert r_s[0] is out or r_s[0].data_ptr() == out.data_ptr(), "stable op did not return out"
    assert r_c[0].data_ptr() == out.data_ptr() and r_s[1].shape == r_c[1].shape == (heads, total_q)
    per: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():                                  # warm-up
        for _ in range(1000):
            fn()
    for _ in range(a.rounds):
        for name, fn in calls.items():
            t = time.perf_counter()
            for _ in range(a.calls):
                fn()
            per[name].append((time.perf_counter() - t) / a.calls * 1e6)
    med = {k: round(statistics.median(v), 2) for k, v in per.items()}
    ref = med["classic_varlen"]
    print(f"torch {torch.__version__}, Python {sys.version.split()[0]}, {a.rounds} rounds x {a.calls} calls "
          f"(built in {built_s:.0f} s)")
    for name, us in med.items():
        print(f"  {name:15s} {us:8.2f} us/call   {us / ref:5.2f}x classic_varlen")
    print(f"  stable ABI cost of vLLM's schema: {med['stable_varlen'] - med['classic_varlen']:+.2f} us/call; "
          f"its 21 arguments vs one: stable {med['stable_varlen'] - med['stable_one']:+.2f}, "
          f"classic {med['classic_varlen'] - med['classic_one']:+.2f} us/call")
    if a.json:
        a.json.write_text(json.dumps({"torch": torch.__version__, "median_us": med, "rounds_us": per,
                                      "calls": a.calls}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
