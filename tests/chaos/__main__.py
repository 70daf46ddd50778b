"""CLI: ``.venv/bin/python -m tests.chaos --seed N --duration S`` (see docs/chaos.md)."""

from __future__ import annotations

import argparse
import random
import signal
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos",
                                description="Chaos run against a local replog cluster: seeded "
                                "faults, concurrent clients, history checker.")
    p.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
    p.add_argument("--duration", type=float, default=20.0, help="fault phase in seconds")
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--workdir", default=None, help="where node logs go (default: temp dir, "
                   "removed when the run passes)")
    p.add_argument("--keep", action="store_true", help="keep the workdir even on success")
    p.add_argument("--converge-timeout", type=float, default=30.0)
    p.add_argument("--no-tls", action="store_true",
                   help="plain TCP between the nodes (default: mutual TLS)")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    p.add_argument("--schedule", action="store_true",
                   help="print the fault schedule for the seed and exit (no cluster)")
    p.add_argument("--master-in-memory", action="store_true",
                   help="run the master without a data directory: its kills then lose "
                   "acknowledged writes, which the checker must report (a check of the checker)")
    p.add_argument("--check", metavar="HISTORY_JSON",
                   help="re-check a saved history.json instead of running")
    a = p.parse_args(argv)

    from .checker import check, format_anomaly
    from .history import History
    from .nemesis import make_schedule
    from .runner import SECONDARIES, ChaosConfig, run

    if a.check:
        h = History.load(a.check)
        found = check(h)
        for an in found:
            print(format_anomaly(h, an))
        print(f"{len(found)} anomalies (seed {h.seed})")
        return 1 if found else 0

    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 10**6)
    if a.schedule:
        for step in make_schedule(seed, a.duration, list(SECONDARIES)):
            print(step.describe())
        return 0

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    cfg = ChaosConfig(seed=seed, duration=a.duration, clients=a.clients, workdir=a.workdir,
                      keep=a.keep, converge_timeout=a.converge_timeout, verbose=not a.quiet,
                      master_data_dir=not a.master_in_memory, tls=not a.no_tls)
    print(f"chaos seed {seed} (reproduce: {cfg.repro()})", flush=True)
    try:
        res = run(cfg)
    except KeyboardInterrupt:
        print(f"interrupted (seed {seed}); every process was stopped", file=sys.stderr)
        return 130
    print(res.summary, flush=True)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
