"""`python -m blackwheel doctor|info|smoke` (and the `blackwheel` console script):
the runtime's commands, plus the kernel pack's smoke test. The factory's commands
(verify, repair, publish, ...) are `python -m blackwheel_factory CMD` in a checkout."""
from blackwheel._runtime.cli import main as _main

SMOKE = {"smoke": ("blackwheel.smoke", "run every op on this GPU against a plain-torch reference")}


def main() -> int:
    return _main(prog="python -m blackwheel", extra=SMOKE)


if __name__ == "__main__":
    raise SystemExit(main())
