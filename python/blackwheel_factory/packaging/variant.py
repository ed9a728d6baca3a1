"""One name per build variant: the PEP 440 local version label of a wheel.

A wheel says what it runs on in its file name: ``0.1.0+cu130.sm120a``,
``2.8.3.post2+cu130.sm90a.sm120a``. The label is the CUDA major.minor the
binaries target and the archs in ascending order, so two arch builds of one
version never share a file name on an index, and ``pip install pkg==0.1.0``
still selects either (PEP 440: a public version specifier matches every local
label). Pure functions only.
"""
from __future__ import annotations

from typing import Iterable

from packaging.version import Version

from blackwheel_factory.plan.archs import Arch, parse_arch


def _arch(a: Arch | str) -> Arch:
    return a if isinstance(a, Arch) else parse_arch(str(a))


def local_label(cuda: str, archs: Iterable[Arch | str]) -> str:
    """'cu130.sm90a.sm120a' for CUDA '13.0' and archs 12.0a, 9.0a (+PTX adds '.ptx' to its arch)."""
    major, minor = (cuda.split(".") + ["0"])[:2]
    parsed = sorted({_arch(a) for a in archs}, key=lambda a: (a.number, a.suffix, a.ptx))
    if not parsed:
        raise ValueError("a build variant needs at least one arch")
    parts = [f"cu{int(major)}{int(minor)}"]
    parts += [f"sm{a.number}{a.suffix}" + ("ptx" if a.ptx else "") for a in parsed]
    return ".".join(parts)


def variant_version(public: str, cuda: str, archs: Iterable[Arch | str]) -> str:
    """'2.8.3.post2+cu130.sm120a': the public version plus the variant's local label."""
    v = Version(public)
    if v.local is not None:
        raise ValueError(f"{public!r} already has a local label")
    out = f"{v.public}+{local_label(cuda, archs)}"
    Version(out)  # PEP 440 check
    return out
