"""Upstream sources: fetch pinned artifacts from the package index pip uses into a
content-addressed cache, verify sha256, unpack atomically, apply patches strictly.

Layout of the cache ($BLACKWHEEL_CACHE, default the user cache dir):
  blobs/<sha256>/<filename>          the artifact as downloaded, verified
  manifests/<name>-<version>-<key>.json   sha256 of every file of our own unpack + patches
  trees/<name>-<version>-<key>/      only from a bundle (`sources --bundle`), for offline hosts

Compiled trees live at one fixed path on every machine, the source root
(/tmp/blackwheel-src/<name>-<version>-<key>/, key = hash of blob sha256 + patches):
nvcc hashes a source's real path into internal symbol names, so the compile path
must not depend on the cache, the user or the checkout. Every tree there is
verified against its manifest before each build.

No network is touched when the cache already holds what is needed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path

from blackwheel_factory.inputs.hashing import sha256_file  # noqa: F401  (re-exported)
from typing import Callable, Iterable

from blackwheel_factory.inputs.config import Inputs, Source


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


def patch_files(config: Inputs, source: Source) -> list[Path]:
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
        "PIP_EXTRA_INDEX_URL), or put it into the cache with `python -m blackwheel_factory sources --add FILE`.")


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
                          f"fill the cache on a machine with index access (`python -m blackwheel_factory sources`)")
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


# ---------------------------------------------------------------- integrity
#
# A tree is compiled only after it has been proven to be the pinned artifact plus
# the listed patches: its manifest (relative path -> sha256 of every file) is
# computed from our own unpack of the sha256-verified blob and kept in the cache
# (<cache>/manifests/<tree>.json, outside the tree); before each build the tree is
# hashed again and compared (measured: ~0.3 s for vLLM's 150 MB tree). A tree that
# differs is reported file by file, set aside (<root>/.set-aside/) and re-created.

MANIFEST_SCHEMA = 1


def file_digests(root: Path, stat_cache: dict | None = None) -> dict[str, str]:
    """{relative posix path: sha256} of every file under root; symlinks count as
    files named '-> target' (never followed: a link out of the tree is a difference).

    stat_cache ({rel: [size, mtime_ns, ctime_ns, inode, sha256]}, updated in place)
    skips re-hashing a file whose lstat is unchanged, as git's index does: ctime
    cannot be set back by a user, so an edit always changes it (measured: verifying
    vLLM's 150 MB tree drops from ~3-5 s to ~0.1 s)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    stack = [(str(root), "")]
    while stack:                       # os.scandir + strings: ~10x faster than pathlib here
        path, prefix = stack.pop()
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = prefix + e.name
            if e.is_symlink():
                out[rel] = "-> " + os.readlink(e.path)
            elif e.is_dir(follow_symlinks=False):
                stack.append((e.path, rel + "/"))
            elif stat_cache is None:
                out[rel] = sha256_file(Path(e.path))
            else:
                st = e.stat(follow_symlinks=False)
                key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                hit = stat_cache.get(rel)
                if hit is not None and hit[:4] == key:
                    out[rel] = hit[4]
                else:
                    out[rel] = sha256_file(Path(e.path))
                    stat_cache[rel] = key + [out[rel]]
                seen.add(rel)
    if stat_cache is not None:
        for rel in set(stat_cache) - seen:
            del stat_cache[rel]
    return out


def _stat_cache_path(cache: Path, tree: Path) -> Path:
    key = hashlib.sha256(str(tree).encode()).hexdigest()[:12]
    return cache / "manifests" / f"{tree.name}.stat-{key}.json"


def verify_tree(tree: Path, expected: dict[str, str], cache: Path | None = None) -> list[str]:
    """compare_tree of the tree as it is now against expected; with a cache, unchanged
    files (same lstat incl. ctime) are not hashed again."""
    if cache is None:
        return compare_tree(file_digests(tree), expected)
    path = _stat_cache_path(cache, tree)
    try:
        stat_cache = json.loads(path.read_text())
        if not isinstance(stat_cache, dict):
            stat_cache = {}
    except (OSError, ValueError):
        stat_cache = {}
    problems = compare_tree(file_digests(tree, stat_cache), expected)
    if not problems:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(stat_cache))
        os.replace(tmp, path)
    else:
        path.unlink(missing_ok=True)
    return problems


def digest_of(files: dict[str, str]) -> str:
    """One sha256 over a manifest's files (sorted paths and their digests)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


def compare_tree(files: dict[str, str], expected: dict[str, str]) -> list[str]:
    """'changed: p' / 'missing: p' / 'added: p' for every file that differs (pure)."""
    out = [f"changed: {p}" for p in sorted(set(files) & set(expected)) if files[p] != expected[p]]
    out += [f"missing: {p}" for p in sorted(set(expected) - set(files))]
    out += [f"added: {p}" for p in sorted(set(files) - set(expected))]
    return out


def source_root(env: dict | None = None) -> Path:
    """Where every compiled source lives: the same absolute path on every machine,
    because nvcc hashes the *real* path of a .cu into its internal symbol names.
    BLACKWHEEL_SRC_ROOT moves it (tests only: another root gives other binaries)."""
    env = os.environ if env is None else env
    return Path(env.get("BLACKWHEEL_SRC_ROOT") or CANONICAL_ROOT)


CANONICAL_ROOT = Path("/tmp/blackwheel-src")


def _ensure_root(root: Path) -> None:
    """The root is shared by every user of the machine, like /tmp: world-writable,
    sticky (each tree belongs to whoever created it; every build verifies before use)."""
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        try:
            root.chmod(0o1777)
        except OSError:
            pass


def manifest_path(cache: Path, tree_name: str) -> Path:
    return cache / "manifests" / f"{tree_name}.json"


def read_manifest(path: Path) -> dict | None:
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and isinstance(m.get("files"), dict) else None


def write_manifest(path: Path, manifest: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def set_aside(tree: Path, problems: list[str], log: Callable[[str], None]) -> Path | None:
    """Move a tree that failed verification out of the way (atomic rename), so that
    nothing compiles it; say which files differ. None if another build moved it first."""
    shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
    log(f"blackwheel: {tree} is not what was unpacked and verified; it will not be compiled:\n  "
        + "\n  ".join(shown))
    aside = tree.parent / ".set-aside" / f"{tree.name}.{os.getpid()}.{int(time.time() * 1000)}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tree, aside)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SourceError(f"{tree} differs from its manifest ({problems[0]}, ...) and cannot be "
                          f"moved aside ({e}); remove it (it may belong to another user)") from e
    log(f"blackwheel: set aside as {aside}; re-creating it from the verified source")
    return aside


def _publish_dir(tmp: Path, tree: Path) -> None:
    """rename tmp -> tree; a concurrent build that got there first wins (its tree is
    verified like any other before use)."""
    for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir() and not p.is_symlink())]:
        d.chmod(0o755)
    try:
        os.rename(tmp, tree)
    except OSError:
        if not tree.is_dir():
            raise


def _tree_inputs(source: Source, patches: list[Path]) -> dict:
    return {"source": source.filename, "sha256": source.sha256,
            "patches": {p.name: sha256_file(p) for p in patches}}


def _build_tree(config: Inputs, source: Source, patches: list[Path], cache: Path, dest_parent: Path,
                indexes_box: list, log: Callable[[str], None]) -> Path:
    """Unpack + patch the verified blob into a new temp dir under dest_parent (or copy
    a bundle's verified tree); returns the temp dir with its manifest in the cache."""
    name = f"{source.key}-{tree_key(source, patches)}"
    blob = blob_path(cache, source)
    tmp = Path(tempfile.mkdtemp(dir=dest_parent, prefix=f".{source.key}-"))
    try:
        bundled = cache / "trees" / name
        bundled_man = read_manifest(manifest_path(cache, name))
        if not blob.is_file() and bundled.is_dir() and bundled_man is not None:
            # a host without network: a bundle (`sources --bundle`) holds the tree and its manifest
            problems = compare_tree(file_digests(bundled), bundled_man["files"])
            if problems:
                set_aside(bundled, problems, log)
                raise SourceError(f"the bundled tree {bundled} differs from its manifest and the blob "
                                  f"{source.filename} is not cached; fetch it (`python -m blackwheel_factory "
                                  f"sources --add FILE`) or bring a fresh bundle")
            shutil.copytree(bundled, tmp, dirs_exist_ok=True, symlinks=True)
            return tmp
        if not blob.is_file():
            if indexes_box[0] is None and not os.environ.get("BLACKWHEEL_OFFLINE"):
                indexes_box[0] = pip_indexes()
            blob = fetch(cache, source, indexes_box[0], log)
        elif sha256_file(blob) != source.sha256:
            raise SourceError(f"cached {blob} does not match its sha256 pin; delete it and rebuild")
        unpack(blob, tmp, source.members)
        src_root = tmp / source.root if source.root else tmp
        for p in patches:
            log(f"blackwheel: applying {p.parent.name}/{p.name}")
            apply_patch(src_root, p)
        files = file_digests(tmp)
        write_manifest(manifest_path(cache, name),
                       {"schema": MANIFEST_SCHEMA, "tree": name, **_tree_inputs(source, patches),
                        "digest": digest_of(files), "files": files})
        return tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prepare(config: Inputs, names: Iterable[str], cache: Path | None = None,
            log: Callable[[str], None] = print, root: Path | None = None) -> dict[str, Path]:
    """Fetch, verify, unpack and patch each named source into the canonical source
    root; verify every existing tree against its manifest first. {name: source root}."""
    cache = cache or default_cache_dir()
    root = root or source_root()
    _ensure_root(root)
    out: dict[str, Path] = {}
    indexes_box: list = [None]
    for name in names:
        source = config.sources[name]
        patches = patch_files(config, source)
        tree_name = f"{source.key}-{tree_key(source, patches)}"
        tree = root / tree_name
        # each pass moves one step: record -> tree -> verified (or set aside -> tree again)
        for _attempt in range(5):
            manifest = read_manifest(manifest_path(cache, tree_name))
            if manifest is None or manifest.get("sha256") != source.sha256:
                # no record of our own unpack (first use, another user's tree, an older
                # cache layout): unpack the verified blob ourselves, which writes it
                fresh = _build_tree(config, source, patches, cache, root, indexes_box, log)
                try:
                    if not tree.is_dir():
                        _publish_dir(fresh, tree)
                finally:
                    shutil.rmtree(fresh, ignore_errors=True)
                continue
            if not tree.is_dir():
                fresh = _build_tree(config, source, patches, cache, root, indexes_box, log)
                try:
                    _publish_dir(fresh, tree)
                finally:
                    shutil.rmtree(fresh, ignore_errors=True)
                continue
            problems = verify_tree(tree, manifest["files"], cache)
            if not problems:
                break
            set_aside(tree, problems, log)
        else:
            raise SourceError(f"{tree} keeps changing while it is verified (another process "
                              f"writes into it?); not compiling it")
        out[name] = tree / source.root if source.root else tree
    return out


def tree_digest(root: Path) -> str:
    """Content hash of a directory (paths and file bytes, no mtimes), 16 hex digits."""
    return digest_of(file_digests(root))[:16]


def stage_tree(src: Path, root: Path | None = None, name: str = "blackwheel-csrc",
               log: Callable[[str], None] = print) -> Path:
    """Copy ``src`` (the project's own csrc/) to <root>/<name>-<digest>, content-addressed.
    nvcc names internal-linkage device symbols (_INTERNAL_<hash>_...) after the *real*
    path of the source file, so a .cu compiled from the checkout differs between two
    checkouts; compiled from the canonical root it is the same for every checkout and
    machine (measured with nvcc 13.0.88: neither -frandom-seed, prefix maps, relative
    paths nor symlinks change that hash). The checkout is the truth: an existing copy
    that differs from it is set aside and copied again."""
    root = root or source_root()
    _ensure_root(root)
    expected = file_digests(src)
    tree = root / f"{name}-{digest_of(expected)[:16]}"
    for _attempt in range(3):
        if tree.is_dir():
            problems = compare_tree(file_digests(tree), expected)
            if not problems:
                return tree
            set_aside(tree, problems, log)
            continue
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True, symlinks=True)
            _publish_dir(tmp, tree)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise SourceError(f"{tree} keeps changing while it is verified; not compiling it")


def work_tree(tree: Path, salt: str, log: Callable[[str], None] = print) -> Path:
    """A writable copy of a verified tree, for an upstream build that writes into its
    own source tree (vLLM's kernel generators write .cu files next to their
    templates): <tree>.work-<salt>, beside it under the fixed source root, so that the
    verified tree stays as its manifest says. ``salt`` names what the generated files
    depend on (the archs). Reused when every file of the tree is still as it was
    (generated files, absent from the tree, are allowed); else copied again."""
    work = tree.with_name(f"{tree.name}.work-{salt}")
    expected = file_digests(tree)
    for _attempt in range(3):
        if work.is_dir():
            problems = [p for p in compare_tree(file_digests(work), expected)
                        if not p.startswith("added: ")]
            if not problems:
                return work
            set_aside(work, problems, log)
            continue
        tmp = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{work.name}-"))
        try:
            shutil.copytree(tree, tmp, dirs_exist_ok=True, symlinks=True)
            _publish_dir(tmp, work)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"blackwheel: working copy {work}")
    raise SourceError(f"{work} keeps changing while it is verified; not building from it")


def source_records(config: Inputs, names: Iterable[str], cache: Path | None = None) -> list[dict]:
    """What goes into the build record for each source: the artifact and patches by
    sha256, and (with the cache) the digest of the verified tree that was compiled."""
    recs = []
    for name in names:
        s = config.sources[name]
        patches = patch_files(config, s)
        rec = {
            "name": s.name, "dist": s.dist, "version": s.version, "filename": s.filename,
            "sha256": s.sha256,
            "patches": [{"name": p.name, "sha256": sha256_file(p)} for p in patches],
        }
        if cache is not None:
            m = read_manifest(manifest_path(cache, f"{s.key}-{tree_key(s, patches)}"))
            if m is not None:
                # the full tree's digest (a bundle's manifest keeps it for its subset)
                rec["tree_sha256"] = m.get("digest") or digest_of(m["files"])
        recs.append(rec)
    return recs


def write_bundle(config: Inputs, names: Iterable[str], cache: Path, out: Path,
                 root: Path | None = None) -> list[str]:
    """A tar.gz of the prepared trees (only the `bundle` prefixes of each source) and
    their manifests (restricted to those files), laid out like the cache, for building
    on a host without network: `tar xzf BUNDLE -C $BLACKWHEEL_CACHE` there, then build
    with BLACKWHEEL_OFFLINE=1 (each tree is verified against its manifest there too)."""
    dirs = prepare(config, names, cache, log=lambda m: None, root=root)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    added: list[str] = []
    with tarfile.open(tmp, "w:gz") as tf:
        for name in names:
            source = config.sources[name]
            top = (root or source_root()) / f"{source.key}-{tree_key(source, patch_files(config, source))}"
            man = read_manifest(manifest_path(cache, top.name))
            prefix = f"{source.root}/" if source.root else ""
            keep = {rel: d for rel, d in man["files"].items()
                    if not source.bundle or any(rel.startswith(prefix + b) for b in source.bundle)}
            for rel in sorted(keep):
                tf.add(top / rel, arcname=f"trees/{top.name}/{rel}", recursive=False)
            data = json.dumps({**man, "files": keep, "bundle": list(source.bundle)},
                              indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(f"manifests/{top.name}.json")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            added.append(top.name)
    os.replace(tmp, out)
    return added
