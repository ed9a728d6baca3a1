"""Reference for ``gptq_marlin_repack`` (4-bit, 16-bit activations) in plain torch:
a port of vLLM's test-side ``marlin_weights`` (marlin_utils_test.py), which vLLM's
own tests compare bit for bit with the CUDA repack.

Input: GPTQ layout int32 [K // 8, N] (code of element (k, n) in bits 4*(k % 8) of
word [k // 8, n]). Output: int32 [K // 16, N * 2].
"""
from __future__ import annotations

import torch

TILE = 16


def weight_perm_4bit() -> torch.Tensor:
    """The 1024-entry permutation Marlin applies within each 16x64 tile group."""
    perm: list[int] = []
    for i in range(32):
        perm1: list[int] = []
        col = i // 4
        for block in (0, 1):
            for row in (2 * (i % 4), 2 * (i % 4) + 1, 2 * (i % 4 + 4), 2 * (i % 4 + 4) + 1):
                perm1.append(16 * row + col + 8 * block)
        for j in range(4):
            perm.extend(p + 256 * j for p in perm1)
    interleave = torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])
    return torch.tensor(perm).reshape(-1, 8)[:, interleave].reshape(-1)


def unpack_gptq(q: torch.Tensor) -> torch.Tensor:
    """int32 [K // 8, N] -> int64 codes [K, N]."""
    shifts = torch.arange(8, device=q.device, dtype=torch.int64) * 4
    codes = (q.to(torch.int64).unsqueeze(1) >> shifts.view(1, 8, 1)) & 0xF   # [K//8, 8, N]
    return codes.reshape(q.shape[0] * 8, q.shape[1])


def marlin_repack_reference(q: torch.Tensor, size_k: int, size_n: int) -> torch.Tensor:
    if q.dtype != torch.int32 or tuple(q.shape) != (size_k // 8, size_n):
        raise ValueError(f"expected int32 [{size_k // 8}, {size_n}], got {q.dtype} {tuple(q.shape)}")
    if size_k % TILE or size_n % 64:
        raise ValueError(f"size_k must be a multiple of 16 and size_n of 64, got {size_k}, {size_n}")
    w = unpack_gptq(q)                                                    # [K, N]
    w = w.reshape(size_k // TILE, TILE, size_n // TILE, TILE).permute(0, 2, 1, 3)
    w = w.reshape(size_k // TILE, size_n * TILE)
    perm = weight_perm_4bit().to(w.device)
    w = w.reshape(-1, perm.numel())[:, perm].reshape(w.shape)
    # pack 8 codes per int32: word c holds permuted columns 8c + i in bits 4i
    cols = w.shape[1] // 8
    out = torch.zeros(w.shape[0], cols, dtype=torch.int64, device=w.device)
    for i in range(8):
        out |= w[:, i::8] << (4 * i)
    # to int32 with wrap-around (the top nibble may set the sign bit)
    out = torch.where(out >= 2 ** 31, out - 2 ** 32, out)
    return out.to(torch.int32)
