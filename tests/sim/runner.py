"""Running seeds, for the CLI and the tests: the configuration per mutation, and a loop
that stops at the first violation."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from nodes.core.election import Broken

from .checker import Violation
from .cluster import Config, Sim

# each rule the mutation tests break (a field of Broken)
MUTATIONS = ("second_vote", "vote_less_up_to_date", "deposed_stays_master", "long_lease",
             "vote_despite_master")


def config(nodes: int = 3, broken: Broken = Broken()) -> Config:
    cfg = Config(nodes=nodes, broken=broken)
    if broken.long_lease:      # the broken rule: a lease longer than the election timeout
        cfg.timing = replace(cfg.timing, lease=2.5 * cfg.timing.election_min)
    return cfg


def run_seeds(seeds: Iterable[int], cfg: Config) -> tuple[str | None, int, dict[str, int]]:
    """(the first violation's report or None, seeds run, totals)."""
    stats = {"elections": 0, "acks": 0, "cut": 0, "events": 0}
    ran = 0
    for seed in seeds:
        ran += 1
        sim = Sim(seed, replace(cfg))
        try:
            sim.run()
        except Violation as v:
            return str(v), ran, stats
        c = sim.checker
        stats["elections"] += len(c.masters)
        stats["acks"] += len(c.majority_acks) + len(c.w1_acks)
        stats["cut"] += len(c.cuts)
        stats["events"] += sim.events
    return None, ran, stats
