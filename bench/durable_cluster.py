"""The cluster of the durability part (bench/durable.py), in memory or with every node's
data on disk, and --pin-master's placement of its processes on the CPUs.
"""
from __future__ import annotations

import os
from pathlib import Path

from .common import SECONDARIES, http_json, poll


class DurablePartCluster:
    """Name server, master and two secondaries; durable ones keep data in workdir/NAME."""

    def __init__(self, workdir: Path, durable: bool, flags: dict | None = None) -> None:
        from nodes.launcher import LocalCluster

        self.workdir = workdir
        self.durable = durable
        self.lc = LocalCluster(workdir)
        self.lc.start_nameserver()
        self.secs = {n: self.lc.start_secondary(n, **self._data(n)) for n in SECONDARIES}
        self.master = self.lc.start_master(list(SECONDARIES), **self._data("master"),
                                           **(flags or {}))

    def _data(self, name: str) -> dict:
        return {"data_dir": self.workdir / name, "fsync": "always"} if self.durable else {}

    def health(self, url: str | None = None) -> dict:
        return http_json((url or self.master.url) + "/health")[1]

    def drained(self, names=SECONDARIES, timeout: float = 120.0) -> dict:
        def ok():
            h = self.health()
            return h if all(h["secondaries"][n]["acked_seq"] >= h["last_seq"] for n in names) \
                else None
        return poll(ok, timeout, 0.05, "replication to drain")

    def pids(self) -> dict:
        return {"master": self.master.pid, **{n: p.pid for n, p in self.secs.items()}}

    def disk_bytes(self, name: str) -> int:
        return sum(p.stat().st_size for p in (self.workdir / name / "segments").glob("*.log"))

    def master_uri(self) -> str:
        import Pyro5.api
        with Pyro5.api.locate_ns("127.0.0.1", self.lc.ns_port) as ns:
            return str(ns.lookup("replog.master"))

    def proxy(self):
        import Pyro5.api
        p = Pyro5.api.Proxy(self.master_uri())
        p._pyroTimeout = 300
        p._pyroSerializer = "marshal"
        return p

    def close(self) -> None:
        self.lc.close()


def split_cpus(cpus: set[int]) -> tuple[set[int], set[int]]:
    """--pin-master: (the master's CPU, everyone else's): the lowest CPU alone."""
    if len(cpus) < 2:
        raise SystemExit(f"--pin-master needs at least 2 CPUs; this process may use {sorted(cpus)}")
    first = min(cpus)
    return {first}, cpus - {first}


def _pin(procs: list, cpus: set[int]) -> None:
    """Every thread of these psutil processes on cpus."""
    for proc in procs:
        for thread in proc.threads():
            os.sched_setaffinity(thread.id, cpus)


def pin_cluster(c: "DurablePartCluster", master_cpus: set[int], other_cpus: set[int]) -> None:
    """The master's own threads on master_cpus; its fsync helper and every other node
    process (with their children) on other_cpus."""
    import psutil

    master = psutil.Process(c.master.pid)
    _pin([master], master_cpus)
    others = master.children(recursive=True)
    for name, proc in c.lc.procs.items():
        if name != "master":
            p = psutil.Process(proc.pid)
            others += [p, *p.children(recursive=True)]
    _pin(others, other_cpus)
