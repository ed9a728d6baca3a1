"""The "simple" repository API (PEP 503 HTML, PEP 691 JSON): parse, render, decide.

Pure: strings and dataclasses in, strings and dataclasses out. No file or network
access here; publish.py, index.py and constraints.py do the effects.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"
# What a client asks for: JSON first, then either HTML flavour (PEP 691).
ACCEPT = f"{JSON_CONTENT_TYPE}, {HTML_CONTENT_TYPE};q=0.2, text/html;q=0.01"
API_VERSION = "1.0"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SimpleIndexError(ValueError):
    """A page of an index, or a file name, is not what the simple API allows."""


@dataclass(frozen=True)
class IndexFile:
    """One file as an index lists it."""
    filename: str
    url: str                                   # absolute
    hashes: dict = field(default_factory=dict)  # {"sha256": "..."} ; may be empty or md5 only
    requires_python: str | None = None
    yanked: bool | str = False

    @property
    def sha256(self) -> str | None:
        value = self.hashes.get("sha256")
        return value.lower() if value else None


@dataclass(frozen=True)
class LocalDist:
    """One distribution file on disk, as index.py reads it."""
    filename: str
    sha256: str
    requires_python: str | None = None


def project_of(filename: str) -> str:
    """Normalized project name of a wheel or sdist file name; SimpleIndexError if it is neither."""
    try:
        if filename.endswith(".whl"):
            return canonicalize_name(parse_wheel_filename(filename)[0])
        if filename.endswith((".tar.gz", ".zip")):
            return canonicalize_name(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename) as e:
        raise SimpleIndexError(f"{filename}: not a valid distribution file name ({e}); "
                          "rename it as `pip wheel`/`python -m build` would, or remove it") from e
    raise SimpleIndexError(f"{filename}: not a wheel (.whl) or sdist (.tar.gz, .zip); remove it from the directory")


def version_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return str(parse_wheel_filename(filename)[1])
    return str(parse_sdist_filename(filename)[1])


# --------------------------------------------------------------------------- parse

class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.anchors.append({k: (v if v is not None else "") for k, v in attrs})


def _hashes_from_fragment(fragment: str) -> dict:
    if "=" not in fragment:
        return {}
    algo, _, value = fragment.partition("=")
    return {algo.lower(): value.lower()}


def parse_project_html(text: str, page_url: str) -> list[IndexFile]:
    """Files of a PEP 503 project page; hrefs are resolved against page_url."""
    p = _Anchors()
    p.feed(text)
    files = []
    for a in p.anchors:
        href = a.get("href")
        if not href:
            continue
        url, fragment = urldefrag(urljoin(page_url, href))
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        yanked: bool | str = False
        if "data-yanked" in a:
            yanked = a["data-yanked"] or True
        files.append(IndexFile(filename=filename, url=url, hashes=_hashes_from_fragment(fragment),
                               requires_python=a.get("data-requires-python") or None, yanked=yanked))
    return files


def parse_project_json(text: str, page_url: str) -> list[IndexFile]:
    """Files of a PEP 691 project page."""
    try:
        data = json.loads(text)
        raw = data["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise SimpleIndexError(f"{page_url}: not a PEP 691 project page ({e})") from e
    files = []
    for f in raw:
        url, fragment = urldefrag(urljoin(page_url, f["url"]))
        hashes = {k.lower(): str(v).lower() for k, v in (f.get("hashes") or {}).items()}
        if not hashes:
            hashes = _hashes_from_fragment(fragment)
        files.append(IndexFile(filename=f["filename"], url=url, hashes=hashes,
                               requires_python=f.get("requires-python") or None,
                               yanked=f.get("yanked", False)))
    return files


def parse_project_page(text: str, content_type: str, page_url: str) -> list[IndexFile]:
    """Either form, by the response's Content-Type."""
    if "json" in (content_type or "").lower():
        return parse_project_json(text, page_url)
    return parse_project_html(text, page_url)


def find_file(files: list[IndexFile], filename: str) -> IndexFile | None:
    for f in files:
        if f.filename == filename:
            return f
    return None


# --------------------------------------------------------------------------- render

def _check_sha(d: LocalDist) -> None:
    if not _HEX64.match(d.sha256):
        raise SimpleIndexError(f"{d.filename}: sha256 must be 64 lowercase hex digits, got {d.sha256!r}")


def render_project_html(project: str, dists: list[LocalDist], href_prefix: str) -> str:
    """PEP 503 project page. href = href_prefix + filename (+ #sha256=...)."""
    name = canonicalize_name(project)
    lines = ["<!DOCTYPE html>", "<html>", "  <head>",
             f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
             f"    <title>Links for {html.escape(name)}</title>", "  </head>", "  <body>",
             f"    <h1>Links for {html.escape(name)}</h1>"]
    for d in sorted(dists, key=lambda d: d.filename):
        _check_sha(d)
        href = html.escape(href_prefix + _quote(d.filename) + f"#sha256={d.sha256}", quote=True)
        rp = (f' data-requires-python="{html.escape(d.requires_python, quote=True)}"'
              if d.requires_python else "")
        lines.append(f'    <a href="{href}"{rp}>{html.escape(d.filename)}</a><br>')
    lines += ["  </body>", "</html>"]
    return "\n".join(lines) + "\n"


def render_project_json(project: str, dists: list[LocalDist], href_prefix: str) -> str:
    """PEP 691 project page (same files and hashes as the HTML form)."""
    files = []
    for d in sorted(dists, key=lambda d: d.filename):
        _check_sha(d)
        entry = {"filename": d.filename, "url": href_prefix + _quote(d.filename),
                 "hashes": {"sha256": d.sha256}, "yanked": False}
        if d.requires_python:
            entry["requires-python"] = d.requires_python
        files.append(entry)
    doc = {"meta": {"api-version": API_VERSION}, "name": canonicalize_name(project), "files": files}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def render_root_html(projects: list[str]) -> str:
    lines = ["<!DOCTYPE html>", "<html>", "  <head>",
             f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
             "    <title>Simple index</title>", "  </head>", "  <body>"]
    for p in sorted({canonicalize_name(p) for p in projects}):
        lines.append(f'    <a href="{html.escape(p)}/">{html.escape(p)}</a><br>')
    lines += ["  </body>", "</html>"]
    return "\n".join(lines) + "\n"


def render_root_json(projects: list[str]) -> str:
    doc = {"meta": {"api-version": API_VERSION},
           "projects": [{"name": p} for p in sorted({canonicalize_name(p) for p in projects})]}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def _quote(filename: str) -> str:
    from urllib.parse import quote
    return quote(filename, safe="")


# --------------------------------------------------------------------------- immutability

UPLOAD = "upload"        # not on the index: upload it
NOOP = "noop"            # on the index with the same sha256: nothing to do
CONFLICT = "conflict"    # on the index with another sha256: refuse
DOWNLOAD = "download"    # on the index, but its page has no sha256: fetch it and decide again


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    remote: IndexFile | None = None


def decide(filename: str, local_sha256: str, remote: IndexFile | None,
           downloaded_sha256: str | None = None) -> Decision:
    """Whether publishing `filename` (content local_sha256) may proceed.

    Published files are immutable: the same name with other bytes is a conflict,
    the same bytes again is a no-op. `downloaded_sha256` is the hash of the file
    as fetched from the index when its page carried none (answer to DOWNLOAD).
    """
    local = local_sha256.lower()
    if remote is None:
        return Decision(UPLOAD, f"{filename} is not on the index")
    remote_sha = (downloaded_sha256 or remote.sha256 or "").lower() or None
    if remote_sha is None:
        return Decision(DOWNLOAD, f"{filename} is on the index without a sha256 "
                                  f"(page gives {sorted(remote.hashes) or 'no hash'}); fetching it to compare",
                        remote)
    if remote_sha == local:
        return Decision(NOOP, f"{filename} is already on the index with the same sha256 {local}", remote)
    return Decision(CONFLICT,
                    f"{filename} is already on the index with different content "
                    f"(index sha256 {remote_sha}, local sha256 {local}). Published files are "
                    f"immutable: bump the version (or the build tag) and rebuild, never replace a file",
                    remote)
