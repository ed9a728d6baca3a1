"""Configuration -> build plan: which kernel families are built, for which archs,
and which are skipped and why. Pure: the caller passes the environment and what
nvcc reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from blackwheel_factory.plan import archs as A
from blackwheel_factory.inputs.products import Config


class PlanError(ValueError):
    """The requested build cannot be planned; the message names the fix."""


@dataclass(frozen=True)
class FamilyPlan:
    name: str
    archs: tuple[A.Arch, ...]
    abi: str
    sources: tuple[str, ...]
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    requested_archs: tuple[A.Arch, ...]
    archs_origin: str
    kernels_origin: str
    families: tuple[FamilyPlan, ...]
    skipped: tuple[tuple[str, str], ...]   # (family, reason)

    @property
    def sources(self) -> list[str]:
        out: list[str] = []
        for f in self.families:
            for s in f.sources:
                if s not in out:
                    out.append(s)
        return out

    def family(self, name: str) -> FamilyPlan | None:
        return next((f for f in self.families if f.name == name), None)


def _split(value: str) -> list[str]:
    return [t for t in re.split(r"[;,\s]+", value) if t]


def requested_kernels(env: Mapping[str, str], cmake_value: str | None,
                      config: Config) -> tuple[list[str], str, bool]:
    """(names, origin, explicit). explicit=True when the user named them."""
    if cmake_value and cmake_value.replace(",", ";") == (env.get("BLACKWHEEL_KERNELS") or "").replace(",", ";"):
        cmake_value = None   # pyproject.toml forwards the env var as the define: name the env var
    for origin, value in (("-C cmake.define.BLACKWHEEL_KERNELS", cmake_value),
                          ("BLACKWHEEL_KERNELS", env.get("BLACKWHEEL_KERNELS"))):
        if value and value.strip():
            names = _split(value)
            if names == ["all"]:
                return list(config.default_kernels), origin, False
            unknown = [n for n in names if n not in config.kernels]
            if unknown:
                raise PlanError(
                    f"{origin}={value!r}: unknown kernel set(s) {', '.join(unknown)}; "
                    f"choose from {', '.join(config.kernels)} (or 'all'; the [family.*] "
                    f"tables of {config.declared_in})")
            return list(dict.fromkeys(names)), origin, True
    return list(config.default_kernels), f"every [family.*] of {config.declared_in}", False


def _head_dims(env: Mapping[str, str], fam) -> list[int]:
    available = list(fam.extra.get("available_head_dims", []))
    value = env.get("BLACKWHEEL_FA_HEAD_DIMS")
    if value and value.strip():
        try:
            dims = sorted({int(x) for x in _split(value)})
        except ValueError:
            raise PlanError(f"BLACKWHEEL_FA_HEAD_DIMS={value!r}: give integers, e.g. 64,128") from None
        bad = [d for d in dims if d not in available]
        if bad:
            raise PlanError(f"BLACKWHEEL_FA_HEAD_DIMS: head dim(s) {bad} not available; "
                            f"choose from {available}")
        return dims
    return sorted(fam.extra.get("head_dims", []))


def _choice(env: Mapping[str, str], fam, key: str, var: str, what: str) -> list[str]:
    """A family's list option (fam.extra[key], chosen from available_<key>), or the
    subset the environment variable `var` names, in the family's order."""
    available = list(fam.extra.get(f"available_{key}", fam.extra.get(key, [])))
    value = env.get(var)
    if value and value.strip():
        chosen = list(dict.fromkeys(_split(value)))
        bad = [d for d in chosen if d not in available]
        if bad:
            raise PlanError(f"{var}={value!r}: unknown {what}(s) {bad}; choose from {available}")
        return [d for d in available if d in chosen]
    return list(fam.extra.get(key, available))


def _directions(env: Mapping[str, str], fam) -> list[str]:
    """BLACKWHEEL_FA_DIRECTIONS=fwd or fwd,bwd (forward includes the split-KV kernels)."""
    dirs = _choice(env, fam, "directions", "BLACKWHEEL_FA_DIRECTIONS", "direction")
    if "fwd" not in dirs:
        raise PlanError(f"BLACKWHEEL_FA_DIRECTIONS={env.get('BLACKWHEEL_FA_DIRECTIONS')!r}: the "
                        "backward needs the forward; use fwd or fwd,bwd")
    return dirs


def _dtypes(env: Mapping[str, str], fam) -> list[str]:
    """BLACKWHEEL_FA_DTYPES=fp16,bf16 (default both): a reduced build (CI) may take one."""
    return _choice(env, fam, "dtypes", "BLACKWHEEL_FA_DTYPES", "dtype")


def make_plan(config: Config, env: Mapping[str, str], *, cmake_archs: str | None = None,
              cmake_kernels: str | None = None, nvcc_archs: set[int] | None = None,
              nvcc_version: tuple[int, int] | None = None) -> Plan:
    try:
        archs, archs_origin = A.requested_archs(dict(env), cmake_archs, config.default_archs,
                                                f"{config.declared_in} default-archs")
        A.validate(archs, config.accepted_archs, nvcc_archs, nvcc_version)
    except A.ArchError as e:
        raise PlanError(str(e)) from None
    names, kernels_origin, explicit = requested_kernels(env, cmake_kernels, config)
    families: list[FamilyPlan] = []
    skipped: list[tuple[str, str]] = []
    for name in names:
        fam = config.kernels[name]
        chosen = A.family_archs(fam.archs, archs)
        if not chosen:
            reason = (f"{name} runs on {', '.join(fam.archs)}; none of the requested archs "
                      f"({', '.join(str(a) for a in archs)}) matches")
            if explicit:
                raise PlanError(f"kernel set '{name}' was asked for by name ({kernels_origin}) but "
                                f"cannot be built: {reason}. Add one of its archs to "
                                f"BLACKWHEEL_ARCHS or drop it from BLACKWHEEL_KERNELS.")
            skipped.append((name, reason))
            continue
        options = {}
        if "head_dims" in fam.extra:
            options["head_dims"] = _head_dims(env, fam)
        if "directions" in fam.extra:
            options["directions"] = _directions(env, fam)
        if "dtypes" in fam.extra:
            options["dtypes"] = _dtypes(env, fam)
        if "frontend" in fam.extra:   # which ops the family's library registers (FlashAttn2.cmake)
            options["frontend"] = [str(fam.extra["frontend"])]
        families.append(FamilyPlan(name, tuple(chosen), fam.abi, fam.sources, options))
    if not families:
        raise PlanError("nothing to build: no requested kernel set supports the requested archs "
                        f"({', '.join(str(a) for a in archs)}); " +
                        "; ".join(r for _, r in skipped))
    return Plan(tuple(archs), archs_origin, kernels_origin, tuple(families), tuple(skipped))


def plan_as_dict(plan: Plan) -> dict:
    return {
        "archs": [str(a) for a in plan.requested_archs],
        "archs_origin": plan.archs_origin,
        "kernels_origin": plan.kernels_origin,
        "families": {
            f.name: {"archs": [str(a) for a in f.archs], "abi": f.abi,
                     "sources": list(f.sources), "options": f.options}
            for f in plan.families
        },
        "skipped": {name: reason for name, reason in plan.skipped},
    }
