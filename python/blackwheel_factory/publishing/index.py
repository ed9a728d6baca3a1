"""`python -m blackwheel_factory index DIR`: a static PEP 503 + PEP 691 index for a directory of wheels.

Writes, next to the files (default DIR/simple):

    simple/index.html, simple/index.json                 project list
    simple/<project>/index.html, simple/<project>/index.json   files, #sha256=, requires-python

Links are relative (``../../<file>``), so DIR can be copied as is to any static web
server or object store (see docs/IMAGES.md for serving both forms). The tree is
built in a temporary directory beside the target and swapped in with one rename,
so a reader sees the old index or the new one, never a half-written one.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import email.parser
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

from blackwheel_factory.inputs.hashing import sha256_file  # noqa: F401  (re-exported)

from blackwheel_factory.publishing import simple_index as si

DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")




def _metadata_text(path: Path) -> str:
    """METADATA of a wheel / PKG-INFO of an sdist."""
    name = path.name
    if name.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            metas = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(metas) != 1:
                raise si.SimpleIndexError(f"{path}: expected one *.dist-info/METADATA, found {metas}; "
                                          "rebuild the wheel")
            return z.read(metas[0]).decode("utf-8")
    if name.endswith(".tar.gz"):
        with tarfile.open(path) as t:
            for m in t.getmembers():
                if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"):
                    return t.extractfile(m).read().decode("utf-8")
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.count("/") == 1 and n.endswith("/PKG-INFO"):
                    return z.read(n).decode("utf-8")
    raise si.SimpleIndexError(f"{path}: no PKG-INFO in the sdist; rebuild it with `python -m build --sdist`")


def read_dist(path: Path) -> si.LocalDist:
    si.project_of(path.name)  # validates the name
    try:
        meta = email.parser.Parser().parsestr(_metadata_text(path), headersonly=True)
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
        raise si.SimpleIndexError(f"{path}: cannot read the archive ({e}); re-download or rebuild it") from e
    rp = meta.get("Requires-Python")
    return si.LocalDist(filename=path.name, sha256=sha256_file(path),
                        requires_python=rp.strip() if rp else None)


def scan(directory: Path) -> dict[str, list[si.LocalDist]]:
    """project -> its distribution files (top level of `directory` only)."""
    projects: dict[str, list[si.LocalDist]] = defaultdict(list)
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.name.endswith(DIST_SUFFIXES):
            projects[si.project_of(p.name)].append(read_dist(p))
    return dict(projects)


def render_tree(projects: dict[str, list[si.LocalDist]], files_rel: str) -> dict[str, str]:
    """relative path -> text. `files_rel`: path from simple/ to the files' directory."""
    prefix = "../" + (files_rel.rstrip("/") + "/" if files_rel not in ("", ".") else "")
    out = {"index.html": si.render_root_html(list(projects)),
           "index.json": si.render_root_json(list(projects))}
    for project, dists in projects.items():
        out[f"{project}/index.html"] = si.render_project_html(project, dists, prefix)
        out[f"{project}/index.json"] = si.render_project_json(project, dists, prefix)
    return out


# --------------------------------------------------------------------------- atomic swap

_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD = -100
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def write_tree_atomic(target: Path, files: dict[str, str]) -> None:
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            d.chmod(0o755)
        if not target.exists():
            os.rename(tmp, target)                  # atomic
            return
        if not target.is_dir():
            raise si.SimpleIndexError(f"{target} exists and is not a directory; move it away")
        if _exchange(tmp, target):                  # atomic swap; old tree now at tmp
            shutil.rmtree(tmp)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / "x")                # fallback: two renames, microseconds apart
        os.rename(tmp, target)
        shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_index(directory: Path, output: Path | None = None) -> tuple[Path, dict[str, list[si.LocalDist]]]:
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise si.SimpleIndexError(f"{directory}: not a directory; pass the directory that holds the wheels")
    output = Path(output).resolve() if output else directory / "simple"
    projects = scan(directory)
    if not projects:
        raise si.SimpleIndexError(f"{directory}: no .whl/.tar.gz/.zip files; copy the wheels there first")
    files_rel = os.path.relpath(directory, output).replace(os.sep, "/")
    write_tree_atomic(output, render_tree(projects, files_rel))
    return output, projects


def add_arguments(parser) -> None:
    parser.add_argument("directory", metavar="DIR", type=Path, help="directory holding the wheels/sdists")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="where the index goes (default DIR/simple); links to the files are relative")


def run(args) -> int:
    try:
        output, projects = build_index(args.directory, args.output)
    except si.SimpleIndexError as e:
        print(f"blackwheel index: error: {e}", file=sys.stderr)
        return 2
    n = sum(len(v) for v in projects.values())
    print(f"wrote {output} ({len(projects)} projects, {n} files; PEP 503 index.html + PEP 691 index.json)")
    for project, dists in sorted(projects.items()):
        for d in dists:
            print(f"  {project}: {d.filename} sha256={d.sha256}")
    return 0
