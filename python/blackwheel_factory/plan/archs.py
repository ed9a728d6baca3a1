"""CUDA arch arithmetic: parse, validate, intersect per kernel family, and decide
which compiled code runs on which GPU. Pure functions only.

Arch strings follow TORCH_CUDA_ARCH_LIST / vLLM conventions:
  "8.9"      sm_89 SASS; runs on 8.9 (and later 8.x minors, binary compatible)
  "9.0a"     sm_90a: arch-specific features (wgmma); runs on exactly 9.0
  "12.0a"    sm_120a: arch-specific (block-scaled mma for FP4/FP8); runs on exactly 12.0
  "12.0f"    family-specific (nvcc >= 12.9): runs on 12.0 and 12.1 (RTX 50xx, DGX Spark)
  "8.0+PTX"  sm_80 SASS plus compute_80 PTX (JIT on newer GPUs)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

_ARCH_RE = re.compile(r"^(\d+)\.(\d)([af]?)(\+PTX)?$")


class ArchError(ValueError):
    """An arch list the build cannot honour; the message names the fix."""


@dataclass(frozen=True, order=True)
class Arch:
    major: int
    minor: int
    suffix: str = ""      # "", "a" or "f"
    ptx: bool = False

    @property
    def number(self) -> int:
        """120 for 12.0a."""
        return self.major * 10 + self.minor

    @property
    def sm(self) -> str:
        """'sm_120a'."""
        return f"sm_{self.number}{self.suffix}"

    @property
    def compute(self) -> str:
        return f"compute_{self.number}{self.suffix}"

    @property
    def base(self) -> str:
        """'12.0a' (without +PTX)."""
        return f"{self.major}.{self.minor}{self.suffix}"

    def __str__(self) -> str:
        return self.base + ("+PTX" if self.ptx else "")

    def gencode(self) -> list[str]:
        """nvcc flags for this target."""
        flags = [f"-gencode=arch={self.compute},code={self.sm}"]
        if self.ptx:
            flags.append(f"-gencode=arch={self.compute},code={self.compute}")
        return flags

    def runs_on(self, major: int, minor: int) -> bool:
        """Whether SASS compiled for this target executes on a GPU of compute
        capability major.minor (without PTX JIT)."""
        if self.suffix == "a":
            return (major, minor) == (self.major, self.minor)
        if self.suffix == "f":
            return major == self.major and minor >= self.minor
        return major == self.major and minor >= self.minor

    def ptx_runs_on(self, major: int, minor: int) -> bool:
        """Whether this target's PTX (if shipped) can be JIT-compiled for the GPU."""
        return self.ptx and (major * 10 + minor) >= self.number


def parse_arch(text: str) -> Arch:
    t = text.strip()
    m = _ARCH_RE.match(t)
    if not m:
        hint = ""
        m2 = re.match(r"^sm_(\d+)(\d)([af]?)$", t)
        if m2:
            hint = f" (write it as {m2.group(1)}.{m2.group(2)}{m2.group(3)})"
        raise ArchError(
            f"'{text}' is not an arch: use the TORCH_CUDA_ARCH_LIST form, e.g. 12.0a, 9.0a, 8.9{hint}")
    return Arch(int(m.group(1)), int(m.group(2)), m.group(3), bool(m.group(4)))


def parse_arch_list(text: str | Sequence[str]) -> list[Arch]:
    """Parse '12.0a;9.0a', '12.0a 9.0a', '12.0a,9.0a' or a list. Duplicates dropped,
    order kept."""
    if isinstance(text, str):
        items = [t for t in re.split(r"[;,\s]+", text) if t]
    else:
        items = list(text)
    if not items:
        raise ArchError("empty arch list: give at least one arch, e.g. BLACKWHEEL_ARCHS=12.0a")
    out: list[Arch] = []
    for item in items:
        a = parse_arch(item)
        if a not in out:
            out.append(a)
    return out


def requested_archs(env: dict, cmake_value: str | None, default: Sequence[str]) -> tuple[list[Arch], str]:
    """The requested targets and where they came from. Precedence:
    -C cmake.define.BLACKWHEEL_ARCHS > $BLACKWHEEL_ARCHS > $TORCH_CUDA_ARCH_LIST > config default."""
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
    return parse_arch_list(list(default)), "blackwheel.toml [build] default_archs"


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


def runnable(archs: Iterable[Arch], major: int, minor: int) -> tuple[Arch | None, str]:
    """Which built target a GPU of capability major.minor would execute, and how:
    ('sass'), ('ptx-jit'), or (None, reason)."""
    archs = list(archs)
    sass = [a for a in archs if a.runs_on(major, minor)]
    if sass:
        # prefer the most specific (a > f > plain) and the highest number
        rank = {"a": 2, "f": 1, "": 0}
        best = max(sass, key=lambda a: (a.number, rank[a.suffix]))
        return best, "sass"
    ptx = [a for a in archs if a.ptx_runs_on(major, minor)]
    if ptx:
        return max(ptx, key=lambda a: a.number), "ptx-jit"
    built = ", ".join(str(a) for a in archs) or "none"
    return None, f"built for {built}; no code runs on compute capability {major}.{minor}"
