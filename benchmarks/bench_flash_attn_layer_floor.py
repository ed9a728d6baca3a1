#!/usr/bin/env python3
"""The floor of flash_attn's public functions on the host: upstream's own Python layer with
no kernel and no bookkeeping under it, on the CPU.

issue 19 asks the flash_attn product's public functions to get "as close as upstream's own
custom-op layer allows" and to say what that floor is. flash-attn 2.8.3's
flash_attn/flash_attn_interface.py (shipped unchanged in the product) wraps every forward in
torch.library.custom_op ("flash_attn::_flash_attn_forward", device_types cuda and cpu) under
a torch.autograd.Function; flash_attn_with_kvcache calls flash_attn_2_cuda.fwd_kvcache
directly. This runs that file, from the pinned sdist, over a stand-in `flash_attn_2_cuda`
whose functions return preallocated tensors (no bookkeeping, no launch), on CPU tensors, so
what is measured is exactly upstream's layer: argument handling, the autograd Function, the
custom-op dispatch (schema parsing, boxing, the registered fake's machinery left out: eager).

Cases, interleaved in rounds, median us per call:
  stand_in_fwd              the stand-in's fwd called directly (the Python call floor)
  flash_attn_func           upstream's public function (no_grad and with requires_grad q)
  flash_attn_varlen_func    the same for varlen
  flash_attn_with_kvcache   no custom op: the direct path
Run on the machine whose numbers you compare: the GPU host's CPU is another CPU.

    python benchmarks/bench_flash_attn_layer_floor.py [--src FLASH_ATTN_SDIST_TREE] [--json OUT]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from blackwheel_factory.inputs.config import load_config  # noqa: E402
from blackwheel_factory.sources.fetch import prepare  # noqa: E402

B, S, H, D = 1, 1, 32, 128


def flash_attn_tree(src: str | None) -> Path:
    """The pinned, patched flash-attn sdist tree (fetched and verified like a build's)."""
    if src:
        return Path(src)
    return prepare(load_config(ROOT / "blackwheel.toml"), ["flash-attn"], log=lambda _: None)["flash-attn"]


def stand_in() -> types.ModuleType:
    """flash_attn_2_cuda's five functions, returning preallocated results."""
    q = torch.empty(B, S, H, D)
    out, lse = torch.empty_like(q), torch.empty(B, H, S)
    rng = torch.empty(2, dtype=torch.int64)
    m = types.ModuleType("flash_attn_2_cuda")
    m.fwd = lambda *a: (out, lse, None, rng)
    m.varlen_fwd = lambda *a: (out.view(B * S, H, D), lse.view(H, B * S), None, rng)
    m.fwd_kvcache = lambda *a: (out, lse)
    m.bwd = m.varlen_bwd = lambda *a: None
    return m


def load_interface(tree: Path, mod: types.ModuleType):
    sys.modules["flash_attn_2_cuda"] = mod
    path = tree / "flash_attn" / "flash_attn_interface.py"
    spec = importlib.util.spec_from_file_location("fa_interface_floor", path)
    fi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fi)
    return fi


def per_call_us(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", help="the flash-attn sdist tree (default: the pinned one, prepared as for a build)")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    tree = flash_attn_tree(args.src)
    mod = stand_in()
    fi = load_interface(tree, mod)
    q = torch.randn(B, S, H, D)
    k, v = torch.randn(B, 512, 8, D), torch.randn(B, 512, 8, D)
    qg = q.clone().requires_grad_()
    qv = q.view(B * S, H, D)
    kv_, vv_ = k.view(B * 512, 8, D), v.view(B * 512, 8, D)
    cu_q = torch.tensor([0, S], dtype=torch.int32)
    cu_k = torch.tensor([0, 512], dtype=torch.int32)
    kc, vc = torch.randn(B, 512, 8, D), torch.randn(B, 512, 8, D)
    used = torch.tensor([512], dtype=torch.int32)

    def nograd(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    cases = {
        "stand_in_fwd": lambda: mod.fwd(q, k, v, None, None, 0.0, 0.1, True, -1, -1, 0.0, False, None),
        "flash_attn_func (no_grad)": nograd(lambda: fi.flash_attn_func(q, k, v, causal=True)),
        "flash_attn_func (q requires grad)": lambda: fi.flash_attn_func(qg, k, v, causal=True),
        "flash_attn_varlen_func (no_grad)": nograd(lambda: fi.flash_attn_varlen_func(
            qv, kv_, vv_, cu_q, cu_k, S, 512, causal=True)),
        "flash_attn_with_kvcache (no_grad)": nograd(lambda: fi.flash_attn_with_kvcache(
            q, kc, vc, cache_seqlens=used, causal=True)),
    }
    for fn in cases.values():
        per_call_us(fn, 200)
    samples = {k_: [] for k_ in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            samples[name].append(per_call_us(fn, args.calls))
    med = {k_: statistics.median(v_) for k_, v_ in samples.items()}
    print(f"torch {torch.__version__}, Python {sys.version.split()[0]}, {tree.name}")
    for name, us in med.items():
        print(f"{name:36s} {us:7.2f} us/call")
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "python": sys.version.split()[0],
                                               "median_us": med}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
