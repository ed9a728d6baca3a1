"""Byte-reproducible wheels: one deterministic zip writer, used for the wheel
scikit-build-core writes and again after auditwheel rewrote it.

normalise_wheel(src, dst, epoch) rewrites a wheel so that its bytes depend on
its members' contents and names only:
  * entries sorted by name, ``*.dist-info/`` last and ``RECORD`` the very last
    entry (the order pip and the wheel spec recommend);
  * every timestamp = SOURCE_DATE_EPOCH (clamped to the zip range 1980..2107);
  * permissions 0o755 for members that were executable or are ELF files,
    0o644 otherwise; no directory entries, no extra fields, no comment;
  * ZIP_DEFLATED at a fixed level (the bytes also depend on the zlib version:
    compare wheels built with the same Python);
  * RECORD regenerated from the contents (sha256, size).

Measured (scikit-build-core 1.1.2, auditwheel 6.8.2): scikit-build-core honours
SOURCE_DATE_EPOCH for zip timestamps (wheel.reproducible, the default) and
sorts its entries; auditwheel also takes SOURCE_DATE_EPOCH for timestamps but
takes permissions from the unpacked files (umask) and re-orders entries
(os.walk, dist-info at the end), so its output is normalised again here.
"""
from __future__ import annotations

import base64
import csv
import datetime as _dt
import hashlib
import io
import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from blackwheel_factory.inputs.hashing import sha256_file  # noqa: F401  (re-exported)
from typing import Iterable

ZIP_MIN = 315532800        # 1980-01-01T00:00:00Z, the earliest zip timestamp
ZIP_MAX = 4354819199       # 2107-12-31T23:59:59Z
COMPRESS_LEVEL = 9


class ReproError(ValueError):
    """A wheel that cannot be normalised; the message names the fix."""


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes
    executable: bool = False


def zip_date_time(epoch: int) -> tuple[int, int, int, int, int, int]:
    """The zip date_time tuple of a SOURCE_DATE_EPOCH value (UTC, clamped)."""
    epoch = min(max(int(epoch), ZIP_MIN), ZIP_MAX)
    d = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=epoch)
    return (d.year, d.month, d.day, d.hour, d.minute, d.second)


def record_hash(data: bytes) -> str:
    """'sha256=<urlsafe b64, no padding>' as in a wheel's RECORD."""
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def dist_info_dir(names: Iterable[str]) -> str:
    """The wheel's single top-level ``*.dist-info`` directory."""
    tops = sorted({n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")})
    if len(tops) != 1:
        raise ReproError(f"a wheel has exactly one *.dist-info directory, found {tops or 'none'}")
    return tops[0]


def entry_order(names: Iterable[str]) -> list[str]:
    """Sorted names, dist-info entries after the rest, RECORD last."""
    names = list(names)
    di = dist_info_dir(names)
    record = f"{di}/RECORD"

    def key(n: str):
        return (n == record, n.startswith(di + "/"), n)

    return sorted(names, key=key)


def make_record(members: Iterable[Member], record_name: str) -> bytes:
    """RECORD text for members (RECORD itself and signatures unhashed)."""
    # RECORD is CSV (PEP 376): a name with a comma is quoted (vLLM ships files named
    # "E=1,N=14336,device_name=....json"); csv's default dialect is what pip and
    # auditwheel read with
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for m in members:
        if m.name == record_name:
            continue
        writer.writerow([m.name, record_hash(m.data), len(m.data)])
    writer.writerow([record_name, "", ""])
    return out.getvalue().encode()


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def normalised_members(members: Iterable[Member]) -> list[Member]:
    """Members in entry order with RECORD regenerated (pure)."""
    by_name: dict[str, Member] = {}
    for m in members:
        if m.name.endswith("/"):
            continue                       # directory entries carry nothing
        if m.name in by_name:
            raise ReproError(f"duplicate zip entry {m.name!r}: rebuild the wheel")
        if m.name.startswith("/") or ".." in m.name.split("/"):
            raise ReproError(f"unsafe zip entry name {m.name!r}")
        by_name[m.name] = m
    order = entry_order(by_name)
    record_name = f"{dist_info_dir(order)}/RECORD"
    body = [by_name[n] for n in order if n != record_name]
    record = Member(record_name, make_record(body, record_name))
    return body + [record]


def write_zip(path: Path, members: Iterable[Member], epoch: int) -> None:
    """Write members, in the given order, deterministically; atomic (temp + rename)."""
    path = Path(path)
    date_time = zip_date_time(epoch)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for m in members:
                info = zipfile.ZipInfo(m.name, date_time=date_time)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3          # unix, so external_attr is honoured
                mode = 0o755 if (m.executable or is_elf(m.data)) else 0o644
                info.external_attr = (stat.S_IFREG | mode) << 16
                z.writestr(info, m.data, compresslevel=COMPRESS_LEVEL)
        os.chmod(tmp, 0o644)            # mkstemp makes 0600; a published wheel is world-readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_members(wheel: Path) -> list[Member]:
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as z:
            out = []
            for info in z.infolist():
                if info.is_dir():
                    continue
                mode = (info.external_attr >> 16) & 0o777
                out.append(Member(info.filename, z.read(info), bool(mode & 0o111)))
            return out
    except (zipfile.BadZipFile, FileNotFoundError, IsADirectoryError) as e:
        raise ReproError(f"{wheel}: not a readable wheel ({e}); pass the path of a .whl file") from e


def resolve_epoch(explicit: int | None = None, env: dict | None = None) -> int:
    """Explicit value > $SOURCE_DATE_EPOCH > blackwheel.toml [build] source_date_epoch."""
    if explicit is not None:
        return int(explicit)
    raw = (os.environ if env is None else env).get("SOURCE_DATE_EPOCH")
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise ReproError(f"SOURCE_DATE_EPOCH={raw!r} is not an integer (seconds since 1970)") from None
    from blackwheel_factory.inputs.config import ConfigError, load_config
    try:
        return load_config().source_date_epoch
    except ConfigError as e:
        raise ReproError(f"no SOURCE_DATE_EPOCH: set it, or run inside a checkout ({e})") from None


def normalise_wheel(src: Path, dst: Path | None = None, epoch: int | None = None) -> Path:
    """Rewrite wheel src deterministically to dst (default: in place). Returns dst."""
    src = Path(src)
    dst = Path(dst) if dst else src
    members = normalised_members(read_members(src))
    write_zip(dst, members, resolve_epoch(epoch))
    return dst


