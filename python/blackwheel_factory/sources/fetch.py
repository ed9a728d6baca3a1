"""Upstream sources: fetch pinned artifacts from the package index pip uses into a
content-addressed cache, verify sha256, unpack atomically, apply patches strictly.

Layout of the cache ($BLACKWHEEL_CACHE, default the user cache dir):
  blobs/<sha256>/<filename>          the artifact as downloaded, verified
  trees/<name>-<version>-<key>/      unpacked + patched tree (key = hash of inputs)

No network is touched when the cache already holds what is needed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path

from blackwheel_factory.inputs.hashing import sha256_file  # noqa: F401  (re-exported)
from typing import Callable, Iterable

from blackwheel_factory.inputs.config import Config, Source


class SourceError(RuntimeError):
    """A source could not be fetched, verified, unpacked or patched."""


# ---------------------------------------------------------------- pure helpers

def default_cache_dir(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("BLACKWHEEL_CACHE"):
        return Path(env["BLACKWHEEL_CACHE"]).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "blackwheel"


def normalize(name: str) -> str:
    """PEP 503 project name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def patch_files(config: Config, source: Source) -> list[Path]:
    d = config.patches_dir / source.key
    return sorted(d.glob("*.patch")) if d.is_dir() else []


def tree_key(source: Source, patches: Iterable[Path]) -> str:
    """Hash of everything that decides the unpacked tree's content."""
    h = hashlib.sha256()
    h.update(source.sha256.encode())
    h.update(json.dumps([source.members, source.root]).encode())
    for p in patches:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).hexdigest().encode())
    return h.hexdigest()[:16]




class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None:
            self.links.append((data.strip(), self._href))
            self._href = None


def find_file_url(page: bytes, content_type: str, base_url: str, filename: str) -> str | None:
    """URL of `filename` in a simple-index project page (PEP 691 JSON or PEP 503 HTML)."""
    if "json" in content_type:
        data = json.loads(page)
        for f in data.get("files", []):
            if f.get("filename") == filename:
                return urllib.parse.urljoin(base_url, f["url"])
        return None
    parser = _Links()
    parser.feed(page.decode("utf-8", "replace"))
    for text, href in parser.links:
        path_name = urllib.parse.unquote(urllib.parse.urlparse(href).path.rsplit("/", 1)[-1])
        if text == filename or path_name == filename:
            return urllib.parse.urljoin(base_url, href)
    return None


# ---------------------------------------------------------------- index config

def pip_indexes(env: dict | None = None) -> list[str]:
    """Index URLs in pip's order: PIP_INDEX_URL / index-url, then extra-index-url(s).
    Reads pip's own configuration through `pip config list`."""
    env = os.environ if env is None else env
    cfg: dict[str, str] = {}
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, timeout=60, env=dict(env)).stdout
        for line in out.splitlines():
            m = re.match(r"^[^.]+\.([a-z-]+)='(.*)'$", line.strip())
            if m:
                cfg.setdefault(m.group(1), m.group(2))  # pip lists the winning value first
    except (OSError, subprocess.SubprocessError):
        pass
    index = env.get("PIP_INDEX_URL") or cfg.get("index-url") or "https://pypi.org/simple"
    extras = env.get("PIP_EXTRA_INDEX_URL") or cfg.get("extra-index-url") or ""
    urls = [index] + [u for u in extras.split() if u]
    return [u.rstrip("/") + "/" for u in urls]


# ---------------------------------------------------------------- effects

def _open(url: str, accept: str | None = None, timeout: float = 120):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(req, timeout=timeout)


def locate(source: Source, indexes: list[str]) -> str:
    tried = []
    for index in indexes:
        page_url = f"{index}{normalize(source.dist)}/"
        try:
            if page_url.startswith("file:"):
                local = Path(urllib.request.url2pathname(urllib.parse.urlparse(page_url).path))
                if (local / source.filename).is_file():
                    return (local / source.filename).as_uri()
                idx = local / "index.html"
                if not idx.is_file():
                    tried.append(f"{page_url} (no such project)")
                    continue
                body, ctype, base = idx.read_bytes(), "text/html", page_url
            else:
                with _open(page_url, "application/vnd.pypi.simple.v1+json, text/html;q=0.1") as r:
                    body, ctype, base = r.read(), r.headers.get("Content-Type", ""), r.geturl()
        except Exception as e:  # network errors, 404
            tried.append(f"{page_url} ({e})")
            continue
        url = find_file_url(body, ctype, base, source.filename)
        if url:
            return url
        tried.append(f"{page_url} (no file {source.filename})")
    raise SourceError(
        f"cannot find {source.filename} ({source.dist} {source.version}) on any index:\n  " +
        "\n  ".join(tried) +
        "\nFix: make the file reachable through pip's index configuration (PIP_INDEX_URL / "
        "PIP_EXTRA_INDEX_URL), or put it into the cache with `python -m blackwheel sources --add FILE`.")


def blob_path(cache: Path, source: Source) -> Path:
    return cache / "blobs" / source.sha256 / source.filename


def add_blob(cache: Path, source: Source, file: Path) -> Path:
    """Copy a local artifact into the cache after checking its sha256."""
    got = sha256_file(file)
    if got != source.sha256:
        raise SourceError(f"{file}: sha256 {got} does not match the pin {source.sha256} "
                          f"for {source.filename} in blackwheel.toml")
    dest = blob_path(cache, source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.copyfile(file, tmp)
    os.replace(tmp, dest)
    return dest


def fetch(cache: Path, source: Source, indexes: list[str] | None = None,
          log: Callable[[str], None] = print) -> Path:
    """The verified artifact in the cache; downloads it if missing."""
    dest = blob_path(cache, source)
    if dest.is_file():
        return dest
    if os.environ.get("BLACKWHEEL_OFFLINE"):
        raise SourceError(f"{source.filename} is not in the cache {cache} and BLACKWHEEL_OFFLINE is set; "
                          f"fill the cache on a machine with index access (`python -m blackwheel sources`)")
    url = locate(source, indexes if indexes is not None else pip_indexes())
    log(f"blackwheel: fetching {source.filename} from {urllib.parse.urlparse(url).netloc or url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".dl-")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, _open(url, timeout=600) as r:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != source.sha256:
            raise SourceError(
                f"{source.filename} from {url} has sha256 {h.hexdigest()}, but blackwheel.toml pins "
                f"{source.sha256}. The index serves different bytes than the pin: do not build from it; "
                f"check the index, or update the pin on purpose.")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _safe_members(names: Iterable[str], members: tuple[str, ...]) -> None:
    for n in names:
        if n.startswith("/") or ".." in Path(n).parts:
            raise SourceError(f"refusing archive member with unsafe path: {n}")


def unpack(archive: Path, dest: Path, members: tuple[str, ...] = ()) -> None:
    """Unpack archive into dest (which must not exist). sdists have one top-level
    directory, which is stripped."""
    def wanted(name: str) -> bool:
        return not members or any(name.startswith(m) for m in members)

    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tf:
            infos = [m for m in tf.getmembers() if m.isfile() or m.isdir() or m.issym()]
            _safe_members([m.name for m in infos], members)
            top = {m.name.split("/", 1)[0] for m in infos}
            strip = len(top) == 1
            for m in infos:
                name = m.name.split("/", 1)[1] if strip and "/" in m.name else (None if strip else m.name)
                if not name or not wanted(name):
                    continue
                target = dest / name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif m.issym():
                    continue  # sdists we use carry none we need
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(m) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                    if m.mode & 0o111:
                        target.chmod(0o755)
    elif archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and wanted(n)]
            _safe_members(names, members)
            for n in names:
                target = dest / n
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(n) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    else:
        raise SourceError(f"{archive.name}: unknown archive type (want .tar.gz, .whl or .zip)")


def apply_patch(tree: Path, patch: Path) -> None:
    """Apply one patch strictly: no fuzz, no reversed hunks; the patch's name in the error."""
    cmd = ["patch", "-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch",
           "-r", "-", "-i", str(patch)]
    r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if r.returncode != 0:
        raise SourceError(f"patch {patch.parent.name}/{patch.name} does not apply cleanly:\n"
                          f"{(r.stdout + r.stderr).strip()}\n"
                          f"Fix: regenerate the patch against the pinned source.")


def prepare(config: Config, names: Iterable[str], cache: Path | None = None,
            log: Callable[[str], None] = print) -> dict[str, Path]:
    """Fetch, verify, unpack and patch each named source; return {name: source root}."""
    cache = cache or default_cache_dir()
    out: dict[str, Path] = {}
    indexes: list[str] | None = None
    for name in names:
        source = config.sources[name]
        patches = patch_files(config, source)
        tree = cache / "trees" / f"{source.key}-{tree_key(source, patches)}"
        if not (tree / ".blackwheel-complete").is_file():
            blob = blob_path(cache, source)
            if not blob.is_file():
                indexes = indexes if indexes is not None else pip_indexes()
                blob = fetch(cache, source, indexes, log)
            elif sha256_file(blob) != source.sha256:
                raise SourceError(f"cached {blob} does not match its sha256 pin; delete it and rebuild")
            tree.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{source.key}-"))
            try:
                unpack(blob, tmp, source.members)
                root = tmp / source.root if source.root else tmp
                for p in patches:
                    log(f"blackwheel: applying {p.parent.name}/{p.name}")
                    apply_patch(root, p)
                record = {"source": source.filename, "sha256": source.sha256,
                          "patches": {p.name: sha256_file(p) for p in patches}}
                (tmp / ".blackwheel-complete").write_text(json.dumps(record, indent=1))
                try:
                    os.rename(tmp, tree)
                except OSError:
                    if not (tree / ".blackwheel-complete").is_file():
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        out[name] = tree / source.root if source.root else tree
    return out


def tree_digest(root: Path) -> str:
    """Content hash of a directory: sorted relative paths and file bytes (no mtimes)."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        h.update(f"{rel}\0{f.stat().st_size}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def stage_tree(src: Path, cache: Path, name: str) -> Path:
    """Copy ``src`` (the project's own csrc/) into the cache, content-addressed:
    <cache>/trees/<name>-<digest>. nvcc names internal-linkage device symbols
    (_INTERNAL_<hash>_...) after the *real* path of the source file, so a .cu
    compiled from the checkout differs between two checkouts; compiled from the
    cache it is the same for every checkout (measured with nvcc 13.0.88: neither
    -frandom-seed, prefix maps, relative paths nor symlinks change that hash)."""
    tree = cache / "trees" / f"{name}-{tree_digest(src)}"
    if (tree / ".blackwheel-complete").is_file():
        return tree
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{name}-"))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        (tmp / ".blackwheel-complete").write_text(json.dumps({"copied_from": name}))
        try:
            os.rename(tmp, tree)
        except OSError:
            if not (tree / ".blackwheel-complete").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return tree


def source_records(config: Config, names: Iterable[str]) -> list[dict]:
    """What goes into the build record for each source."""
    recs = []
    for name in names:
        s = config.sources[name]
        recs.append({
            "name": s.name, "dist": s.dist, "version": s.version, "filename": s.filename,
            "sha256": s.sha256,
            "patches": [{"name": p.name, "sha256": sha256_file(p)} for p in patch_files(config, s)],
        })
    return recs


def write_bundle(config: Config, names: Iterable[str], cache: Path, out: Path) -> list[str]:
    """A tar.gz of the prepared trees (only the `bundle` prefixes of each source),
    laid out like the cache, for building on a host without network:
    `tar xzf BUNDLE -C $BLACKWHEEL_CACHE` there, then build with BLACKWHEEL_OFFLINE=1."""
    dirs = prepare(config, names, cache, log=lambda m: None)
    trees = cache / "trees"
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    added: list[str] = []
    with tarfile.open(tmp, "w:gz") as tf:
        for name in names:
            source = config.sources[name]
            top = next(p for p in (dirs[name], *dirs[name].parents) if p.parent == trees)
            tf.add(top / ".blackwheel-complete", arcname=f"trees/{top.name}/.blackwheel-complete")
            root = dirs[name]
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root).as_posix()
                if not path.is_file() or (source.bundle and not any(rel.startswith(b) for b in source.bundle)):
                    continue
                tf.add(path, arcname=f"trees/{path.relative_to(trees).as_posix()}")
            added.append(top.name)
    os.replace(tmp, out)
    return added
