"""``python -m bench``: throughput, latency, catch-up and memory of the replicated log.

Everything runs on this machine, on loopback:

1. ceiling: the master's HTTP stack (a gevent-patched process serving a Bottle app on
   nodes.web.create_http_server) answering a POST that does no work; and a Pyro5 daemon,
   with the master's settings in the same kind of process, doing the same;
2. load: a local cluster (name server, master, two secondaries, as processes) driven by a
   separate load-generator process, C keep-alive HTTP clients and then C Pyro5 proxies,
   appending for T seconds at w=1, w=2 and w=3;
3. catch-up: a secondary that was down while N messages were appended rejoins;
4. memory: RSS of the master and a secondary holding M messages.

It prints a table, writes JSON and a PNG chart, and says which team targets are met.

The parts live in their own modules; this one parses the flags, runs the parts in order
and writes the report. Imports go one way: shared modules (common, procs, cluster, driver,
report, render) <- cases (load, catchup, memory, durable, dashboard, tls) <- parts (the
registry of the parts beyond the main table's) <- run. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import parts
from .catchup import catchup_case
from .cluster import Cluster
from .common import REPO, log, parse_flags
from .load import ceiling_case, load_case
from .memory import memory_case
from .procs import Profiler
from .render import draw_chart, render_table
from .report import finish, json_path, new_report, write_json




def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="CI size: 2 s per case, 10,000 catch-up and 50,000 memory messages")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--procs", type=int, default=2, help="load-generator processes (default 2)")
    p.add_argument("--seconds", type=float, default=None, help="measured seconds per case (default 10, quick 2)")
    p.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each case (1, quick 0.5)")
    p.add_argument("--size", type=int, default=100, help="message size in bytes (default 100)")
    p.add_argument("--catchup", type=int, default=None, help="catch-up messages (default 100,000, quick 10,000)")
    p.add_argument("--memory", type=int, default=None, help="memory messages (default 1,000,000, quick 50,000)")
    p.add_argument("--batch", type=int, default=10_000, help="append_many batch when filling (default 10,000)")
    p.add_argument("--stored", type=int, default=None,
                   help="messages stored for the durable part's recovery and read cases "
                        "(default 1,000,000, quick 20,000)")
    p.add_argument("--catchup-trials", type=int, default=None, help="catch-up repetitions (3, quick 1)")
    p.add_argument("--durable-rounds", type=int, default=None,
                   help="rounds of the durable part's memory/durable alternation (3, quick 1)")
    p.add_argument("--pin-master", action="store_true",
                   help="durable part's load cases: the master alone on one CPU, every other "
                        "process (secondaries, fsync helper, name server, load generator) on "
                        "the rest, as on separate hosts (needs 2+ CPUs; not the targets' setup)")
    p.add_argument("--catchup-timeout", type=float, default=120.0)
    p.add_argument("--ws", default="1,2,3", help="write concerns to run (default 1,2,3)")
    p.add_argument("--only", default=",".join(parts.DEFAULT_PARTS),
                   help=f"comma list of parts to run, of {','.join(parts.ALL_PARTS)} (default: all but diagnostics)")
    p.add_argument("--diagnostics", action="store_true",
                   help="also run the diagnostic ceilings: the trivial HTTP and Pyro5 servers with "
                        "--hold (a w>1 wait without replication)")
    p.add_argument("--hold", type=float, default=0.0002,
                   help="the diagnostic ceilings' stand-in round trip in seconds (0.0002)")
    p.add_argument("--master-flag", action="append", default=[], metavar="NAME=VALUE",
                   help="extra master flag for LocalCluster.start_master, e.g. max_connections=1000 (repeatable; the ceilings follow max_connections)")
    p.add_argument("--secondary-flag", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/<date>.json); PNG beside it")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="attach py-spy to the master during each load case, raw stacks into DIR")
    p.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second (50)")
    p.add_argument("--profile-gil", action="store_true", help="py-spy --gil: only the GIL holder")
    p.add_argument("--keep-workdir", action="store_true", help="keep the cluster's logs")
    for part in parts.PARTS:          # a registered part may bring flags of its own
        add_args = getattr(part.load(), "add_args", None)
        if add_args:
            add_args(p)
    args = p.parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.catchup = args.catchup if args.catchup is not None else (10_000 if args.quick else 100_000)
    args.catchup_trials = args.catchup_trials or (1 if args.quick else 3)
    args.durable_rounds = args.durable_rounds or (1 if args.quick else 3)
    args.memory = args.memory if args.memory is not None else (50_000 if args.quick else 1_000_000)
    args.stored = args.stored if args.stored is not None else (20_000 if args.quick else 1_000_000)
    args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
    if args.diagnostics and "diagnostics" not in args.parts:
        args.parts.append("diagnostics")
    args.ws = [int(x) for x in args.ws.split(",") if x.strip()]
    bad = set(args.parts) - set(parts.ALL_PARTS)
    if bad:
        p.error(f"unknown parts {sorted(bad)}; choose from {parts.ALL_PARTS}")
    return args


def run_core(args, report: dict, workdir: Path, master_flags: dict, secondary_flags: dict) -> None:
    """The parts of the main table: ceilings, load cases, catch-up and memory."""
    profiler = Profiler(Path(args.profile) if args.profile else None, args.profile_rate, args.profile_gil)
    max_connections = master_flags.get("max_connections")
    if "ceiling" in args.parts:
        for kind in ("http", "pyro"):
            log(f"ceiling ({kind}): trivial server, {args.clients} clients, {args.seconds} s")
            report["cases"].append(ceiling_case(args, kind, max_connections))
    if "diagnostics" in args.parts:
        for kind, hold in (("http", args.hold), ("pyro", args.hold)):
            log(f"diagnostic ceiling ({kind}{', hold' if hold is not None else ''}): {args.seconds} s")
            report["cases"].append(ceiling_case(args, kind, max_connections, hold))
    if "http" in args.parts or "pyro" in args.parts:
        log("load: starting name server, master and two secondaries")
        cluster = Cluster(workdir / "load", master_flags, secondary_flags)
        try:
            for mode in ("http", "pyro"):
                if mode not in args.parts:
                    continue
                for w in args.ws:
                    log(f"load: {mode} w={w}, {args.clients} clients, {args.seconds} s")
                    report["cases"].append(load_case(args, cluster, mode, w, profiler))
        finally:
            cluster.close()
    if "catchup" in args.parts:
        report["catchup"] = catchup_case(args, workdir, master_flags, secondary_flags)
    if "memory" in args.parts:
        report["memory"] = memory_case(args, workdir, master_flags, secondary_flags)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_begin = time.perf_counter()
    sys.path.insert(0, str(REPO))
    master_flags = parse_flags(args.master_flag)
    secondary_flags = parse_flags(args.secondary_flag)
    workdir = Path(tempfile.mkdtemp(prefix="replog-bench-"))
    now = _dt.datetime.now(_dt.timezone.utc)
    report = new_report(args, master_flags, secondary_flags, now)
    # what a registered part reads beside the flags (bench/parts.py)
    args.workdir, args.master_flags, args.secondary_flags = workdir, master_flags, secondary_flags
    try:
        run_core(args, report, workdir, master_flags, secondary_flags)
        for part in parts.PARTS:
            if part.name in args.parts:
                part.load().run(args, report)
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"cluster logs kept in {workdir}")
    finish(report, args.size)
    report["meta"]["duration_s"] = round(time.perf_counter() - t_begin, 1)
    out = json_path(args, now)
    if not args.no_chart:
        report["chart"] = draw_chart(report, out.with_suffix(".png"))
    write_json(report, out)
    print(render_table(report))
    for part in parts.PARTS:
        render = getattr(part.load(), "render", None)
        if render and report.get(part.name):
            print(render(report[part.name]))
    print(f"\nJSON: {out}" + (f"\nchart: {report['chart']}" if report.get("chart") else ""))
    print(f"took {report['meta']['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
