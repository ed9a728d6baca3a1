"""`python -m blackwheel_factory image base-os|build|compare|scan`: the base image, built with buildah.

  base-os  mmdebstrap a minimal Debian (python3, venv, pip) under SOURCE_DATE_EPOCH and import
           it as a one-layer image (the base OS here; users may take nvidia/cuda:13.0.x-runtime)
  build    write the hash-pinned lock from the published wheels and the locked torch on the
           private index (`constraints`), then `buildah bud` ci/Dockerfile.base with the index
           URL (and its credentials) as the build secret id=index_url; print the manifest digest
  compare  two exported images: identical, or which config values / layers / files differ
  scan     every blob of an exported image (manifest, config and history, each layer) for a secret

Exit codes: 0 done, 1 the step failed (message says why and what to do), 2 bad arguments.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from blackwheel_factory.image import plan as P

STORAGE_HELP = ("private image store (created if missing); default: the system store "
                "(/var/lib/containers/storage)")


def _store(args, log: Path | None):
    from blackwheel_factory.image.buildah import Store
    return Store(Path(args.storage).resolve() if args.storage else None, args.storage_driver, log)


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


# --------------------------------------------------------------------------- base-os

def cmd_base_os(args) -> int:
    from blackwheel_factory.image.buildah import mmdebstrap
    from blackwheel_factory.inputs.config import load_config
    epoch = load_config(args.config).source_date_epoch
    tar = Path(args.tar).resolve()
    t0 = time.monotonic()
    if args.reuse_tar and tar.is_file():
        print(f"base-os: reusing {tar}")
    else:
        tar.parent.mkdir(parents=True, exist_ok=True)
        mmdebstrap(args.suite, tar, epoch, tuple(args.include.split(",")), args.mirror, args.log)
        print(f"base-os: mmdebstrap {args.suite} ({args.include}) -> {tar} "
              f"({_human(tar.stat().st_size)}, {time.monotonic() - t0:.0f} s, SOURCE_DATE_EPOCH={epoch})")
    store = _store(args, args.log)
    store.rmi(args.tag)
    r = store.import_rootfs(tar, args.tag, epoch)
    print(f"base-os: {args.tag} {store.manifest_digest(args.tag)} ({store.driver if args.storage else 'system store'}, "
          f"{r.seconds:.0f} s to import)")
    return 0


# --------------------------------------------------------------------------- build

def _index_url(args) -> str | None:
    return args.index_url or os.environ.get("BLACKWHEEL_INDEX_URL") or None


def _target(args, store) -> tuple[str, tuple[int, int], str]:
    if args.python_version and args.glibc:
        major, _, minor = args.glibc.partition(".")
        return args.python_version, (int(major), int(minor)), "given"
    r = store.run_in(args.base, "python3", "-c", P.PROBE)
    if r.returncode != 0:
        raise P.ImageError(f"{args.base} has no python3 to ask for its version and glibc (exit "
                           f"{r.returncode}); pass --python-version and --glibc (nvidia/cuda:13.0.1-"
                           "runtime-ubuntu24.04: --python-version 3.12 --glibc 2.39)")
    py, glibc = P.parse_probe(r.output)
    return py, glibc, "probed"


def _write_lock(args, index_url: str, py: str, platforms: list[str]) -> str:
    from blackwheel_factory.publishing import constraints as C
    P.check_wheels([Path(w).name for w in args.wheel])
    ns = SimpleNamespace(lock=args.lock, wheel=args.wheel, torch_index=None if args.resolve_from else index_url,
                         torch_wheel_dir=args.resolve_from, torch_preinstalled=False, python_version=py,
                         platform=platforms)
    text, pins = C.build(ns)
    print(f"lock: {len(pins)} distributions pinned with sha256 for python {py}, "
          f"{platforms[0]}..{platforms[-1]}, resolved from "
          f"{'the files in ' + args.resolve_from if args.resolve_from else 'the index'}")
    return text


def cmd_build(args) -> int:
    from blackwheel_factory.inputs.config import load_config, load_lock
    from blackwheel_factory.publishing.publish import Scrubber, split_userinfo
    cfg, lock = load_config(args.config), load_lock(args.lock)
    epoch = cfg.source_date_epoch
    index_url = _index_url(args)
    _, user, password = split_userinfo(index_url or "")
    scrub = Scrubber(password)
    containerfile = Path(args.containerfile or cfg.root / "ci" / "Dockerfile.base").resolve()
    if not containerfile.is_file():
        raise P.ImageError(f"{containerfile}: not found (--containerfile)")
    if not args.requirements and not index_url:
        raise P.ImageError("no index: pass --index-url URL (or BLACKWHEEL_INDEX_URL), the private index "
                           "with the published wheels, the locked torch and its dependencies")
    store = _store(args, args.log)
    times: dict[str, float] = {}
    if not store.exists(args.base):
        raise P.ImageError(f"base image {args.base} is not in the store; make it with `image base-os` "
                           f"or `buildah pull {args.base}` (same --storage)")
    t = time.monotonic()
    py, glibc, how = _target(args, store)
    times["probe"] = time.monotonic() - t
    platforms = P.platform_tags(glibc)
    print(f"base: {args.base}: python {py}, glibc {glibc[0]}.{glibc[1]} ({how})")
    t = time.monotonic()
    if args.requirements:
        text = Path(args.requirements).read_text()
    else:
        text = _write_lock(args, index_url, py, platforms)
        if args.lock_out:
            from blackwheel_factory.publishing.constraints import write_atomic
            write_atomic(Path(args.lock_out), text)
    times["lock"] = time.monotonic() - t
    warning = P.lock_torch_warning(text, lock.version)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    wheels = [Path(w).name for w in args.wheel or []]
    tag = args.tag or P.default_tag(wheels, lock.version)
    with tempfile.TemporaryDirectory(prefix="blackwheel-image-") as tmp:
        context = Path(tmp) / "context"
        context.mkdir()
        (context / "requirements.lock").write_text(P.image_lock_text(text))
        secret = None
        if index_url:
            sdir = Path(tmp) / "secret"
            sdir.mkdir(mode=0o700)
            secret = sdir / P.SECRET_ID
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(index_url)
        store.rmi(tag)   # a failed build must not leave an older image under the tag
        bud = P.BudPlan(containerfile, context, tag, args.base, epoch, secret)
        print(f"build: buildah bud {containerfile.name} FROM {args.base} -> {tag} "
              f"(storage {store.driver if args.storage else 'system'}, --timestamp {epoch})", flush=True)
        r = store.bud(bud, scrub=scrub)
    times["bud"] = r.seconds
    if r.returncode != 0:
        print(f"image build: error: buildah bud failed (exit {r.returncode}); last lines:", file=sys.stderr)
        print("".join("  | " + l for l in r.tail.splitlines(True)[-25:]), file=sys.stderr)
        fix = P.diagnose(r.tail)
        if fix:
            print(f"image build: {fix}", file=sys.stderr)
        return 1
    digest = store.manifest_digest(tag)
    layers = store.layers(tag)
    record = {"tag": tag, "digest": digest, "base": args.base, "python": py,
              "glibc": f"{glibc[0]}.{glibc[1]}", "source_date_epoch": epoch,
              "storage_driver": store.driver if args.storage else "system",
              "layers": [{"digest": d, "size": s} for d, s in layers],
              "size": sum(s for _, s in layers), "seconds": {k: round(v, 1) for k, v in times.items()}}
    print(f"image: {tag}\n  digest {digest}")
    for i, (d, s) in enumerate(layers):
        print(f"  layer {i}: {d}  {_human(s)}")
    print(f"  size {_human(record['size'])} (uncompressed); bud {times['bud']:.0f} s, "
          f"lock {times['lock']:.0f} s")
    if args.export:
        t = time.monotonic()
        dest = Path(args.export).resolve()
        if dest.exists():
            shutil.rmtree(dest)
        store.export_dir(tag, dest)
        record["seconds"]["export"] = round(time.monotonic() - t, 1)
        print(f"  exported to {dest} ({record['seconds']['export']:.0f} s)")
    if args.record:
        Path(args.record).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return 0


# --------------------------------------------------------------------------- compare / scan

def cmd_compare(args) -> int:
    from blackwheel_factory.image.layers import compare, read_export
    a, b = read_export(Path(args.a)), read_export(Path(args.b))
    lines = compare(a, b, args.limit)
    if not lines:
        print(f"identical: {a.digest} ({len(a.layer_digests)} layers)")
        return 0
    print("\n".join(lines))
    return 1


def cmd_scan(args) -> int:
    from blackwheel_factory.image.layers import read_export, scan
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        print(f"image scan: error: ${args.secret_env} is empty; put the secret there (never on the "
              "command line)", file=sys.stderr)
        return 2
    from urllib.parse import quote
    import base64
    needles = sorted({secret.encode(), quote(secret, safe="").encode()})
    if args.user:
        needles.append(base64.b64encode(f"{args.user}:{secret}".encode()))
    ex = read_export(Path(args.export))
    read: list[int] = []
    found = scan(ex, needles, read)
    nblobs = 2 + len(ex.layer_digests)
    if found:
        for label, what in found:
            print(f"FOUND in {label}: {what}")
        return 1
    print(f"clean: {nblobs} blobs of {ex.digest} (manifest, config with {len(ex.config.get('history', []))} "
          f"history entries, {len(ex.layer_digests)} layers; {read[0]} bytes read) hold no trace of "
          f"${args.secret_env}")
    return 0


# --------------------------------------------------------------------------- CLI

def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)

    def common(p, store=True):
        p.add_argument("--config", type=Path, default=None, help="blackwheel.toml (default: the checkout's)")
        p.add_argument("--log", type=Path, default=None, help="append every command's output here")
        if store:
            p.add_argument("--storage", default=None, help=STORAGE_HELP)
            p.add_argument("--storage-driver", default="auto",
                           help="vfs, overlay or auto (overlay where the kernel has it; only with --storage)")

    b = sub.add_parser("base-os", help="mmdebstrap a minimal Debian and import it as an image")
    common(b)
    b.add_argument("--suite", default="bookworm")
    b.add_argument("--include", default=",".join(P.DEFAULT_PACKAGES))
    b.add_argument("--mirror", default=None, help="e.g. http://snapshot.debian.org/archive/debian/20261201T000000Z/")
    b.add_argument("--tar", required=True, help="root file system tar to write (or reuse)")
    b.add_argument("--reuse-tar", action="store_true", help="import an existing --tar instead of rebuilding it")
    b.add_argument("--tag", default="localhost/blackwheel-os:bookworm")
    b.set_defaults(func=cmd_base_os)

    p = sub.add_parser("build", help="lock + buildah bud ci/Dockerfile.base")
    common(p)
    p.add_argument("--base", required=True,
                   help="base image in the store (localhost/blackwheel-os:bookworm, nvidia/cuda:13.0.1-runtime-ubuntu24.04)")
    p.add_argument("--wheel", nargs="+", action="extend", default=None, metavar="W",
                   help="the published wheels (the kernel pack, and flash_attn)")
    p.add_argument("--index-url", default=None,
                   help="private index (simple API) with the wheels, the locked torch and its dependencies; "
                        "user:password@ allowed; default $BLACKWHEEL_INDEX_URL. Goes into the build only as "
                        "the secret id=index_url")
    p.add_argument("--resolve-from", default=None, metavar="DIR",
                   help="resolve the lock from this directory of the files the index serves (pip reads "
                        "their metadata in place instead of downloading every wheel through the index)")
    p.add_argument("--requirements", default=None, help="use this hash-pinned lock instead of writing one")
    p.add_argument("--lock-out", default=None, help="also keep the lock written by `constraints` here")
    p.add_argument("--lock", type=Path, default=None, help="torch-lock.toml (default: the checkout's)")
    p.add_argument("--python-version", default=None, help="the base image's python (default: ask the image)")
    p.add_argument("--glibc", default=None, help="the base image's glibc, e.g. 2.36 (default: ask the image)")
    p.add_argument("--containerfile", default=None, help="default: ci/Dockerfile.base of the checkout")
    p.add_argument("--tag", default=None, help="default: localhost/blackwheel-base:<version>-torch<locked torch>")
    p.add_argument("--export", default=None, help="also write the image as stored (dir: layout) here")
    p.add_argument("--record", default=None, help="write digest, layers, sizes and times as JSON here")
    p.set_defaults(func=cmd_build)

    c = sub.add_parser("compare", help="explain how two exported images differ")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--limit", type=int, default=40, help="files listed per layer")
    c.set_defaults(func=cmd_compare)

    s = sub.add_parser("scan", help="look for a secret in every blob of an exported image")
    s.add_argument("export")
    s.add_argument("--secret-env", required=True, help="environment variable holding the secret")
    s.add_argument("--user", default=None, help="also look for the Basic token of USER:secret")
    s.set_defaults(func=cmd_scan)


def run(args) -> int:
    from blackwheel_factory.inputs.config import ConfigError
    from blackwheel_factory.publishing.constraints import ConstraintsError
    try:
        return int(args.func(args) or 0)
    except (P.ImageError, ConfigError, ConstraintsError, ValueError) as e:
        print(f"image {args.image_command}: error: {e}", file=sys.stderr)
        return 1
