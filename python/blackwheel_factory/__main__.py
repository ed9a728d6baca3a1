from blackwheel_factory.cli import main

raise SystemExit(main(prog="python -m blackwheel_factory"))
