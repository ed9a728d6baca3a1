"""`python -m blackwheel_factory sources`: fill the cache ahead of a build (e.g. before
going offline, or to bundle for a GPU host without network), or add a file
obtained elsewhere (`--add FILE`, checked against its sha256 pin)."""
from __future__ import annotations

import sys
from pathlib import Path

from blackwheel_factory.sources import fetch as S
from blackwheel_factory.inputs.config import ConfigError, load_config


def add_arguments(p):
    p.add_argument("names", nargs="*", help="sources to prepare (default: all in blackwheel.toml)")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=None, help="default: $BLACKWHEEL_CACHE or ~/.cache/blackwheel")
    p.add_argument("--add", type=Path, action="append", default=[], metavar="FILE",
                   help="put a local copy of a pinned artifact into the cache")
    p.add_argument("--bundle", type=Path, metavar="OUT.tar.gz",
                   help="write the prepared trees (only what a build needs) for a host without "
                        "network: there, tar xzf OUT.tar.gz -C $BLACKWHEEL_CACHE")


def run(args) -> int:
    try:
        config = load_config(args.config)
        cache = args.cache or S.default_cache_dir()
        by_file = {s.filename: s for s in config.sources.values()}
        for f in args.add:
            if f.name not in by_file:
                raise S.SourceError(f"{f.name} is not pinned in blackwheel.toml "
                                    f"(pinned: {', '.join(by_file)})")
            print(f"added {S.add_blob(cache, by_file[f.name], f)}")
        names = args.names or list(config.sources)
        unknown = [n for n in names if n not in config.sources]
        if unknown:
            raise S.SourceError(f"unknown source(s) {unknown}; pinned: {', '.join(config.sources)}")
        if args.bundle:
            trees = S.write_bundle(config, names, cache, args.bundle)
            print(f"wrote {args.bundle} ({args.bundle.stat().st_size / 1e6:.1f} MB): {', '.join(trees)}")
            return 0
        for name, path in S.prepare(config, names, cache).items():
            print(f"{name}: {path}")
        return 0
    except (ConfigError, S.SourceError) as e:
        print(f"blackwheel: error: {e}", file=sys.stderr)
        return 1
