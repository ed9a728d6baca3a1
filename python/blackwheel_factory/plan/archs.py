"""CUDA arch arithmetic for builds: requested archs, validation against what the
project accepts and nvcc can target, per-family intersection, gencode flags. Pure.
Parsing and "which code runs on which GPU" are the runtime's
(blackwheel_runtime/archs.py, shipped in every product wheel), re-exported here.

Arch strings follow TORCH_CUDA_ARCH_LIST / vLLM conventions:
  "8.9"      sm_89 SASS; runs on 8.9 (and later 8.x minors, binary compatible)
  "9.0a"     sm_90a: arch-specific features (wgmma); runs on exactly 9.0
  "12.0a"    sm_120a: arch-specific (block-scaled mma for FP4/FP8); runs on exactly 12.0
  "12.0f"    family-specific (nvcc >= 12.9): runs on 12.0 and 12.1 (RTX 50xx, DGX Spark)
  "8.0+PTX"  sm_80 SASS plus compute_80 PTX (JIT on newer GPUs)
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

# the runtime's half (parse, runs on a GPU, which target runs): one implementation,
# shipped in every product wheel; the factory adds what only a build needs
from blackwheel_runtime.archs import (  # noqa: F401  (re-exported for the factory)
    Arch,
    ArchError,
    parse_arch,
    parse_arch_list,
    runnable,
)


def requested_archs(env: dict, cmake_value: str | None, default: Sequence[str],
                    default_origin: str = "the product's default-archs") -> tuple[list[Arch], str]:
    """The requested targets and where they came from. Precedence:
    -C cmake.define.BLACKWHEEL_ARCHS > $BLACKWHEEL_ARCHS > $TORCH_CUDA_ARCH_LIST > the
    product file's default-archs (default_origin names it)."""
    if cmake_value and cmake_value.replace(",", ";") == (env.get("BLACKWHEEL_ARCHS") or "").replace(",", ";"):
        cmake_value = None   # pyproject.toml forwards the env var as the define: name the env var
    for origin, value in (
        ("-C cmake.define.BLACKWHEEL_ARCHS", cmake_value),
        ("BLACKWHEEL_ARCHS", env.get("BLACKWHEEL_ARCHS")),
        ("TORCH_CUDA_ARCH_LIST", env.get("TORCH_CUDA_ARCH_LIST")),
    ):
        if value and value.strip():
            try:
                return parse_arch_list(value), origin
            except ArchError as e:
                raise ArchError(f"{origin}={value!r}: {e}") from None
    return parse_arch_list(list(default)), default_origin


def nvcc_supported(list_gpu_arch_output: str) -> set[int]:
    """Arch numbers from `nvcc --list-gpu-arch` (lines like 'compute_120')."""
    return {int(m) for m in re.findall(r"compute_(\d+)", list_gpu_arch_output)}


def validate(archs: Iterable[Arch], accepted: Sequence[str], nvcc_archs: set[int] | None,
             nvcc_version: tuple[int, int] | None) -> None:
    """Raise ArchError for an arch the project does not accept or nvcc cannot target."""
    accepted_set = {parse_arch(a).base for a in accepted}
    for a in archs:
        if a.base not in accepted_set:
            near = sorted(x for x in accepted_set if x.startswith(f"{a.major}.{a.minor}"))
            fix = f"use {' or '.join(near)}" if near else f"accepted: {', '.join(sorted(accepted_set))}"
            raise ArchError(f"arch {a} is not accepted by blackwheel ({fix})")
        if a.suffix == "a" and a.number < 90:
            raise ArchError(f"arch {a}: arch-specific 'a' targets exist from 9.0 on")
        if a.suffix == "f":
            if a.number < 100:
                raise ArchError(f"arch {a}: family 'f' targets exist from 10.0 on")
            if nvcc_version is not None and nvcc_version < (12, 9):
                raise ArchError(f"arch {a}: family targets need nvcc >= 12.9 "
                                f"(this nvcc is {nvcc_version[0]}.{nvcc_version[1]}); use {a.major}.{a.minor}a")
        if a.ptx and a.suffix:
            raise ArchError(f"arch {a}: +PTX of an arch-specific target cannot run elsewhere; drop +PTX")
        if nvcc_archs is not None and a.number not in nvcc_archs:
            raise ArchError(
                f"arch {a}: this nvcc cannot compile for {a.sm} (nvcc --list-gpu-arch lists "
                f"{', '.join(f'compute_{n}' for n in sorted(nvcc_archs))}); use a newer CUDA toolkit")


def family_archs(family: Sequence[str], requested: Iterable[Arch]) -> list[Arch]:
    """Requested targets this family's code supports (exact base match; +PTX kept
    as requested). Keeps the requested order."""
    fam = {parse_arch(a).base for a in family}
    return [a for a in requested if a.base in fam]


def gencode_flags(archs: Iterable[Arch]) -> list[str]:
    flags: list[str] = []
    for a in archs:
        flags.extend(a.gencode())
    return flags


def cmake_cuda_architectures(archs: Iterable[Arch]) -> str:
    """CMake CUDA_ARCHITECTURES value: '120a;90a' (with -real/-virtual for PTX)."""
    out = []
    for a in archs:
        n = f"{a.number}{a.suffix}"
        out.append(n if a.ptx else f"{n}-real")
    return ";".join(out)
