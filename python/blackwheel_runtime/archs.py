"""CUDA arch strings and which compiled code runs on which GPU. Pure.

Arch strings follow TORCH_CUDA_ARCH_LIST / vLLM conventions:
  "8.9"      sm_89 SASS; runs on 8.9 (and later 8.x minors, binary compatible)
  "9.0a"     sm_90a: arch-specific features (wgmma); runs on exactly 9.0
  "12.0a"    sm_120a: arch-specific (block-scaled mma for FP4/FP8); runs on exactly 12.0
  "12.0f"    family-specific (nvcc >= 12.9): runs on 12.0 and 12.1 (RTX 50xx, DGX Spark)
  "8.0+PTX"  sm_80 SASS plus compute_80 PTX (JIT on newer GPUs)

The factory adds what only a build needs (requested archs, validation against
nvcc, gencode flags) in blackwheel_factory/plan/archs.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

_ARCH_RE = re.compile(r"^(\d+)\.(\d)([af]?)(\+PTX)?$")


class ArchError(ValueError):
    """An arch list that cannot be honoured; the message names the fix."""


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
        capability major.minor (without PTX JIT): arch-specific ('a') code only on
        that exact capability, family ('f') and plain code on every minor of the
        major at or above it."""
        if self.suffix == "a":
            return (major, minor) == (self.major, self.minor)
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


def rebuild_hint(major: int, minor: int) -> str:
    """The arch to add for a GPU of capability major.minor ('12.0a', '8.6')."""
    return f"{major}.{minor}{'a' if major >= 9 else ''}"
