"""Error metrics and tolerance rules shared by the smoke command, the GPU tests
and the reference unit tests.

A comparison is elementwise: ``|out - ref| <= tol`` where ``tol`` is a tensor
built by the case from the dtypes and the magnitudes involved (see cases.py
for each rule and why). max_rel is ``max|out - ref| / max|ref|``: a readable
summary, not the pass criterion.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the machine epsilon: the relative error of one round-to-nearest
    (2**-8 for bf16, 2**-11 for fp16, 2**-24 for fp32)."""
    return torch.finfo(dtype).eps / 2


@dataclass
class Check:
    """One compared quantity of a case."""
    label: str
    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return {"label": self.label, "max_abs": self.max_abs, "max_rel": self.max_rel,
                "passed": self.passed, "detail": self.detail}


def compare(label: str, out: torch.Tensor, ref: torch.Tensor, tol: torch.Tensor | float,
            where: torch.Tensor | None = None) -> Check:
    """Elementwise check |out - ref| <= tol (over ``where`` if given). Non-finite
    values in out fail unless ref has the identical value there."""
    if tuple(out.shape) != tuple(ref.shape):
        return Check(label, float("inf"), float("inf"), False,
                     f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    o = out.detach().float()
    r = ref.detach().float().to(o.device)
    t = tol if isinstance(tol, float) else tol.detach().float().to(o.device)
    same_nonfinite = (~torch.isfinite(r)) & (o == r)
    m = torch.ones_like(o, dtype=torch.bool) if where is None else where.to(o.device)
    finite = m & ~same_nonfinite
    if bool((m & ~torch.isfinite(r) & ~same_nonfinite).any()):
        return Check(label, float("inf"), float("inf"), False, "non-finite value differs from the reference")
    diff = torch.where(finite, (o - torch.where(finite, r, torch.zeros_like(r))).abs(), torch.zeros_like(o))
    diff = torch.nan_to_num(diff, nan=float("inf"))
    bad = diff > t
    max_abs = float(diff.max()) if diff.numel() else 0.0
    ref_max = float(torch.where(finite, r.abs(), torch.zeros_like(r)).max()) if r.numel() else 0.0
    max_rel = max_abs / ref_max if ref_max > 0 else (0.0 if max_abs == 0 else float("inf"))
    n_bad = int(bad.sum())
    detail = "" if n_bad == 0 else f"{n_bad}/{int(finite.sum())} elements out of tolerance"
    return Check(label, max_abs, max_rel, n_bad == 0, detail)


@dataclass
class CaseOutcome:
    """What running one case produced."""
    status: str                 # "pass", "fail", "skip"
    path: str                   # which built target ran, or why none did
    checks: list[Check] = field(default_factory=list)
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "fail"
