"""CLI: ``python -m tests.sim --seed N`` replays one seed; ``--seeds N`` runs N (a long run)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from nodes.core.election import Broken

from .runner import MUTATIONS, config, run_seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    p.add_argument("--seed", type=int, help="run this one seed (replays exactly)")
    p.add_argument("--seeds", type=int, default=1000, help="run seeds --first .. + N")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--break", dest="broken", choices=sorted(MUTATIONS),
                   help="break one rule (the simulation must then fail)")
    a = p.parse_args(argv)
    broken = Broken(**{a.broken: True}) if a.broken else Broken()
    cfg = config(a.nodes, broken)
    first, count = (a.seed, 1) if a.seed is not None else (a.first, a.seeds)
    start = time.perf_counter()
    failure, ran, stats = run_seeds(range(first, first + count), cfg)
    took = time.perf_counter() - start
    print(f"{ran} seed(s) of {a.nodes} nodes in {took:.1f} s ({ran / took:.0f}/s): "
          f"{stats['elections']} masters elected, {stats['acks']} writes acknowledged, "
          f"{stats['cut']} cut, {stats['events']} events")
    if failure:
        print(failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
