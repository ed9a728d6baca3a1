"""Typed Python API over ``torch.ops.blackwheel.*``.

Every function checks its inputs in Python first (TypeError for a wrong dtype
or type, ValueError for a wrong shape, layout or device), then checks that the
op's kernel set is in this wheel and has code for this GPU (RuntimeError,
``KernelUnavailableError``, naming the fix) and only then calls the op, so a
kernel that cannot run here is refused instead of crashing.

Kernel sets (``BLACKWHEEL_KERNELS``) and their ops:
  scaled_mm   cutlass_scaled_mm, cutlass_scaled_mm_supports_fp8   -> scaled_mm
  nvfp4       scaled_fp4_quant, cutlass_scaled_fp4_mm              -> scaled_fp4_quant, cutlass_fp4_gemm
  marlin_fp4  marlin_gemm, gptq_marlin_repack                      -> marlin_fp4_gemm (+ blackwheel.marlin_fp4)
  flash_attn  flash_attn_fwd                                       -> flash_attn_func
"""
from __future__ import annotations

import math

import torch

from blackwheel._dispatch import (  # noqa: F401  (KernelTarget ... are part of ops' API)
    FAMILY_ARCHS,
    FAMILY_LIMITS,
    FAMILY_OF_OP,
    KERNEL_SETS,
    _DEVICES,
    _READY,
    KernelTarget,
    KernelUnavailableError,
    _build_info,
    _device_facts,
    _device_info,
    _dtype,
    _is_compiling,
    _names,
    _op,
    _ready,
    _same_cuda_device,
    _tensor,
    kernel_target,
    resolve_target,
)
from blackwheel.marlin_fp4 import (
    ATOMIC_ADD_DEFAULT,
    FLOAT4_E2M1F_ID,
    MAX_BLOCKS_PER_SM,
    MarlinFP4Weight,
    gptq_marlin_repack,
    make_workspace,
    should_use_atomic_add,
)

__all__ = ["scaled_mm", "scaled_fp4_quant", "cutlass_fp4_gemm", "marlin_fp4_gemm", "flash_attn_func",
           "KernelUnavailableError", "KernelTarget", "kernel_target", "resolve_target"]

# products/kernel-pack.toml [family.flash_attn].head_dims, used when the build record has none
DEFAULT_FA_HEAD_DIMS = (64, 128)

_FP16_BF16 = (torch.float16, torch.bfloat16)
_FP8, _BF16, _FP16, _F32 = torch.float8_e4m3fn, torch.bfloat16, torch.float16, torch.float32


# ---------------------------------------------------------------------------
# the host path: what does not depend on the tensors is resolved once per device
# (_dispatch: the op handles and device facts; here: the Marlin workspaces)
# ---------------------------------------------------------------------------

# Marlin workspaces (zeroed locks; Marlin resets them after each call, so calls ordered
# on one stream share one; like vLLM's get_marlin_workspace, one per stream, so that
# two streams never race on the locks): (device index, stream id) -> locks, and device
# index -> the device's first one (what a traced graph uses)
_WORKSPACES: dict[tuple[int, int], torch.Tensor] = {}
_DEVICE_WORKSPACE: dict[int, torch.Tensor] = {}
_FA_HEAD_DIMS: tuple[int, ...] | None = None

# while tracing a device that never ran eagerly: locks for up to 1024 SMs
_TRACE_WORKSPACE_BLOCKS = 1024 * MAX_BLOCKS_PER_SM


def reset_caches() -> None:
    """Forget what the host path cached (tests; after CUDA_VISIBLE_DEVICES changes)."""
    global _FA_HEAD_DIMS
    _READY.clear()
    _DEVICES.clear()
    _WORKSPACES.clear()
    _DEVICE_WORKSPACE.clear()
    _FA_HEAD_DIMS = None


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def _out_dtype(out_dtype) -> None:
    if out_dtype not in _FP16_BF16:
        raise TypeError(f"out_dtype must be torch.bfloat16 or torch.float16, got {out_dtype}")


def _aligned16(x: torch.Tensor, name: str) -> None:
    # data_ptr() is an eager-only fact (fake and meta tensors have none to check)
    if x.device.type == "cuda" and not _is_compiling() and x.data_ptr() % 16:
        raise ValueError(f"{name} does not start on a 16-byte boundary (a slice?); pass {name}.clone()")


# ---------------------------------------------------------------------------
# FP8 scaled GEMM
# ---------------------------------------------------------------------------

def _check_scaled_mm(a, b, scale_a, scale_b, out_dtype, bias) -> tuple[int, int]:
    """scaled_mm's argument checks, each with its clear error; returns (M, N)."""
    _tensor(a, "a"), _tensor(b, "b"), _tensor(scale_a, "scale_a"), _tensor(scale_b, "scale_b")
    fp8_fix = "quantize with blackwheel.testing.quantize_fp8 (or scale and cast with .to(torch.float8_e4m3fn))"
    _dtype(a, "a", (torch.float8_e4m3fn,), fp8_fix)
    _dtype(b, "b", (torch.float8_e4m3fn,), fp8_fix)
    _out_dtype(out_dtype)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a and b must be 2-D (a [M, K], b [K, N]); got {tuple(a.shape)} and {tuple(b.shape)}"
                         f" (reshape a to [-1, K] first)")
    m, k = a.shape
    if b.shape[0] != k:
        raise ValueError(f"a [M, K] = {tuple(a.shape)} and b [K, N] = {tuple(b.shape)} do not multiply "
                         f"(b must be [K, N]: pass w.t() for a [N, K] weight)")
    n = b.shape[1]
    if k % 16 or n % 16:
        raise ValueError(f"K ({k}) and N ({n}) must be multiples of 16 for CUTLASS alignment; "
                         f"zero-pad the weight (and a's K) to the next multiple of 16")
    if not a.is_contiguous():
        raise ValueError("a must be row-major contiguous [M, K]; pass a.contiguous()")
    if b.stride(0) != 1 or b.stride(1) != k:         # b.t() contiguous, without making the view
        raise ValueError("b must be column-major [K, N], i.e. b.t() contiguous; pass w.t() for a contiguous "
                         "[N, K] weight w (or b.t().contiguous().t())")
    for s, name, want, kind in ((scale_a, "scale_a", (m, 1), "[M, 1] per-token"),
                                (scale_b, "scale_b", (1, n), "[1, N] per-channel")):
        _dtype(s, name, (torch.float32,), "pass {name}.float()")
        if not (s.numel() == 1 or tuple(s.shape) == want or (s.ndim == 1 and s.numel() == want[0] * want[1])):
            raise ValueError(f"{name} must have shape [1] (per-tensor) or {kind} = {list(want)}, "
                             f"got {tuple(s.shape)}")
        if not s.is_contiguous():
            raise ValueError(f"{name} must be contiguous; pass {name}.contiguous()")
    if bias is not None:
        _tensor(bias, "bias")
        if bias.dtype != out_dtype:
            raise TypeError(f"bias must have out_dtype ({out_dtype}), got {bias.dtype}; pass bias.to({out_dtype})")
        if tuple(bias.shape) != (n,):
            raise ValueError(f"bias must have shape [N] = [{n}], got {tuple(bias.shape)}")
        if not bias.is_contiguous():
            raise ValueError("bias must be contiguous; pass bias.contiguous()")
    _same_cuda_device("a", a, "b", b, "scale_a", scale_a, "scale_b", scale_b, "bias", bias)
    return m, n


def scaled_mm(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
              out_dtype: torch.dtype, bias: torch.Tensor | None = None) -> torch.Tensor:
    """FP8 GEMM with scales: ``out = ((a * scale_a) @ (b * scale_b) + bias).to(out_dtype)``.

    a        float8_e4m3fn [M, K], row-major (contiguous)
    b        float8_e4m3fn [K, N], column-major (``w.t()`` of a contiguous [N, K] weight)
    scale_a  float32 [1] (per-tensor) or [M, 1] (per-token)
    scale_b  float32 [1] (per-tensor) or [1, N] (per-channel)
    out_dtype torch.bfloat16 or torch.float16
    bias     out_dtype [N] or None
    K and N must be multiples of 16 (CUTLASS 16-byte alignment). Returns [M, N].
    """
    # Eager fast path: one expression accepts the common well-formed call (a strict
    # subset of what _check_scaled_mm accepts); anything else, and tracing, goes through
    # the checks, which raise the clear error or accept it. A few attribute reads.
    ok = False
    if not _is_compiling():
        try:
            m, k = a.shape
            k_b, n = b.shape
            d = a.get_device()
            ok = (a.dtype is _FP8 and b.dtype is _FP8 and (out_dtype is _BF16 or out_dtype is _FP16)
                  and k_b == k and k % 16 == 0 and n % 16 == 0 and a.is_cuda and a.is_contiguous()
                  and b.stride() == (1, k) and b.get_device() == d
                  and scale_a.dtype is _F32 and scale_a.is_contiguous() and scale_a.get_device() == d
                  and (scale_a.numel() == 1 or scale_a.shape == (m, 1))
                  and scale_b.dtype is _F32 and scale_b.is_contiguous() and scale_b.get_device() == d
                  and (scale_b.numel() == 1 or scale_b.shape == (1, n))
                  and (bias is None or (bias.dtype is out_dtype and bias.shape == (n,)
                                        and bias.is_contiguous() and bias.get_device() == d)))
        except (AttributeError, TypeError, ValueError):
            ok = False
    if ok:                                                   # eager on CUDA: the cached op, the pointers
        device = a.device
        op = _READY.get(("cutlass_scaled_mm", d)) or _ready("cutlass_scaled_mm", device)
        if (a.data_ptr() | b.data_ptr()) & 15:
            _aligned16(a, "a"), _aligned16(b, "b")
    else:
        m, n = _check_scaled_mm(a, b, scale_a, scale_b, out_dtype, bias)
        device = a.device
        op = _op("cutlass_scaled_mm", device)
        _aligned16(a, "a"), _aligned16(b, "b")              # eager CUDA only (it checks)
    out = torch.empty((m, n), dtype=out_dtype, device=device)
    if m == 0:
        return out
    op(out, a, b, scale_a, scale_b, bias)
    return out


def scaled_mm_supports_fp8(capability: int | None = None, device: torch.device | str | None = None) -> bool:
    """vLLM's cutlass_scaled_mm_supports_fp8: whether this build has an FP8 scaled_mm
    for compute capability ``capability`` (e.g. 90; default: the device's)."""
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    if capability is None:
        major, minor = torch.cuda.get_device_capability(dev)
        capability = major * 10 + minor
    if not isinstance(capability, int):
        raise TypeError(f"capability must be an int such as 90 or 120, got {capability!r}")
    return bool(_op("cutlass_scaled_mm_supports_fp8", dev)(capability))


# ---------------------------------------------------------------------------
# NVFP4 (SM_120 only)
# ---------------------------------------------------------------------------

def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _scalar_f32(x, name: str, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, (int, float)):
        # a fill kernel, not a host-to-device copy: allowed inside CUDA-graph capture
        return torch.full((1,), float(x), dtype=torch.float32, device=device)
    _tensor(x, name)
    _dtype(x, name, (torch.float32,), "pass {name}.float()")
    if x.numel() != 1:
        raise ValueError(f"{name} must hold one value, got shape {tuple(x.shape)}")
    return x.reshape(1)


def scaled_fp4_quant(x: torch.Tensor, global_scale: torch.Tensor, *,
                     swizzled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize x to NVFP4 (SM_120 only).

    x            float16/bfloat16 [..., K], K % 16 == 0 (flattened to [M, K])
    global_scale float32, one value; vLLM's convention: ``x ~= e2m1 * block_scale /
                 global_scale``, typically ``448 * 6 / x.abs().max()``
    Returns (packed uint8 [M, K // 2] (element 2i in the low nibble),
             block_scales float8_e4m3fn: swizzled=True -> 128x4-swizzled
             [round_up(M, 128), round_up(K // 16, 4)] (what cutlass_fp4_gemm takes);
             swizzled=False -> linear [M, K // 16]).
    """
    _tensor(x, "x")
    _dtype(x, "x", _FP16_BF16, "cast with x.to(torch.bfloat16)")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last dim, got shape {tuple(x.shape)}")
    k = x.shape[-1]
    if k % 16:
        raise ValueError(f"the last dim of x ({k}) must be a multiple of 16 (NVFP4 group size); zero-pad it")
    gs = _scalar_f32(global_scale, "global_scale", x.device)
    x2 = (x if x.ndim == 2 else x.reshape(-1, k)).contiguous()
    device = _same_cuda_device("x", x2, "global_scale", gs)
    op = _op("scaled_fp4_quant", device)
    packed, sf = op(x2, gs, bool(swizzled))
    # swizzled: int32 [round_up(M, 128), round_up(K // 16, 4) // 4] viewed as bytes is
    # already [round_up(M, 128), round_up(K // 16, 4)]
    return packed, sf.view(torch.float8_e4m3fn)


def cutlass_fp4_gemm(a: torch.Tensor, b: torch.Tensor, a_sf: torch.Tensor, b_sf: torch.Tensor,
                     alpha: torch.Tensor | float, out_dtype: torch.dtype) -> torch.Tensor:
    """NVFP4 x NVFP4 GEMM (SM_120 only): ``out = alpha * A @ B.T``.

    a     uint8 [M, K // 2] packed e2m1, b uint8 [N, K // 2] (weight rows); K % 32 == 0, N % 32 == 0
    a_sf  float8_e4m3fn swizzled [round_up(M, 128), round_up(K // 16, 4)] (from scaled_fp4_quant)
    b_sf  float8_e4m3fn swizzled [round_up(N, 128), round_up(K // 16, 4)]
    alpha float32 (one value): 1 / (global_scale_a * global_scale_b)
    Returns out_dtype (bf16/fp16) [M, N].
    """
    for t, name in ((a, "a"), (b, "b"), (a_sf, "a_sf"), (b_sf, "b_sf")):
        _tensor(t, name)
    _dtype(a, "a", (torch.uint8,), "pass packed e2m1 (two per byte) as from scaled_fp4_quant")
    _dtype(b, "b", (torch.uint8,), "pass packed e2m1 (two per byte) as from scaled_fp4_quant")
    _out_dtype(out_dtype)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a and b must be 2-D packed [rows, K // 2]; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} have different K // 2; b is [N, K // 2]")
    m, n, k = a.shape[0], b.shape[0], a.shape[1] * 2
    if k % 32 or n % 32:
        raise ValueError(f"K ({k}) and N ({n}) must be multiples of 32 for the SM120 FP4 GEMM; zero-pad them")
    sfs = []
    for sf, name, rows in ((a_sf, "a_sf", m), (b_sf, "b_sf", n)):
        if sf.dtype == torch.uint8:
            sf = sf.view(torch.float8_e4m3fn)
        _dtype(sf, name, (torch.float8_e4m3fn,))
        want = (_round_up(rows, 128), _round_up(k // 16, 4))
        if tuple(sf.shape) != want:
            raise ValueError(f"{name} must be the 128x4-swizzled scales of shape {list(want)}, got "
                             f"{tuple(sf.shape)} (use the scales scaled_fp4_quant returns, or "
                             f"blackwheel.testing.swizzle_scales)")
        sfs.append(sf.contiguous())
    al = _scalar_f32(alpha, "alpha", a.device if isinstance(alpha, (int, float)) else None)
    device = _same_cuda_device("a", a, "b", b, "a_sf", sfs[0], "b_sf", sfs[1], "alpha", al)
    op = _op("cutlass_scaled_fp4_mm", device)
    out = torch.empty((m, n), dtype=out_dtype, device=device)
    if m == 0:
        return out
    op(out, a.contiguous(), b.contiguous(), sfs[0], sfs[1], al)
    return out


# ---------------------------------------------------------------------------
# FP4 Marlin (weight-only FP4, fp16/bf16 activations)
# ---------------------------------------------------------------------------

def _marlin_workspace(device: torch.device) -> torch.Tensor:
    """The Marlin workspace of the current stream on ``device`` (made on its first
    eager call, then kept: a captured CUDA graph keeps using it). While tracing: the
    device's first workspace, or, for a device that never ran eagerly, a fresh one (a
    zero fill in the graph)."""
    if device.type == "meta":
        return torch.zeros(MAX_BLOCKS_PER_SM, dtype=torch.int32, device=device)
    if _is_compiling():
        ws = _DEVICE_WORKSPACE.get(device.index)
        if ws is None:
            return torch.zeros(_TRACE_WORKSPACE_BLOCKS, dtype=torch.int32, device=device)
        return ws
    key = (device.index, torch._C._cuda_getCurrentStream(device.index)[0])
    ws = _WORKSPACES.get(key)
    if ws is None:
        if torch.cuda.is_current_stream_capturing():
            # a fill recorded into a graph has not run at capture time: never make the
            # locks here; the capture stream shares the device's (zeroed, eager) ones
            ws = _DEVICE_WORKSPACE.get(device.index)
            if ws is None:
                raise RuntimeError("marlin_fp4_gemm: CUDA-graph capture before any eager call on this device; "
                                   "warm up with one eager call before capturing (or pass workspace="
                                   "blackwheel.marlin_fp4.make_workspace(device))")
        else:
            ws = make_workspace(device, _device_info(device)[2])
            _DEVICE_WORKSPACE.setdefault(device.index, ws)
        _WORKSPACES[key] = ws
    return ws


def _check_marlin_fp4_gemm(x, weight, workspace) -> torch.device:
    """marlin_fp4_gemm's argument checks, each with its clear error; returns the device."""
    _tensor(x, "x")
    if not isinstance(weight, MarlinFP4Weight):
        raise TypeError("weight must be a MarlinFP4Weight: prepare it with blackwheel.marlin_fp4."
                        "prepare_nvfp4_weight or prepare_mxfp4_weight")
    _dtype(x, "x", _FP16_BF16, "cast with x.to(torch.bfloat16)")
    if x.dtype != weight.act_dtype:
        raise TypeError(f"x is {x.dtype} but the weight was prepared for {weight.act_dtype} activations "
                        f"(the scale encoding depends on it); cast x or prepare the weight with "
                        f"act_dtype={x.dtype}")
    size_k = weight.size_k
    if x.ndim < 1 or x.shape[-1] != size_k:
        raise ValueError(f"x must be [..., K] with K = {size_k}, got {tuple(x.shape)}")
    device = _same_cuda_device("x", x, "qweight", weight.qweight, "scales", weight.scales,
                               "global_scale", weight.global_scale, "bias", weight.bias)
    if workspace is not None:
        _tensor(workspace, "workspace")
        _dtype(workspace, "workspace", (torch.int32,), "use blackwheel.marlin_fp4.make_workspace(device)")
    return device


def marlin_fp4_gemm(x: torch.Tensor, weight: MarlinFP4Weight, *, workspace: torch.Tensor | None = None,
                    use_fp32_reduce: bool = True, use_atomic_add: bool | None = None) -> torch.Tensor:
    """``x @ W.T (+ bias)`` for an FP4 weight W [N, K] prepared by
    ``blackwheel.marlin_fp4.prepare_nvfp4_weight`` / ``prepare_mxfp4_weight``.

    x               weight.act_dtype (float16/bfloat16; MXFP4: bfloat16) [..., K]
    workspace       int32 zeroed locks (blackwheel.marlin_fp4.make_workspace); default one per device
    use_fp32_reduce reduce the K-split partial sums in fp32 (vLLM's default, True)
    use_atomic_add  reduce with atomicAdd into the output; None: the call heuristic of
                    blackwheel.marlin_fp4.should_use_atomic_add (vLLM 0.33's gate: N < 2048 and
                    K >= 2048, not bf16 before sm_90; on by default only where it measured faster)
    Returns act_dtype [..., N].
    """
    # Eager fast path (a strict subset of what the checks accept): the weight's tensors
    # were found on one CUDA device when it was made (weight._device), so one compare
    # checks them all; anything else, and tracing, goes through the checks.
    ok = False
    if workspace is None and not _is_compiling():
        try:
            d = weight._device
            ok = (d is not None and x.dtype is weight.act_dtype and (x.dtype is _BF16 or x.dtype is _FP16)
                  and x.get_device() == d and x.is_cuda
                  and x.shape[-1] == weight.size_k and type(weight) is MarlinFP4Weight)
        except (AttributeError, IndexError):
            ok = False
    if ok:
        device = x.device
        op = _READY.get(("marlin_gemm", d)) or _ready("marlin_gemm", device)
    else:
        device = _check_marlin_fp4_gemm(x, weight, workspace)
        op = _op("marlin_gemm", device)
    size_k, size_n, padded_k, padded_n = weight.size_k, weight.size_n, weight.padded_k, weight.padded_n
    flat = x.ndim == 2
    x2 = x if flat else x.reshape(-1, size_k)
    m = x2.shape[0]
    if m == 0:
        return x.new_empty((*x.shape[:-1], size_n))
    if padded_k != size_k:
        x2 = torch.nn.functional.pad(x2, (0, padded_k - size_k))
    x2 = x2.contiguous()
    if workspace is None:
        workspace = _WORKSPACES.get((d, torch._C._cuda_getCurrentStream(d)[0])) if ok else None
        if workspace is None:
            workspace = _marlin_workspace(device)
    if use_atomic_add is None:
        # the shape gate first: the capability is only needed where it can say yes
        use_atomic_add = False
        if ATOMIC_ADD_DEFAULT and device.type == "cuda":
            info = _device_info(device)
            use_atomic_add = info is not None and should_use_atomic_add(m, padded_n, padded_k, info[0], x.dtype)
    out = op(x2, None, weight.qweight, weight.bias, weight.scales, None, weight.global_scale, None,
             workspace, FLOAT4_E2M1F_ID, m, padded_n, padded_k, bool(use_atomic_add), bool(use_fp32_reduce),
             False)
    if padded_n != size_n:
        out = out[:, :size_n].contiguous()
    return out if flat else out.reshape((*x.shape[:-1], size_n))


# ---------------------------------------------------------------------------
# FlashAttention-2 forward
# ---------------------------------------------------------------------------

def _fa_head_dims() -> tuple[int, ...]:
    global _FA_HEAD_DIMS
    if _FA_HEAD_DIMS is None:
        info = _build_info() or {}
        dims = (info.get("kernels", {}).get("flash_attn") or {}).get("head_dims")
        _FA_HEAD_DIMS = tuple(int(d) for d in dims) if dims else DEFAULT_FA_HEAD_DIMS
    return _FA_HEAD_DIMS


def _check_flash_attn(q, k, v, softmax_scale):
    """flash_attn_func's argument checks, each with its clear error; returns (op, softmax_scale)."""
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        _tensor(t, name)
        _dtype(t, name, _FP16_BF16, "cast with {name}.to(torch.bfloat16)")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be 4-D [batch, seqlen, heads, head_dim]; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    b, sq, hq, d = q.shape
    if k.shape != v.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape")
    if k.shape[0] != b or k.shape[3] != d:
        raise ValueError(f"k/v [B, Sk, Hkv, D] = {tuple(k.shape)} do not match q [B, Sq, Hq, D] = {tuple(q.shape)}")
    hk = k.shape[2]
    if hk == 0 or hq % hk:
        raise ValueError(f"query heads ({hq}) must be a multiple of kv heads ({hk})")
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dim; pass {name}.contiguous()")
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(d)
    if not isinstance(softmax_scale, (int, float)) or not math.isfinite(softmax_scale):
        raise TypeError(f"softmax_scale must be a finite float, got {softmax_scale!r}")
    device = _same_cuda_device("q", q, "k", k, "v", v)
    op = _op("flash_attn_fwd", device)
    # while tracing, the dims cached by an eager call (the C++ op checks them too)
    dims = _FA_HEAD_DIMS if _is_compiling() else _fa_head_dims()
    if dims is not None and d not in dims:
        raise ValueError(f"head_dim {d} is not built into this wheel (built: {', '.join(map(str, dims))}); "
                         f"rebuild with BLACKWHEEL_FA_HEAD_DIMS={','.join(map(str, sorted({*dims, d})))}")
    return op, softmax_scale


def flash_attn_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
                    causal: bool = False, *, return_lse: bool = False):
    """FlashAttention-2 forward.

    q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D]; float16 or bfloat16 (all the same);
    last dim contiguous; Hq % Hkv == 0 (GQA/MQA); D one of the built head dims
    (default 64, 128). softmax_scale defaults to 1/sqrt(D). causal masks
    bottom-right aligned (query i sees keys j <= i + Sk - Sq).
    Returns out [B, Sq, Hq, D] (q's dtype), or (out, softmax_lse fp32 [B, Hq, Sq])
    with return_lse=True.
    """
    # Eager fast path (a strict subset of what _check_flash_attn accepts); anything else,
    # and tracing, goes through the checks, which raise the clear error or accept it.
    ok = False
    if not _is_compiling():
        try:
            b, sq, hq, d = q.shape
            ks = k.shape
            dev = q.get_device()
            dt = q.dtype
            ok = ((dt is _BF16 or dt is _FP16) and k.dtype is dt and v.dtype is dt and q.is_cuda
                  and ks == v.shape and len(ks) == 4 and ks[0] == b and ks[3] == d and ks[2] > 0
                  and hq % ks[2] == 0 and q.stride()[-1] == 1 and k.stride()[-1] == 1 and v.stride()[-1] == 1
                  and k.get_device() == dev and v.get_device() == dev
                  and d in (_FA_HEAD_DIMS or _fa_head_dims())
                  and (softmax_scale is None or (type(softmax_scale) is float and math.isfinite(softmax_scale))))
        except (AttributeError, TypeError, ValueError):
            ok = False
    if ok:
        op = _READY.get(("flash_attn_fwd", dev)) or _ready("flash_attn_fwd", q.device)
        if softmax_scale is None:
            softmax_scale = 1.0 / math.sqrt(d)
    else:
        op, softmax_scale = _check_flash_attn(q, k, v, softmax_scale)
    out, lse = op(q, k, v, None, float(softmax_scale), bool(causal))
    return (out, lse) if return_lse else out
