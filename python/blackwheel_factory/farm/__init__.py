"""A compile farm for every product: sccache's distributed mode (sccache-dist).

  configs.py   pure: scheduler / server / client TOML from a layout and tokens
  status.py    pure parsers of `sccache --dist-status` and the dist counters of
               `sccache --show-stats --stats-format json`; a thin query with a timeout
  cluster.py   effects: tokens from sccache-dist, config files, start/stop processes
  planner.py   pure: predicted wall time of a measured build on N servers x C cores
  cli.py       `python -m blackwheel_factory farm up|down|status|plan`
"""
