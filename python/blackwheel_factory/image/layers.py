"""Reading exported images (containers `dir:` layout or an OCI image layout): compare two
images down to the files of each layer, and scan every blob for a secret.

An image is a manifest, a config (which holds the history) and layer tars. Two builds of
the same inputs must give the same manifest digest; when they do not, `compare` says which
part differs: the config (which keys), or which layer, and in it which files (content,
mode, owner, mtime, link target, or only in one of them).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

_CHUNK = 1 << 22


@dataclass(frozen=True)
class Export:
    path: Path
    manifest_bytes: bytes
    manifest: dict
    config: dict
    blobs: dict[str, Path]          # digest -> file

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def layer_digests(self) -> list[str]:
        return [l["digest"] for l in self.manifest["layers"]]


def read_export(path: Path) -> Export:
    """`buildah push IMG dir:PATH` output, or an OCI image layout (index.json, one manifest)."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        mbytes = (path / "manifest.json").read_bytes()

        def blob(d: str) -> Path:
            return path / d.split(":", 1)[1]
    elif (path / "index.json").is_file():
        index = json.loads((path / "index.json").read_text())
        if len(index.get("manifests", [])) != 1:
            raise ValueError(f"{path}: an OCI layout with {len(index.get('manifests', []))} manifests; "
                             "export one image per directory")

        def blob(d: str) -> Path:
            algo, hexd = d.split(":", 1)
            return path / "blobs" / algo / hexd
        mbytes = blob(index["manifests"][0]["digest"]).read_bytes()
    else:
        raise ValueError(f"{path}: neither a `dir:` export (manifest.json) nor an OCI layout (index.json); "
                         "export with `buildah push --disable-compression IMG dir:PATH`")
    manifest = json.loads(mbytes)
    config = json.loads(blob(manifest["config"]["digest"]).read_bytes())
    blobs = {manifest["config"]["digest"]: blob(manifest["config"]["digest"])}
    for layer in manifest["layers"]:
        blobs[layer["digest"]] = blob(layer["digest"])
    return Export(path, mbytes, manifest, config, blobs)


def _open_layer(p: Path):
    with open(p, "rb") as f:
        magic = f.read(2)
    return gzip.open(p, "rb") if magic == b"\x1f\x8b" else open(p, "rb")


# --------------------------------------------------------------------------- members

@dataclass(frozen=True)
class Member:
    kind: str          # file, dir, symlink, hardlink, char, block, fifo
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    link: str
    sha256: str        # content (files)
    pax: tuple = ()    # extended headers (xattrs, ...), sorted

    def differences(self, other: "Member") -> list[str]:
        out = []
        for f in ("kind", "mode", "uid", "gid", "mtime", "size", "link", "sha256", "pax"):
            a, b = getattr(self, f), getattr(other, f)
            if a != b:
                if f == "mode":
                    a, b = oct(a), oct(b)
                if f == "sha256":
                    a, b = a[:12], b[:12]
                out.append(f"{f} {a} != {b}")
        return out


_KINDS = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
          tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
          tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def members(layer: Path) -> tuple[list[str], dict[str, Member]]:
    """(order of names, name -> Member) of a layer tar, read as a stream."""
    order, out = [], {}
    with _open_layer(layer) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for ti in tar:
            sha = ""
            if ti.isfile():
                h = hashlib.sha256()
                f = tar.extractfile(ti)
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    h.update(chunk)
                sha = h.hexdigest()
            pax = tuple(sorted((k, v) for k, v in ti.pax_headers.items()
                               if k not in ("path", "linkpath", "size", "mtime", "uid", "gid")))
            name = ti.name.lstrip("./") or "."
            order.append(name)
            out[name] = Member(_KINDS.get(ti.type, repr(ti.type)), ti.mode, ti.uid, ti.gid, int(ti.mtime),
                               ti.size, ti.linkname, sha, pax)
    return order, out


@dataclass
class LayerDiff:
    index: int
    a: str
    b: str
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    changed: list[tuple[str, list[str]]] = field(default_factory=list)
    reordered: bool = False


def diff_members(a: tuple[list[str], dict[str, Member]], b: tuple[list[str], dict[str, Member]],
                 index: int = 0, da: str = "", db: str = "") -> LayerDiff:
    """Pure: what differs between two layers' member lists."""
    (oa, ma), (ob, mb) = a, b
    d = LayerDiff(index, da, db)
    d.only_a = [n for n in oa if n not in mb]
    d.only_b = [n for n in ob if n not in ma]
    for n in oa:
        if n in mb:
            why = ma[n].differences(mb[n])
            if why:
                d.changed.append((n, why))
    common_a = [n for n in oa if n in mb]
    common_b = [n for n in ob if n in ma]
    d.reordered = common_a != common_b
    return d


def diff_json(a, b, path: str = "") -> list[str]:
    """Pure: the paths (config.Env[2], history[3].created) where two JSON values differ."""
    if type(a) is not type(b):
        return [f"{path or '.'}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'B' if k not in a else 'A'}")
            else:
                out += diff_json(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        out = [f"{path}: {len(a)} entries != {len(b)}"] if len(a) != len(b) else []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff_json(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path or '.'}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"]


def compare(a: Export, b: Export, limit: int = 40) -> list[str]:
    """Lines that explain how two images differ (empty when the manifests are identical)."""
    if a.digest == b.digest:
        return []
    out = [f"manifest {a.digest} (A) != {b.digest} (B)"]
    if a.manifest["config"]["digest"] != b.manifest["config"]["digest"]:
        diffs = diff_json(a.config, b.config)
        out.append(f"config differs ({len(diffs)} values):")
        out += [f"  {line}" for line in diffs[:limit]]
    la, lb = a.layer_digests, b.layer_digests
    if len(la) != len(lb):
        out.append(f"layer count {len(la)} (A) != {len(lb)} (B)")
    for i, (x, y) in enumerate(zip(la, lb)):
        if x == y:
            out.append(f"layer {i}: identical ({x[:19]})")
            continue
        d = diff_members(members(a.blobs[x]), members(b.blobs[y]), i, x, y)
        out.append(f"layer {i}: {x[:19]} (A) != {y[:19]} (B): {len(d.changed)} files differ, "
                   f"{len(d.only_a)} only in A, {len(d.only_b)} only in B"
                   + (", same files in another order" if d.reordered else ""))
        if d.changed:
            counts: dict[str, int] = {}
            for _, why in d.changed:
                for w in why:
                    counts[w.split()[0]] = counts.get(w.split()[0], 0) + 1
            out.append("  by attribute: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        out += [f"  {n}: {'; '.join(why)}" for n, why in d.changed[:limit]]
        out += [f"  only in A: {n}" for n in d.only_a[:limit]]
        out += [f"  only in B: {n}" for n in d.only_b[:limit]]
    ma = {k: v for k, v in a.manifest.items() if k not in ("config", "layers")}
    mb = {k: v for k, v in b.manifest.items() if k not in ("config", "layers")}
    out += [f"manifest{line}" for line in diff_json(ma, mb)]
    return out


# --------------------------------------------------------------------------- secret scan

def scan(export: Export, needles: list[bytes], read: list | None = None) -> list[tuple[str, str]]:
    """(blob, what) for every blob (manifest, config with the history, every layer as its tar
    bytes: names, headers and contents) holding one of `needles`. `read`, when given, gets
    the number of bytes looked at appended (the proof that every byte was)."""
    needles = [n for n in needles if n]
    found = []
    total = 0
    keep = max((len(n) for n in needles), default=1) - 1
    items = [("manifest", None, export.manifest_bytes)]
    items += [(f"config {export.manifest['config']['digest'][:19]}",
               export.blobs[export.manifest["config"]["digest"]], None)]
    items += [(f"layer {i} {d[:19]}", export.blobs[d], None) for i, d in enumerate(export.layer_digests)]
    for label, path, data in items:
        hits = set()
        if data is not None:
            hits = {n for n in needles if n in data}
            total += len(data)
        else:
            tail = b""
            with _open_layer(path) as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    total += len(chunk)
                    window = tail + chunk
                    hits |= {n for n in needles if n in window}
                    tail = window[-keep:] if keep else b""
        found += [(label, f"{len(n)}-byte secret") for n in sorted(hits)]
    if read is not None:
        read.append(total)
    return found
