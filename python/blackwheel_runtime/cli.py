"""`python -m <product> COMMAND`: the runtime's commands (doctor, info), plus what
a product adds (the kernel pack: smoke). The factory's commands are not here: a
product wheel carries no build tooling; asking for one names where it lives."""
from __future__ import annotations

import argparse
import importlib

# command -> (module, one-line help); a module is imported only when its command runs
COMMANDS: dict[str, tuple[str, str]] = {
    "info": (".info", "show the build record of an installed product or of a wheel"),
    "doctor": (".doctor", "check GPUs, torch and driver against every installed product's build"),
}

# the factory's commands (python/blackwheel_factory/cli.py), named in the refusal
FACTORY_COMMANDS = ("wheel", "plan", "sources", "lock", "abi-check", "verify", "repair",
                    "build-report", "publish", "index", "constraints", "farm", "image")


def main(argv: list[str] | None = None, prog: str = "python -m blackwheel",
         extra: dict[str, tuple[str, str]] | None = None, default_product: str = "blackwheel") -> int:
    """``extra``: the product's own commands, {name: (absolute module, help)};
    ``default_product``: whose record ``info`` shows without --product/--path/--wheel."""
    import sys
    commands = {**COMMANDS, **(extra or {})}
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description="blackwheel runtime: what was built, "
                                                            "and whether it runs here")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in commands.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    if name not in commands:
        if name in FACTORY_COMMANDS:
            print(f"{prog}: '{name}' is a factory command, not part of this runtime (product wheels "
                  f"carry no build tooling). Run it from a blackwheel checkout: PYTHONPATH=python "
                  f"python -m blackwheel_factory {name} ... (or install the factory: "
                  f"pip install ./python, then blackwheel-factory {name} ...)", file=sys.stderr)
            return 2
        parser.error(f"unknown command {name!r}; choose from {', '.join(commands)}")
    target = commands[name][0]
    module = importlib.import_module(target, __package__) if target.startswith(".") \
        else importlib.import_module(target)
    cmd_parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=commands[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    if name == "info" and getattr(args, "product", "") is None:
        args.product = default_product
    return int(module.run(args) or 0)
