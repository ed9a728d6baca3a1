"""Loading the stable-ABI extension, once, and the facts of each GPU, once.

`import flash_attn` must work on a machine without a GPU (tools, torch.compile
tracing with fake tensors, CPU CI), so the extension is loaded at the first real
call. That call gets a clear error when there is no CUDA GPU, when the GPU's
architecture is not in this wheel, or when the running torch cannot load a
CUDA 13 stable-ABI extension.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from ._runtime import archs as _archs
from ._runtime import record as _record

_HERE = Path(__file__).resolve().parent
_LIBRARY = _HERE / "_C.abi3.so"
_BUILD_INFO = _HERE / _record.RECORD_NAME
_REBUILD = ("rebuild with `python -m blackwheel_factory wheel flash-attn` and "
            "BLACKWHEEL_ARCHS / BLACKWHEEL_FA_HEAD_DIMS / BLACKWHEEL_FA_DIRECTIONS / BLACKWHEEL_FA_DTYPES")


@functools.cache
def build_info() -> dict:
    """The build record written into the wheel (archs, head dims, directions, pins); {} in
    a source checkout. Read by the runtime's reader, as every product's."""
    return _record.read(_BUILD_INFO, "flash-attn") or {}


def built_archs() -> list[str]:
    return list(build_info().get("archs", []))


def _family() -> dict:
    """The record of the one compiled family (flash_attn_2): head dims, directions."""
    return next(iter((build_info().get("kernels") or {}).values()), {})


@functools.cache
def _ops():
    if not torch.cuda.is_available():
        raise RuntimeError(
            "flash_attn: no CUDA GPU is visible (torch.cuda.is_available() is False). "
            "FlashAttention-2 runs on NVIDIA GPUs (sm_80 or newer); this wheel has kernels for "
            f"{', '.join(built_archs()) or 'unknown archs'}.")
    # the running torch was checked against the build record at import (the runtime's guard)
    torch.ops.load_library(str(_LIBRARY))
    return torch.ops.flash_attn_2_cuda


@functools.cache
def _device_facts(index: int) -> tuple[int, int]:
    """(number of SMs, opt-in shared memory per block in bytes) of one GPU; checks its arch."""
    props = torch.cuda.get_device_properties(index)
    archs = built_archs()
    if archs and _archs.runnable(_archs.parse_arch_list(archs), props.major, props.minor)[0] is None:
        raise RuntimeError(
            f"flash_attn: GPU {index} ({props.name}, sm_{props.major}{props.minor}) is not among "
            f"the archs this wheel was built for ({', '.join(archs)}); {_REBUILD} "
            f"(e.g. BLACKWHEEL_ARCHS='{_archs.rebuild_hint(props.major, props.minor)}').")
    # The per-block opt-in limit is 1 KB below the per-SM capacity on sm_80..sm_120
    # (A100 163 KB, H100 227 KB, sm_86/89/120 99 KB = 101,376 B).
    return props.multi_processor_count, props.shared_memory_per_multiprocessor - 1024


def ops_for(t: torch.Tensor):
    """The op namespace, after checking that `t`'s GPU can run this wheel."""
    ops = _ops()
    if not t.is_cuda:
        raise RuntimeError("flash_attn: q, k, v must be CUDA tensors")
    _device_facts(t.device.index)
    return ops


def num_sms(t: torch.Tensor) -> int:
    return _device_facts(t.device.index)[0]


def max_smem_per_block(t: torch.Tensor) -> int:
    return _device_facts(t.device.index)[1]


def head_dims_built() -> list[int]:
    return list(_family().get("head_dims", []))


def check_head_dim(head_size: int) -> None:
    """The kernel head dim (32/64/96/128/192/256 tile) must be in the wheel."""
    built = head_dims_built()
    if not built:
        return
    tile = next((d for d in (32, 64, 96, 128, 192, 256) if head_size <= d), None)
    if tile is None:
        raise RuntimeError("FlashAttention forward only supports head dimension at most 256")
    if tile not in built:
        raise RuntimeError(
            f"flash_attn: head dim {head_size} runs on the hdim{tile} kernels, which this wheel "
            f"does not have (built: {', '.join(map(str, built))}); {_REBUILD}.")


def check_backward_built() -> None:
    directions = _family().get("directions", ["fwd", "bwd"])
    if "bwd" not in directions:
        raise RuntimeError(
            "flash_attn: this wheel was built without the backward kernels (forward only); "
            f"{_REBUILD} (BLACKWHEEL_FA_DIRECTIONS=fwd,bwd).")


def check_dtype(dtype: torch.dtype) -> None:
    name = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype)
    built = _family().get("dtypes", ["fp16", "bf16"])
    if name is not None and name not in built:
        raise RuntimeError(f"flash_attn: this wheel has no {dtype} kernels (built: "
                           f"{', '.join(built)}); {_REBUILD} (BLACKWHEEL_FA_DTYPES=fp16,bf16).")
