"""`python -m blackwheel_factory COMMAND` (from a checkout: PYTHONPATH=python; or the
`blackwheel-factory` console script of python/pyproject.toml): one entry point, one
module per command. The factory is never shipped in a product wheel; the runtime's
`doctor` and `info` (blackwheel_runtime, which every product carries) are here too.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so build tooling works
without torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("blackwheel_runtime.info", "show the build record of an installed product or of a wheel"),
    "doctor": ("blackwheel_runtime.doctor", "check GPUs, torch and driver against every installed product"),
    "wheel": ("blackwheel_factory.compile.product_wheel", "build a products/<name>.toml wheel: kernel-pack, flash-attn, vllm"),
    "plan": ("blackwheel_factory.plan.cmake_bridge", "resolve kernel sets/archs and prepare sources (CMake calls this)"),
    "sources": ("blackwheel_factory.sources.sources_cmd", "fetch/verify/unpack/patch the pinned upstream sources"),
    "lock": ("blackwheel_factory.inputs.lock", "write (or --check) torch-lock.toml from the current environment"),
    "abi-check": ("blackwheel_factory.checks.abi", "resolve every undefined symbol of a wheel/.so against the locked torch"),
    "verify": ("blackwheel_factory.checks.verify", "list cubins/resources per arch and check them; compare two wheels"),
    "repair": ("blackwheel_factory.packaging.repair", "auditwheel repair without vendoring torch/CUDA"),
    "farm": ("blackwheel_factory.farm.cli", "sccache-dist compile farm: up/down/status, plan a farm from a job log"),
    "build-report": ("blackwheel_factory.compile.report", "time/cache report of the last build from ninja's log"),
    "publish": ("blackwheel_factory.publishing.publish", "verify, upload with twine, read back and compare sha256"),
    "index": ("blackwheel_factory.publishing.index", "write a static PEP 503/691 index for a directory of wheels"),
    "constraints": ("blackwheel_factory.publishing.constraints", "write a hash-pinned requirements file for image builds"),
    "image": ("blackwheel_factory.image.image_cmd", "base image with buildah: base-os, build, compare, scan"),
}


def main(argv: list[str] | None = None, prog: str = "python -m blackwheel_factory") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog,
                                     description="blackwheel factory: build, check and publish verified SM_120 wheels")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"{prog} {name}",
                                         description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)
