"""Explain why two wheels are not byte-identical: member by member, and for ELF
members section by section (pyelftools); text members get a short unified diff.

Each difference ends with "likely cause:" lines that name what made it, read from
the differing bytes themselves: an absolute path (checkout, build dir, cache, HOME),
a timestamp, a tool version, nvcc's internal-symbol hash of a source's real path, a
temporary file name, a blanked RPATH, a build-id, or a changed build input.

Pure: diff_members(a, b), diff_elf(a_bytes, b_bytes) and likely_causes() take bytes,
return data. `verify --against OTHER WHEEL` calls run_against.
"""
from __future__ import annotations

import difflib
import hashlib
import io
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

MAX_DIFF_LINES = 40


@dataclass
class MemberDiff:
    name: str
    kind: str                     # "only-in-wheel", "only-in-other", "content", "zip-metadata"
    detail: list[str] = field(default_factory=list)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()[:16]


def elf_sections(data: bytes) -> dict[str, tuple[int, str]]:
    """name -> (size, sha256 prefix) of every section (NOBITS: size only)."""
    f = ELFFile(io.BytesIO(data))
    out: dict[str, tuple[int, str]] = {}
    for i, s in enumerate(f.iter_sections()):
        name = s.name or f"<section {i}>"
        if name in out:
            name = f"{name}#{i}"
        digest = "" if s["sh_type"] == "SHT_NOBITS" else _sha(s.data())
        out[name] = (s["sh_size"], digest)
    return out


def section_data(data: bytes) -> dict[str, bytes]:
    """name -> bytes of every section with contents (names as in elf_sections)."""
    f = ELFFile(io.BytesIO(data))
    out: dict[str, bytes] = {}
    for i, s in enumerate(f.iter_sections()):
        name = s.name or f"<section {i}>"
        if name in out:
            name = f"{name}#{i}"
        out[name] = b"" if s["sh_type"] == "SHT_NOBITS" else s.data()
    return out


_STRINGS = re.compile(rb"[\x20-\x7e]{4,}")
_PATH = re.compile(r"(?:^|[^\w.])(/(?:tmp|home|root|work|var|opt|usr|scratch|build|data|mnt|srv)"
                   r"/[\w.+@~-]+(?:/[\w.+@~-]+)*)")
_TIME = re.compile(r"\b(?:[A-Z][a-z]{2} [ \d]\d \d{4}|\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\d\d:\d\d:\d\d)\b")
_TOOL = re.compile(r"(?:GCC: \(|clang version|NVIDIA \(R\) Cuda|cuda_\d+\.\d|V\d+\.\d+\.\d+|"
                   r"Linker: |GNU ld|cicc|ptxas|nvcc)")
_INTERNAL = re.compile(r"_INTERNAL_([0-9a-f]{8})_")


def _strings(data: bytes) -> set[str]:
    return {m.group().decode("ascii") for m in _STRINGS.finditer(data)}


def likely_causes(section: str, a: bytes, b: bytes) -> list[str]:
    """What most likely made one section differ, from the strings only one side has
    (pure). Empty when nothing recognisable differs."""
    only_a, only_b = _strings(a) - _strings(b), _strings(b) - _strings(a)
    both = sorted(only_a | only_b)
    causes: list[str] = []
    paths = sorted({m.group(1) for s in both for m in _PATH.finditer(s)})
    if paths:
        shown = ", ".join(paths[:4]) + (f" (+{len(paths) - 4} more)" if len(paths) > 4 else "")
        causes.append(f"a path: {shown} — an absolute build path reaches {section}; map it "
                      f"(-ffile-prefix-map, cmake/Reproducible.cmake) or compile from the fixed "
                      f"source root /tmp/blackwheel-src")
    if any("tmpxft_" in s for s in both):
        causes.append("a temporary file name (nvcc tmpxft_<pid>_*): compile with -objtemp")
    hashes_a = {m.group(1) for s in only_a for m in _INTERNAL.finditer(s)}
    hashes_b = {m.group(1) for s in only_b for m in _INTERNAL.finditer(s)}
    if hashes_a != hashes_b and (hashes_a or hashes_b):
        causes.append("nvcc's internal-symbol hash (_INTERNAL_<hash>_) of a source's real path: the "
                      ".cu files were compiled from different absolute paths (another source root, "
                      "or a generated file in the build dir)")
    if any(_TIME.search(s) for s in both):
        causes.append("a timestamp (__DATE__/__TIME__ or a tool's date): set SOURCE_DATE_EPOCH "
                      "in the build's environment")
    if any(_TOOL.search(s) for s in both):
        tools = sorted(s for s in both if _TOOL.search(s))[:4]
        causes.append(f"a tool version: {'; '.join(tools)} — the two builds used different compilers "
                      f"or linkers (compare the build records' toolchain)")
    if section == ".dynstr" and not both and len(a) != len(b):
        causes.append(f"a blanked RPATH: .dynstr is {abs(len(a) - len(b))} bytes longer on one side "
                      f"with the same strings — a build-tree RPATH that install blanked but whose "
                      f"bytes stayed; its length is the checkout/build path's length "
                      f"(CMAKE_SKIP_BUILD_RPATH, cmake/Reproducible.cmake)")
    if section in (".note.gnu.build-id",):
        causes.append("a build-id: link with --build-id=none")
    return causes


def diff_elf(a: bytes, b: bytes) -> list[str]:
    """Lines naming the sections that differ (or the headers, if sections are equal),
    each with its likely causes."""
    try:
        sa, sb = elf_sections(a), elf_sections(b)
        da, db = section_data(a), section_data(b)
    except ELFError as e:
        return [f"not a readable ELF file ({e})"]
    lines = []
    for name in sorted(set(sa) | set(sb)):
        if name not in sb:
            lines.append(f"section {name}: only in wheel ({sa[name][0]} bytes)")
        elif name not in sa:
            lines.append(f"section {name}: only in other ({sb[name][0]} bytes)")
        elif sa[name] != sb[name]:
            lines.append(f"section {name} differs: {sb[name][0]} -> {sa[name][0]} bytes "
                         f"(sha256 {sb[name][1]} -> {sa[name][1]})")
            lines += [f"  likely cause: {c}" for c in likely_causes(name, da[name], db[name])]
    if not lines:
        lines.append("all sections equal; the ELF headers or the layout between sections differ")
    if any(x.startswith("section .strtab") or x.startswith("section .symtab") for x in lines):
        lines.append("hint: symbol names differ; nvcc temp names (tmpxft_*) point at a compile "
                     "without -objtemp (see cmake/Reproducible.cmake)")
    if any(x.startswith("section .nv_fatbin") for x in lines):
        lines.append("hint: the device code differs (flags, archs, __FILE__ paths or -lineinfo)")
    return lines


def _is_text(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return False
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def diff_text(a: bytes, b: bytes, name: str) -> list[str]:
    lines = list(difflib.unified_diff(b.decode().splitlines(), a.decode().splitlines(),
                                      fromfile=f"other/{name}", tofile=f"wheel/{name}", lineterm="", n=1))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more diff lines)"]
    return lines


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), obj


def build_record_causes(a: bytes, b: bytes) -> list[str]:
    """_build_info.json: which recorded inputs differ — a changed input, not a
    non-reproducible build (pure)."""
    try:
        fa, fb = dict(_flat(json.loads(a))), dict(_flat(json.loads(b)))
    except ValueError:
        return []
    keys = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
    out = []
    for k in keys:
        kind = ("a tool version" if k.startswith("toolchain") else
                "an input (source, patch or own csrc/)" if k.startswith(("sources", "own_sources")) else
                "the torch lock" if k.startswith("torch") else
                "a timestamp" if "date" in k or "epoch" in k else
                "flags or archs" if k.startswith(("flags", "archs", "kernels")) else "a recorded fact")
        out.append(f"likely cause: {kind}: {k} {fb.get(k)!r} -> {fa.get(k)!r}")
    return out


def diff_content(name: str, a: bytes, b: bytes) -> list[str]:
    head = f"{len(b)} -> {len(a)} bytes, sha256 {_sha(b)} -> {_sha(a)}"
    if a[:4] == b"\x7fELF" and b[:4] == b"\x7fELF":
        return [head] + diff_elf(a, b)
    if _is_text(a) and _is_text(b):
        extra = build_record_causes(a, b) if name.endswith("_build_info.json") else []
        if not extra:
            extra = [f"likely cause: {c}" for c in likely_causes(name, a, b)]
        return [head] + diff_text(a, b, name) + extra
    return [head + " (binary)"] + [f"likely cause: {c}" for c in likely_causes(name, a, b)]


@dataclass(frozen=True)
class Entry:
    data: bytes
    date_time: tuple
    mode: int
    index: int


def read_entries(wheel: Path) -> dict[str, Entry]:
    with zipfile.ZipFile(wheel) as z:
        return {i.filename: Entry(z.read(i), tuple(i.date_time), (i.external_attr >> 16) & 0o7777, n)
                for n, i in enumerate(z.infolist())}


def diff_members(a: dict[str, Entry], b: dict[str, Entry]) -> list[MemberDiff]:
    """How wheel a differs from other b (pure)."""
    out: list[MemberDiff] = []
    for name in sorted(set(a) | set(b)):
        if name not in b:
            out.append(MemberDiff(name, "only-in-wheel", [f"{len(a[name].data)} bytes"]))
        elif name not in a:
            out.append(MemberDiff(name, "only-in-other", [f"{len(b[name].data)} bytes"]))
        elif a[name].data != b[name].data:
            out.append(MemberDiff(name, "content", diff_content(name, a[name].data, b[name].data)))
        else:
            ea, eb = a[name], b[name]
            meta = []
            if ea.date_time != eb.date_time:
                meta.append(f"timestamp {eb.date_time} -> {ea.date_time}")
                meta.append("likely cause: a timestamp: the zip entries' times follow "
                            "SOURCE_DATE_EPOCH (blackwheel.toml) in a reproducible build")
            if ea.mode != eb.mode:
                meta.append(f"mode {eb.mode:o} -> {ea.mode:o}")
            if ea.index != eb.index:
                meta.append(f"entry position {eb.index} -> {ea.index}")
            if meta:
                out.append(MemberDiff(name, "zip-metadata", meta))
    return out


def format_diffs(diffs: list[MemberDiff]) -> str:
    lines = []
    for d in diffs:
        lines.append(f"{d.kind:14} {d.name}")
        lines += [f"    {x}" for x in d.detail]
    return "\n".join(lines)


def run_against(other: Path, wheel: Path) -> int:
    from blackwheel_factory.packaging.repro import sha256_file
    try:
        a, b = read_entries(wheel), read_entries(other)
    except (zipfile.BadZipFile, FileNotFoundError, IsADirectoryError) as e:
        print(f"verify --against: {e}; pass two .whl files", file=sys.stderr)
        return 2
    ha, hb = sha256_file(wheel), sha256_file(other)
    if ha == hb:
        print(f"identical: {wheel} and {other} (sha256 {ha})")
        return 0
    diffs = diff_members(a, b)
    print(f"{wheel} (sha256 {ha[:16]}) differs from {other} (sha256 {hb[:16]}):")
    if diffs:
        print(format_diffs(diffs))
    else:
        print("members, timestamps, modes and order are equal: the zip container differs "
              "(compression level or zlib version, extra fields, comment); "
              "normalise both with blackwheel_factory.packaging.repro.normalise_wheel")
    return 1
