"""`python -m blackwheel_factory verify WHEEL`: what device code is in the wheel, and is it
what was asked for and within the target's limits.

Pure core:   cuobjdump text -> Cubin data (parse_listing, parse_res_usage)
             Cubins + build record + policy -> Rows, Violations (check)
Thin effects: find cuobjdump, run it per .so, unpack the wheel, print, write JSON.

`verify --against OTHER.whl WHEEL` explains differences instead (elfdiff.py).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from blackwheel_factory.checks import launch_smem
from blackwheel_factory.plan.archs import ArchError, parse_arch, parse_arch_list

POLICY_PATH = Path(__file__).parent.parent / "policies" / "verify.toml"   # blackwheel_factory/policies/
BUILD_INFO_NAME = "_build_info.json"


class VerifyError(ValueError):
    """Input verify cannot work with (bad wheel, policy, cuobjdump); names the fix."""


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Kernel:
    name: str
    registers: int
    stack: int          # bytes of stack frame per thread (spills and local arrays)
    shared: int         # static shared memory, bytes per block
    local: int          # local memory, bytes per thread


@dataclass(frozen=True)
class Cubin:
    kind: str           # "sass" or "ptx"
    arch: str           # "sm_120a" as cuobjdump prints it
    kernels: tuple[Kernel, ...] = ()


@dataclass(frozen=True)
class Limits:
    shared_per_block: int
    registers_per_sm: int
    registers_per_thread: int
    reserved_shared: int = 0   # added by cuobjdump to SHARED on sm_90+ (1 KiB system reserve)
    shared_per_sm: int = 0     # shared memory per SM (0 = not in the policy); read by dispatch rules


@dataclass(frozen=True)
class FamilyPolicy:
    dynamic_smem_max: dict = field(default_factory=dict)   # arch base ("12.0a") -> bytes
    max_stack_bytes: int = 0
    dynamic_smem_rule: str = ""     # blackwheel_factory.checks.launch_smem rule; "" = not checked
    max_stack_by_arch: dict = field(default_factory=dict)  # arch ("8.9") -> bytes, overrides

    def stack_limit(self, arch: str) -> int:
        return self.max_stack_by_arch.get(arch, self.max_stack_bytes)


@dataclass(frozen=True)
class Policy:
    limits: dict            # "sm_120" -> Limits
    families: dict          # family -> FamilyPolicy
    stack: str = "error"
    ptx_only: str = "error"


@dataclass(frozen=True)
class Violation:
    severity: str       # "error" or "warning"
    check: str          # "missing-sass", "ptx-only", "smem", "registers", "stack", "no-device-code", ...
    family: str
    arch: str
    library: str
    message: str


@dataclass
class Row:
    family: str
    library: str
    arch: str           # "sm_120a"
    cubins: int = 0
    kernels: int = 0
    max_regs: int = 0
    max_static_smem: int = 0
    dynamic_smem: int | None = None     # from policy or derived; None = not checked
    dynamic_note: str = ""              # "at launch" for launcher-checked families
    max_smem: int | None = None         # max static + dynamic of the kernels that can launch here
    unreachable: int = 0                # kernels the launcher never picks on this target
    unreachable_why: dict = field(default_factory=dict)   # why -> number of kernels
    spills: int = 0                     # kernels with a stack frame / local memory
    max_stack: int = 0
    ptx: bool = False
    requested: bool = False


# ------------------------------------------------------------------ parsing (pure)
_LIST_RE = re.compile(r"^(ELF|PTX) file\s+\d+:\s+(\S+)\s*$")
_ARCH_IN_NAME = re.compile(r"\.(sm_\d+[af]?)\.(?:cubin|ptx)$")
_FUNC_RE = re.compile(r"^\s*Function\s+(\S+):\s*$")
_FIELD_RE = re.compile(r"([A-Z]+(?:\[\d+\])?):(\d+)")


def parse_listing(text: str) -> tuple[list[str], list[str]]:
    """`cuobjdump --list-elf --list-ptx` -> (SASS archs, PTX archs), one per entry."""
    sass, ptx = [], []
    for line in text.splitlines():
        m = _LIST_RE.match(line.strip())
        if not m:
            continue
        a = _ARCH_IN_NAME.search(m.group(2))
        if not a:
            raise VerifyError(f"cannot read the arch from cuobjdump entry {m.group(2)!r}")
        (sass if m.group(1) == "ELF" else ptx).append(a.group(1))
    return sass, ptx


def parse_res_usage(text: str) -> list[Cubin]:
    """`cuobjdump -res-usage` -> one Cubin per 'Fatbin elf code' / 'Fatbin ptx code' block."""
    cubins: list[Cubin] = []
    kind = arch = None
    kernels: list[Kernel] = []
    func = None

    def flush():
        if kind is not None:
            if arch is None:
                raise VerifyError("cuobjdump -res-usage output has a fatbin block without 'arch ='")
            cubins.append(Cubin(kind, arch, tuple(kernels)))

    for raw in text.splitlines():
        line = raw.strip()
        if line in ("Fatbin elf code:", "Fatbin ptx code:"):
            flush()
            kind = "sass" if "elf" in line else "ptx"
            arch, kernels, func = None, [], None
        elif line.startswith("arch =") and kind is not None and arch is None:
            arch = line.split("=", 1)[1].strip()
        elif (m := _FUNC_RE.match(raw)) and kind is not None:
            func = m.group(1)
        elif func is not None and line.startswith("REG:"):
            f = {k: int(v) for k, v in _FIELD_RE.findall(line)}
            kernels.append(Kernel(func, f.get("REG", 0), f.get("STACK", 0),
                                  f.get("SHARED", 0), f.get("LOCAL", 0)))
            func = None
    flush()
    return cubins


def cubins_from_outputs(listing: str, res_usage: str) -> list[Cubin]:
    """Cross-check the listing against -res-usage; the latter carries the kernels."""
    cubins = parse_res_usage(res_usage)
    sass, ptx = parse_listing(listing)
    got_sass = sorted(c.arch for c in cubins if c.kind == "sass")
    got_ptx = sorted(c.arch for c in cubins if c.kind == "ptx")
    if sorted(sass) != got_sass or sorted(ptx) != got_ptx:
        raise VerifyError(
            f"cuobjdump listings disagree (--list-elf: {sorted(sass)}, -res-usage: {got_sass}; "
            f"--list-ptx: {sorted(ptx)}, -res-usage: {got_ptx}); use cuobjdump from CUDA >= 12.8")
    return cubins


# ------------------------------------------------------------------ policy (pure)
def _per_arch(table: dict) -> dict:
    """{ "12.0a" = BYTES, ... } from the policy file -> {arch base: int}."""
    return {parse_arch(a).base: int(v) for a, v in table.items()}


def parse_policy(data: dict, where: str = "verify policy") -> Policy:
    limits = {}
    for sm, t in (data.get("limits") or {}).items():
        try:
            limits[sm] = Limits(int(t["shared_per_block"]), int(t["registers_per_sm"]),
                                int(t["registers_per_thread"]), int(t.get("reserved_shared", 0)),
                                int(t.get("shared_per_sm", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise VerifyError(f"{where}: [limits.{sm}] needs integer shared_per_block, "
                              f"registers_per_sm, registers_per_thread ({e!r})") from None
    checks = data.get("checks") or {}
    sev = {}
    for key in ("stack", "ptx_only"):
        v = checks.get(key, "error")
        if v not in ("error", "warning"):
            raise VerifyError(f"{where}: [checks] {key} must be 'error' or 'warning', got {v!r}")
        sev[key] = v
    families = {}
    for name, t in (data.get("families") or {}).items():
        dyn = t.get("dynamic_smem_max", {})
        if not isinstance(dyn, dict):
            raise VerifyError(f"{where}: [families.{name}] dynamic_smem_max must be a table "
                              f"{{ \"12.0a\" = BYTES }}, got {dyn!r}")
        try:
            dyn = _per_arch(dyn)
        except (ArchError, ValueError) as e:
            raise VerifyError(f"{where}: [families.{name}] dynamic_smem_max: {e}") from None
        rule = t.get("dynamic_smem_rule", "")
        if rule and rule not in launch_smem.RULES:
            raise VerifyError(f"{where}: [families.{name}] dynamic_smem_rule must be one of "
                              f"{', '.join(launch_smem.RULES)}, got {rule!r}")
        stack = t.get("max_stack_bytes", 0)
        try:   # BYTES, or { default = BYTES, "8.9" = BYTES, ... } per target
            if isinstance(stack, dict):
                by_arch = _per_arch({a: v for a, v in stack.items() if a != "default"})
                stack = int(stack.get("default", 0))
            else:
                by_arch, stack = {}, int(stack)
        except (ArchError, ValueError, TypeError) as e:
            raise VerifyError(f"{where}: [families.{name}] max_stack_bytes must be BYTES or "
                              f"{{ default = BYTES, \"8.9\" = BYTES }} ({e})") from None
        families[name] = FamilyPolicy(dyn, stack, rule, by_arch)
    return Policy(limits, families, sev["stack"], sev["ptx_only"])


def load_policy(path: Path | None = None) -> Policy:
    path = Path(path) if path else POLICY_PATH
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise VerifyError(f"{path}: verify policy not found; pass --policy PATH") from None
    except tomllib.TOMLDecodeError as e:
        raise VerifyError(f"{path}: not valid TOML: {e}") from None
    return parse_policy(data, str(path))


def limits_for(policy: Policy, sm: str) -> Limits | None:
    """Limits of 'sm_120a' (falls back to its base 'sm_120')."""
    base = re.sub(r"[af]$", "", sm)
    return policy.limits.get(sm) or policy.limits.get(base)


def sm_of(arch: str) -> str:
    """'12.0a' -> 'sm_120a'."""
    return parse_arch(arch).sm


def arch_of_sm(sm: str) -> str:
    """'sm_120a' -> '12.0a'."""
    m = re.fullmatch(r"sm_(\d+)(\d)([af]?)", sm)
    if not m:
        raise VerifyError(f"unexpected target name {sm!r} from cuobjdump")
    return f"{m.group(1)}.{m.group(2)}{m.group(3)}"


def ptx_can_jit(ptx_sm: str, target_sm: str) -> bool:
    """Whether PTX for ptx_sm could be JIT-compiled for target_sm ('a' PTX only for its own arch)."""
    p, t = parse_arch(arch_of_sm(ptx_sm)), parse_arch(arch_of_sm(target_sm))
    if p.suffix == "a":
        return (p.major, p.minor) == (t.major, t.minor)
    if p.suffix == "f":
        return p.major == t.major and t.minor >= p.minor
    return t.number >= p.number


# ------------------------------------------------------------------- check (pure)
@dataclass(frozen=True)
class Library:
    """One .so of the wheel and what cuobjdump found in it."""
    family: str
    name: str           # basename, e.g. "_scaled_mm.abi3.so"
    requested: tuple[str, ...]   # SASS targets required, e.g. ("sm_120a", "sm_90a")
    cubins: tuple[Cubin, ...]
    present: bool = True


def _rebuild_hint(requested: tuple[str, ...]) -> str:
    return "Rebuild with BLACKWHEEL_ARCHS=" + ",".join(arch_of_sm(s) for s in requested)


def _kernel_violations(k: Kernel, fam: str, sm: str, so: str, lim: Limits, dyn: int | None,
                       fpol: FamilyPolicy, policy: Policy,
                       smem_on: tuple | None = None) -> list[Violation]:
    """smem_on: the devices ((limits key, Limits), ...) whose per-block limit the
    kernel's shared memory must fit; None: the target's own; (): none, the launcher
    never picks it there (registers and stack are still checked)."""
    out = []
    static = max(k.shared - lim.reserved_shared, 0)
    total = static + (dyn or 0)
    own = re.sub(r"[af]$", "", sm)
    for dev, dlim in ((own, lim),) if smem_on is None else smem_on:
        if total <= dlim.shared_per_block:
            continue
        what = f"static {static} + dynamic max {dyn} = {total}" if dyn else f"static {static}"
        on = "" if dev == own else f" of {dev} devices, which run this {sm} code and launch it"
        out.append(Violation("error", "smem", fam, sm, so,
                             f"family {fam}, {sm}, kernel {k.name} in {so}: shared memory {what} bytes "
                             f"exceeds the {dlim.shared_per_block}-byte limit per block{on}"))
    if k.registers > lim.registers_per_thread:
        out.append(Violation("error", "registers", fam, sm, so,
                             f"family {fam}, {sm}, kernel {k.name} in {so}: {k.registers} registers "
                             f"per thread exceeds {lim.registers_per_thread}"))
    local = max(k.stack, k.local)
    if local > fpol.stack_limit(arch_of_sm(sm)):
        out.append(Violation(policy.stack, "stack", fam, sm, so,
                             f"family {fam}, {sm}, kernel {k.name} in {so}: {local} bytes of stack/local "
                             f"memory per thread (register spills or local arrays; {k.registers} registers). "
                             f"Raise the register limit (-maxrregcount / __launch_bounds__) or allow it "
                             f"with [families.{fam}] max_stack_bytes in the verify policy"))
    return out


def check(libraries: list[Library], policy: Policy) -> tuple[list[Row], list[Violation]]:
    rows: list[Row] = []
    out: list[Violation] = []
    for lib in libraries:
        fam, so = lib.family, lib.name
        if not lib.present:
            out.append(Violation("error", "missing-library", fam, "", so,
                                 f"family {fam}: the build record names {so}, which is not in the wheel; "
                                 f"rebuild, or fix the build record's 'library'"))
            continue
        sass_archs = sorted({c.arch for c in lib.cubins if c.kind == "sass"})
        ptx_archs = sorted({c.arch for c in lib.cubins if c.kind == "ptx"})
        if not lib.cubins and lib.requested:
            out.append(Violation("error", "no-device-code", fam, "", so,
                                 f"family {fam}: {so} contains no device code (no cubin, no PTX). "
                                 f"{_rebuild_hint(lib.requested)}"))
        built = ", ".join(sass_archs) or "no SASS"
        for sm in lib.requested:
            if sm in sass_archs:
                continue
            jit = [p for p in ptx_archs if ptx_can_jit(p, sm)]
            if jit:
                out.append(Violation(policy.ptx_only, "ptx-only", fam, sm, so,
                                     f"family {fam} has only PTX ({', '.join(jit)}) for {sm} in {so}: "
                                     f"it could only run through PTX JIT (built SASS: {built}). "
                                     f"{_rebuild_hint(lib.requested)}"))
            else:
                out.append(Violation("error", "missing-sass", fam, sm, so,
                                     f"family {fam} has no SASS for {sm} in {so} (built: {built}). "
                                     f"{_rebuild_hint(lib.requested)}"))
        fpol = policy.families.get(fam, FamilyPolicy())
        for sm in sorted(set(sass_archs) | set(ptx_archs) | set(lib.requested)):
            sass = [c for c in lib.cubins if c.kind == "sass" and c.arch == sm]
            kernels = [k for c in sass for k in c.kernels]
            dyn = fpol.dynamic_smem_max.get(arch_of_sm(sm))
            lim = limits_for(policy, sm)
            reserve = lim.reserved_shared if lim else 0
            plans = {k.name: _plan(fpol.dynamic_smem_rule, k.name, sm, policy, dyn) for k in kernels}
            launchable = [k for k in kernels if not plans[k.name].never]
            derived = [plans[k.name].dynamic_smem for k in launchable
                       if fpol.dynamic_smem_rule and plans[k.name].dynamic_smem is not None]
            if derived:
                dyn = max(derived)
            why: dict[str, int] = {}
            for k in kernels:
                if plans[k.name].never:
                    why[plans[k.name].why] = why.get(plans[k.name].why, 0) + 1
            row = Row(fam, so, sm, cubins=len(sass), kernels=len(kernels),
                      max_regs=max((k.registers for k in kernels), default=0),
                      max_static_smem=max((max(k.shared - reserve, 0) for k in kernels), default=0),
                      dynamic_smem=dyn,
                      dynamic_note="at launch" if fpol.dynamic_smem_rule == "launcher-checked" else "",
                      max_smem=None if dyn is None else max(
                          (max(k.shared - reserve, 0) + (plans[k.name].dynamic_smem or 0) for k in launchable),
                          default=0),
                      unreachable=sum(why.values()), unreachable_why=dict(sorted(why.items())),
                      spills=sum(1 for k in kernels if k.stack or k.local),
                      max_stack=max((max(k.stack, k.local) for k in kernels), default=0),
                      ptx=sm in ptx_archs, requested=sm in lib.requested)
            rows.append(row)
            if not sass:
                continue
            if lim is None:
                out.append(Violation("error", "no-limits", fam, sm, so,
                                     f"no limits for {sm} in the verify policy; add "
                                     f"[limits.{re.sub(r'[af]$', '', sm)}] to {POLICY_PATH}"))
                continue
            for k in kernels:
                plan = plans[k.name]
                if plan.underivable:
                    out.append(Violation("error", "smem-underivable", fam, sm, so,
                                         f"family {fam}, {sm}, kernel {k.name} in {so}: cannot derive the "
                                         f"dynamic shared memory its launcher requests (dynamic_smem_rule "
                                         f"{fpol.dynamic_smem_rule!r} does not know this kernel); teach "
                                         f"blackwheel_factory/checks/launch_smem.py its launch"))
                out.extend(_kernel_violations(k, fam, sm, so, lim, plan.dynamic_smem, fpol, policy,
                                              plan.devices))
    return rows, out


@dataclass(frozen=True)
class _Plan:
    """One kernel of one SASS target: the dynamic shared memory it is launched with
    and the devices (policy limit keys, with their limits) that can launch it."""
    dynamic_smem: int | None
    devices: tuple = ()         # ((limits key, Limits), ...)
    why: str = ""               # why never launched
    underivable: bool = False

    @property
    def never(self) -> bool:
        """The launcher never picks this kernel on any device that runs this SASS."""
        return bool(self.why) and not self.devices


def _devices(sm: str, policy: Policy) -> list[tuple[str, Limits]]:
    """The devices (with limits in the policy) that run SASS for sm: an 'a' target
    only its own compute capability; a plain or 'f' target also the later minors of
    its major (sm_80 SASS runs on 8.6 and 8.9). The target's own comes first."""
    own = re.sub(r"[af]$", "", sm)
    out = [(own, limits_for(policy, sm))]
    a = parse_arch(arch_of_sm(sm))
    if a.suffix != "a":
        for key, lim in sorted(policy.limits.items()):
            m = re.fullmatch(r"sm_(\d+)(\d)", key)
            if m and key != own and int(m.group(1)) == a.major and int(m.group(2)) > a.minor:
                out.append((key, lim))
    return [(k, lim) for k, lim in out if lim is not None]


def _plan(rule: str, name: str, sm: str, policy: Policy, policy_dyn: int | None) -> _Plan:
    own = limits_for(policy, sm)
    own_dev = ((re.sub(r"[af]$", "", sm), own),) if own else ()
    if not rule:
        return _Plan(policy_dyn, own_dev)
    kl = launch_smem.kernel_launch(rule, name)
    if kl.underivable or rule not in launch_smem.DISPATCH_RULES or not own:
        return _Plan(kl.dynamic_smem, own_dev, underivable=kl.underivable)
    reach, why = [], ""
    for i, (key, lim) in enumerate(_devices(sm, policy)):
        m = re.fullmatch(r"sm_(\d+)(\d)", key)
        t = launch_smem.Target(int(m.group(1)), int(m.group(2)), lim.shared_per_block, lim.shared_per_sm)
        r = launch_smem.kernel_launch(rule, name, t)
        if r.reachable:
            reach.append((key, lim))
        elif i == 0:
            why = r.why
    return _Plan(kl.dynamic_smem, tuple(reach), "" if reach else why)


def requested_for(family_archs: list[str], override: list[str] | None) -> tuple[str, ...]:
    """SASS targets required of a family: the --archs override, else what the build record says."""
    archs = override if override is not None else family_archs
    return tuple(dict.fromkeys(sm_of(a) for a in archs))


def libraries_from_record(info: dict | None, so_names: list[str], cubins: dict,
                          override: list[str] | None, supported: dict | None = None) -> list[Library]:
    """Pair the build record's families with the wheel's .so files (pure).

    cubins: basename -> list[Cubin] for every .so in the wheel.
    supported: family -> archs its code can run on (products/<name>.toml); an --archs
    override is narrowed to those (nvfp4 is not asked for 9.0a)."""
    libs: list[Library] = []
    claimed = set()
    kernels = (info or {}).get("kernels") or {}
    if info is not None and not isinstance(kernels, dict):
        raise VerifyError("_build_info.json: 'kernels' must be an object {family: {...}}")
    for fam, k in sorted(kernels.items()):
        if not isinstance(k, dict) or "library" not in k:
            raise VerifyError(f"_build_info.json: kernels.{fam} has no 'library'; "
                              f"the build must record which .so holds each family")
        fam_override = override
        if override is not None and supported and fam in supported:
            ok = {parse_arch(a).base for a in supported[fam]}
            fam_override = [a for a in override if parse_arch(a).base in ok]
        req = requested_for(list(k.get("archs") or info.get("archs") or []), fam_override)
        # an upstream-cmake product's family spans several libraries; host-only ones
        # (no cubins: vLLM's spinloop, fs_io_C, cumem_allocator) have nothing to check
        many = k.get("libraries")
        for so in (many or [k["library"]]):
            if so in cubins:
                claimed.add(so)
                if cubins[so] or not many:
                    libs.append(Library(fam, so, req, tuple(cubins[so])))
            else:
                libs.append(Library(fam, so, req, (), present=False))
    default = list((info or {}).get("archs") or [])
    for so in sorted(so_names):
        if so in claimed or not cubins.get(so):
            continue      # host-only libraries have nothing to check
        fam = re.sub(r"^_|(\.abi3)?\.so.*$|\.cpython.*$", "", so)
        libs.append(Library(f"({fam})", so, requested_for(default, override), tuple(cubins[so])))
    return libs


# ----------------------------------------------------------------- output (pure)
_KERNEL_IN_MSG = re.compile(r"kernel (\S+) in ")


def summarize(violations: list[Violation], limit: int = 160) -> list[str]:
    """One line per (severity, check, family, arch): the first message, with long
    mangled kernel names cut, and how many more kernels share the problem (the
    JSON report keeps every violation)."""
    groups: dict[tuple, list[Violation]] = {}
    for v in violations:
        groups.setdefault((v.severity, v.check, v.family, v.arch), []).append(v)
    out = []
    for (sev, _check, _fam, _arch), vs in groups.items():
        msg = _KERNEL_IN_MSG.sub(
            lambda m: "kernel " + (m.group(1) if len(m.group(1)) <= limit else m.group(1)[:limit] + "...") + " in ",
            vs[0].message)
        more = f" (and {len(vs) - 1} more kernel(s) like it)" if len(vs) > 1 else ""
        out.append(f"{sev.upper()}: {msg}{more}")
    return out


def format_table(rows: list[Row]) -> str:
    head = ("family", "arch", "cubins", "kernels", "max regs", "max static smem",
            "dyn smem max", "max smem", "unreachable", "spills", "ptx", "library")
    body = [(r.family, r.arch + ("" if r.requested else " (extra)"), str(r.cubins), str(r.kernels),
             str(r.max_regs), str(r.max_static_smem),
             (r.dynamic_note or "not checked") if r.dynamic_smem is None else str(r.dynamic_smem),
             "-" if r.max_smem is None else str(r.max_smem), str(r.unreachable),
             f"{r.spills}" + (f" ({r.max_stack} B)" if r.spills else ""),
             "yes" if r.ptx else "no", r.library) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*b) for b in body]
    for r in rows:
        for why, n in r.unreachable_why.items():
            lines.append(f"  {r.family} {r.arch}: {n} kernel(s) never launched there ({why}); "
                         f"not checked against its shared-memory limit")
    return "\n".join(lines)


def build_facts(info: dict | None) -> list[str]:
    if info is None:
        return ["build record: none (blackwheel/_build_info.json missing)"]
    torch = (info.get("torch") or {})
    lock = torch.get("lock") or {}
    tc = info.get("toolchain") or {}
    facts = [
        f"blackwheel {info.get('blackwheel_version', '?')}  schema {info.get('schema', '?')}  "
        f"abi {info.get('abi', '?')}",
        f"archs: {', '.join(info.get('archs') or []) or '?'}",
        f"torch lock: {lock.get('version', '?')} (cuda {lock.get('cuda', '?')}, "
        f"cxx11_abi {lock.get('cxx11_abi', '?')}); requirement: {torch.get('requirement', '?')}",
        f"nvcc {tc.get('nvcc_version', '?')} ({tc.get('nvcc_origin', tc.get('origin', '?'))}), host {tc.get('host_compiler', '?')}, "
        f"cmake {tc.get('cmake', '?')}",
        f"source_date_epoch: {info.get('source_date_epoch', '?')}",
    ]
    srcs = info.get("sources") or []
    if srcs:
        facts.append("sources: " + ", ".join(
            (f"{s.get('name')} {s.get('version')}" if s.get("dist", s.get("name")) == s.get("name")
             else f"{s.get('name')} from {s.get('dist')} {s.get('version')}")
            + (f" (+{len(s.get('patches') or [])} patches)" if s.get("patches") else "") for s in srcs))
    for fam, k in sorted((info.get("kernels") or {}).items()):
        facts.append(f"family {fam}: {', '.join(k.get('archs') or [])} -> {k.get('library', '?')} "
                     f"({k.get('abi', '?')}, {len(k.get('ops') or [])} ops)")
    for fam, why in sorted((info.get("skipped") or {}).items()):
        facts.append(f"skipped {fam}: {why}")
    return facts


def report_json(wheel: str, info: dict | None, rows: list[Row], violations: list[Violation]) -> dict:
    return {
        "wheel": wheel,
        "build_info": info,
        "rows": [asdict(r) for r in rows],
        "violations": [asdict(v) for v in violations],
        "ok": not any(v.severity == "error" for v in violations),
        "dynamic_smem_note": "dynamic shared memory is not in the cubin; checked only for families "
                             "with dynamic_smem_max or a dynamic_smem_rule in the verify policy; "
                             "max_smem and unreachable count only kernels the launcher can pick on the target",
    }


# ---------------------------------------------------------------- effects (thin)
def find_cuobjdump(env: dict | None = None) -> str:
    env = os.environ if env is None else env
    if env.get("CUOBJDUMP"):
        return env["CUOBJDUMP"]
    candidates = []
    try:
        import nvidia  # the PyPI CUDA wheels' namespace package
        for root in getattr(nvidia, "__path__", []):
            for sub in ("cu13/bin", "cu12/bin", "cuda_cuobjdump/bin"):
                candidates.append(Path(root) / sub / "cuobjdump")
    except ImportError:
        pass
    for c in candidates:
        if c.is_file():
            return str(c)
    found = shutil.which("cuobjdump", path=env.get("PATH"))
    if found:
        return found
    raise VerifyError("cuobjdump not found: pip install nvidia-cuda-cuobjdump (or the "
                      "blackwheel[tools] extra), put it on PATH, or set CUOBJDUMP=/path/to/cuobjdump")


_NO_DEVICE_CODE = "does not contain device code"


def run_cuobjdump(tool: str, so: Path) -> list[Cubin]:
    """Cubins of one shared library ([] when it has no device code)."""
    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([tool, *args, str(so)], capture_output=True, text=True)

    listing = call("--list-elf", "--list-ptx")
    if listing.returncode != 0:
        if _NO_DEVICE_CODE in listing.stderr:
            return []
        raise VerifyError(f"{tool} --list-elf failed on {so} (exit {listing.returncode}): "
                          f"{listing.stderr.strip()}")
    res = call("-res-usage")
    if res.returncode != 0:
        raise VerifyError(f"{tool} -res-usage failed on {so} (exit {res.returncode}): {res.stderr.strip()}")
    return cubins_from_outputs(listing.stdout, res.stdout)


def read_wheel(wheel: Path, dest: Path) -> tuple[dict | None, dict[str, Path]]:
    """Unpack the .so files of a wheel; return (build record, basename -> path)."""
    try:
        z = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, FileNotFoundError, IsADirectoryError) as e:
        raise VerifyError(f"{wheel}: not a readable wheel ({e}); pass the path of a .whl file") from None
    info = None
    sos: dict[str, Path] = {}
    with z:
        for name in z.namelist():
            base = name.rsplit("/", 1)[-1]
            if name.endswith("/" + BUILD_INFO_NAME) and name.count("/") == 1:
                try:
                    info = json.loads(z.read(name))
                except json.JSONDecodeError as e:
                    raise VerifyError(f"{wheel}: {name} is not valid JSON ({e}); rebuild the wheel") from None
            elif re.search(r"\.so(\.\d+)*$", base):
                if base in sos:
                    raise VerifyError(f"{wheel}: two members named {base}; verify pairs families by basename")
                target = dest / f"{len(sos):04d}_{base}"
                target.write_bytes(z.read(name))
                sos[base] = target
    return info, sos


def add_arguments(p) -> None:
    p.add_argument("wheel", type=Path, help="the wheel to verify")
    p.add_argument("--archs", help="required SASS targets for every family, e.g. 12.0a,9.0a "
                                   "(default: each family's archs from the build record)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON")
    p.add_argument("--policy", type=Path, help=f"verify policy TOML (default: {POLICY_PATH})")
    p.add_argument("--strict", action="store_true", help="treat warnings as violations")
    p.add_argument("--against", type=Path, metavar="OTHER.whl",
                   help="explain how WHEEL differs from OTHER.whl (member by member) instead")


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def supported_archs(info: dict | None = None) -> dict | None:
    """family -> archs, from the product file of the wheel's record (products/<name>.toml;
    the kernel pack when the record names no product), when run inside a checkout (else None)."""
    from blackwheel_factory.inputs.config import ConfigError
    from blackwheel_factory.inputs.products import KERNEL_PACK, load_product
    name = ((info or {}).get("product") or {}).get("name") or KERNEL_PACK
    try:
        return {fam: list(k.archs) for fam, k in load_product(name)[1].kernels.items()}
    except ConfigError:
        return None


def verify_wheel(wheel: Path, archs: list[str] | None, policy: Policy,
                 tool: str | None = None) -> tuple[dict | None, list[Row], list[Violation]]:
    with tempfile.TemporaryDirectory(prefix="bw-verify-") as d:
        info, sos = read_wheel(wheel, Path(d))
        if info is None and archs is None:
            raise VerifyError(f"{wheel}: no blackwheel/{BUILD_INFO_NAME} in the wheel, so the families and "
                              f"archs are unknown; pass --archs 12.0a to check every .so anyway")
        tool = tool or find_cuobjdump()
        cubins = {so: run_cuobjdump(tool, path) for so, path in sos.items()}
    libs = libraries_from_record(info, list(sos), cubins, archs, supported_archs(info) if archs else None)
    rows, violations = check(libs, policy)
    return info, rows, violations


def run(args) -> int:
    if args.against is not None:
        from blackwheel_factory.checks import elfdiff
        return elfdiff.run_against(args.against, args.wheel)
    try:
        archs = [str(a) for a in parse_arch_list(args.archs)] if args.archs else None
        policy = load_policy(args.policy)
        info, rows, violations = verify_wheel(args.wheel, archs, policy)
    except (VerifyError, ArchError) as e:
        print(f"verify: {e}", file=sys.stderr)
        return 2
    for line in build_facts(info):
        print(line)
    print()
    print(format_table(rows) if rows else "(no device code found in any .so)")
    if any(r.dynamic_note for r in rows):
        print("dyn smem 'at launch': the launcher sizes dynamic shared memory against the device's "
              "opt-in maximum at run time (vLLM Marlin, CUTLASS 3.x stage counts); see "
              "blackwheel_factory/checks/launch_smem.py")
    if any(r.unreachable for r in rows):
        print("unreachable: kernels in the cubin that the launcher never picks on that target (its "
              "tile choice needs more shared memory, or another GPU); 'max smem' is static + dynamic "
              "of the rest; see blackwheel_factory/policies/fa2_dispatch.toml")
    if not any(r.dynamic_smem is not None or r.dynamic_note for r in rows):
        print("dynamic shared memory: not checked (no dynamic_smem rule in the verify policy)")
    fatal = [v for v in violations if v.severity == "error" or args.strict]
    for line in summarize(violations):
        print(line, file=sys.stderr)
    data = report_json(str(args.wheel), info, rows, violations)
    data["ok"] = not fatal
    if args.json:
        _write_json(args.json, data)
    print(f"\nverify: {'FAILED' if fatal else 'ok'} ({len(fatal)} violation(s), "
          f"{len(violations) - len(fatal)} warning(s))")
    return 1 if fatal else 0
