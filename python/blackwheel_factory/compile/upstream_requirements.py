"""Requires-Dist of an upstream-cmake product from upstream's own requirements files.

Pure: file texts in, requirement strings out. ``-r other.txt`` includes are
followed (relative to the including file); comments, blank lines and pip options
are dropped; the projects named in ``drop`` are left out (vLLM's exact
torch/torchvision/torchaudio pins: a binary built on the stable ABI needs
``torch>=<floor>``, which the caller adds, not one exact torch)."""
from __future__ import annotations

import posixpath
from typing import Callable, Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


class RequirementsError(ValueError):
    """An upstream requirements file cannot be read or parsed."""


def read_requirements(entry: str, read: Callable[[str], str], drop: Iterable[str] = (),
                      _seen: set | None = None) -> list[str]:
    """The requirements of ``entry`` (a path relative to the source tree) and of
    the files it includes, in order, without duplicates, minus ``drop``."""
    seen = set() if _seen is None else _seen
    if entry in seen:
        return []
    seen.add(entry)
    dropped = {canonicalize_name(d) for d in drop}
    out: list[str] = []
    for lineno, raw in enumerate(read(entry).splitlines(), 1):
        line = raw.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            inc = line.split(None, 1)[1].strip()
            out += read_requirements(posixpath.join(posixpath.dirname(entry), inc), read, drop, seen)
            continue
        if line.startswith("-"):
            continue   # pip options (--extra-index-url, -c ...) are not metadata
        try:
            req = Requirement(line)
        except InvalidRequirement as e:
            raise RequirementsError(f"{entry}:{lineno}: {e}") from e
        if canonicalize_name(req.name) in dropped:
            continue
        text = str(req)
        if text not in out:
            out.append(text)
    return out
