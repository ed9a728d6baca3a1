"""`python -m blackwheel_factory farm up|down|status|plan`.

  farm up [--dir D] [--servers N]     write configs with fresh tokens and free ports on
                                      127.0.0.1, start a scheduler and N build servers
                                      (a try-out on one host; docs/FARM.md for many hosts)
  farm configs [--dir D] ...          only write the configs (to copy to other hosts)
  farm down [--dir D] [--only NAME]   stop what `up` started (by pid)
  farm status                         what this shell's sccache client sees (SCCACHE_CONF)
  farm plan JOBLOG... --cores C       predicted wall time on N = 1..64 servers of C cores
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_DIR = Path(".farm")
# Measured on this project's 2-core machine, loopback, sccache 0.16.0, nvcc 13.0.88
# (benchmarks/bench_farm.py, docs/FARM.md): one distributed nvcc compile costs 1.2 s
# more than a local one (4 remote jobs: cudafe++, cicc, ptxas, host g++); the first
# compile on a new server 8.5 s more (packaging + upload of the four toolchains).
# Client steps: the 16-core complete flash_attn build spent 19 s outside its compiles.
# Local fraction: preprocessing of a Marlin TU is 3.2 s of 28 s; the FA TUs (200-500 s)
# preprocess the same CUTLASS/cute headers: about 3 % (an estimate).
DEFAULT_OVERHEAD_S = 1.2
DEFAULT_UPLOAD_S = 8.5
DEFAULT_LOCAL_FRACTION = 0.03
DEFAULT_CLIENT_S = 20.0


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_ in (("up", "write configs and start a scheduler and N servers here"),
                        ("configs", "write scheduler/server/client configs with fresh tokens")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="farm directory (.farm)")
        p.add_argument("--servers", type=int, default=2, help="build servers (default 2)")
        p.add_argument("--host", default="127.0.0.1",
                       help="address the scheduler and servers are reached at (default 127.0.0.1)")
        p.add_argument("--bwrap", default="/usr/bin/bwrap", help="bubblewrap on the servers")
        if name == "configs":
            p.add_argument("--scheduler", default=None,
                           help="HOST:PORT of the scheduler on another host (e.g. 10.0.0.1:10600)")
            p.add_argument("--server-addrs", default="",
                           help="comma-separated HOST:PORT of each build server; each gets "
                                "a token made for its address")
    p = sub.add_parser("down", help="stop the processes `farm up` started")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p.add_argument("--only", default=None, help="one process, e.g. server-1")
    sub.add_parser("status", help="the farm as this shell's sccache client sees it")
    p = sub.add_parser("plan", help="predict a measured build's wall time on N servers")
    p.add_argument("job_logs", nargs="+", type=Path,
                   help="nvcc_peak_launcher JSONL (several: their jobs together, e.g. one per arch)")
    p.add_argument("--cores", type=int, default=16, help="cores per server (default 16)")
    p.add_argument("--max-servers", type=int, default=64)
    p.add_argument("--overhead-s", type=float, default=DEFAULT_OVERHEAD_S,
                   help=f"per distributed job (default {DEFAULT_OVERHEAD_S}, loopback)")
    p.add_argument("--upload-s", type=float, default=DEFAULT_UPLOAD_S,
                   help=f"toolchain upload per new server (default {DEFAULT_UPLOAD_S})")
    p.add_argument("--local-fraction", type=float, default=DEFAULT_LOCAL_FRACTION,
                   help="share of a job run on the client (preprocessing, fatbinary)")
    p.add_argument("--client-cores", type=int, default=16)
    p.add_argument("--client-s", type=float, default=DEFAULT_CLIENT_S,
                   help=f"configure, link, ABI check, packaging (default {DEFAULT_CLIENT_S})")
    p.add_argument("--local-cores", type=int, default=None,
                   help="also predict a local build on this many cores (to check against "
                        "the measured wall time)")


def _up(args, start: bool) -> int:
    from blackwheel_factory.farm import cluster as F
    addrs = [a.strip() for a in getattr(args, "server_addrs", "").split(",") if a.strip()]
    layout = F.write_farm(args.dir, args.servers, args.host, bwrap=args.bwrap,
                          scheduler_addr=getattr(args, "scheduler", None),
                          server_addrs=addrs or None)
    print(f"farm configs in {layout.root}: scheduler.toml ({layout.scheduler}), "
          + ", ".join(f"server-{i}.toml ({a})" for i, a in enumerate(layout.servers))
          + ", client.toml (secrets: mode 600)")
    if start:
        state = F.start(layout.root, bwrap=args.bwrap)
        print(f"scheduler http://{state['scheduler']} (pid {state['pids']['scheduler']}), "
              f"{len(state['servers'])} servers, {state['cores']} cores: "
              + ", ".join(f"{a} (pid {state['pids'][f'server-{i}']})"
                          for i, a in enumerate(state["servers"])))
        print(f"logs: {layout.root}/logs/. Stop: python -m blackwheel_factory farm down "
              f"--dir {args.dir}")
    print(f"build on it:  export SCCACHE_CONF={layout.client_conf}; sccache --stop-server; "
          f"pip wheel . (or python -m blackwheel_factory wheel NAME)")
    return 0


def run(args) -> int:
    from blackwheel_factory.farm import cluster as F
    from blackwheel_factory.farm import planner as P
    try:
        if args.action in ("up", "configs"):
            return _up(args, args.action == "up")
        if args.action == "down":
            stopped = F.stop(args.dir, args.only)
            print("stopped: " + (", ".join(stopped) or "nothing was running"))
            return 0
        if args.action == "status":
            from blackwheel_factory.farm.status import query_dist_status
            st = query_dist_status(F.find_program("sccache"))
            print(st.describe())
            return 0 if st.usable else 1
        jobs = []
        for log in args.job_logs:
            jobs += P.parse_job_log(log.read_text())
        total = sum(j.seconds for j in jobs)
        print(f"{len(jobs)} compile jobs, {total:,.0f} s of compile time, longest "
              f"{max(j.seconds for j in jobs):.0f} s ({', '.join(str(p) for p in args.job_logs)})")
        if args.local_cores:
            p = P.predict(jobs, P.local_model(args.local_cores, args.client_s))
            print(f"local build on {args.local_cores} cores: {p.wall_s:,.0f} s "
                  f"({p.wall_s / 60:.1f} min)")
        preds = P.curve(jobs, args.cores, range(1, args.max_servers + 1),
                        overhead_s=args.overhead_s, local_fraction=args.local_fraction,
                        client_cores=args.client_cores, upload_s=args.upload_s,
                        client_s=args.client_s)
        print(P.format_curve(preds, f"farm of N servers x {args.cores} cores (overhead "
                                    f"{args.overhead_s} s/job, upload {args.upload_s} s, "
                                    f"client {args.client_s} s, {args.client_cores} client cores)"))
        return 0
    except (F.FarmError, P.PlanError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
