"""Explain why two wheels are not byte-identical: member by member, and for ELF
members section by section (pyelftools); text members get a short unified diff.

Pure: diff_members(a, b) and diff_elf(a_bytes, b_bytes) take bytes, return data.
`verify --against OTHER WHEEL` calls run_against.
"""
from __future__ import annotations

import difflib
import hashlib
import io
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


def diff_elf(a: bytes, b: bytes) -> list[str]:
    """Lines naming the sections that differ (or the headers, if sections are equal)."""
    try:
        sa, sb = elf_sections(a), elf_sections(b)
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


def diff_content(name: str, a: bytes, b: bytes) -> list[str]:
    head = f"{len(b)} -> {len(a)} bytes, sha256 {_sha(b)} -> {_sha(a)}"
    if a[:4] == b"\x7fELF" and b[:4] == b"\x7fELF":
        return [head] + diff_elf(a, b)
    if _is_text(a) and _is_text(b):
        return [head] + diff_text(a, b, name)
    return [head + " (binary)"]


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
