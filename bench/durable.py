"""The durability part of ``python -m bench`` (``--only durable``): what disk costs.

1. load: HTTP w=1 and w=3 on an in-memory cluster and on a durable one (every node with a
   data directory, --fsync always), alternated in one run, so they compare as ratios, for
   --durable-rounds rounds (3; --quick: 1) whose sums make the ratio;
   plus bytes on disk per message after that load (batches as group commit made them);
2. recovery: a master with N stored messages (default 1,000,000) is killed and restarted:
   seconds from its start to its first HTTP answer; a secondary with N stored that missed
   the last 1,000 restarts: seconds from its first answer to holding all, and how many
   messages the master sent it;
3. reads: with N stored, one client reads GET /messages (the whole list) again and again
   while another appends with w=1: the writer's latency with and without the reader.
"""
from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from .cluster import fill
from .common import SECONDARIES, http_json, log, poll
from .driver import run_loadgen

TARGET_DURABLE_VS_MEMORY = 0.85
TARGET_DURABLE_P99 = 1.5
TARGET_MASTER_START_S = 2.0
TARGET_SECONDARY_CATCHUP_S = 1.0
TARGET_DISK_FACTOR = 1.3


class _Cluster:
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


def _pin_cluster(c: "_Cluster", master_cpus: set[int], other_cpus: set[int]) -> None:
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


def load_part(args, workdir: Path) -> dict:
    """Each round runs w=1 and w=3 on both clusters, memory first; a ratio compares the sums
    over the rounds (on a noisy machine one pair of cases can be off by 20%), and each
    round's own ratio is kept to show the spread. With --pin-master the master runs alone
    on one CPU and everything else, the load generator included, on the others."""
    clusters = {"memory": _Cluster(workdir / "mem", False),
                "durable": _Cluster(workdir / "dur", True)}
    runs: dict[str, list[dict]] = {}
    pinned = None
    mine = os.sched_getaffinity(0)
    try:
        if getattr(args, "pin_master", False):
            master_cpus, other_cpus = split_cpus(mine)
            for c in clusters.values():
                _pin_cluster(c, master_cpus, other_cpus)
            pinned = {"master": sorted(master_cpus), "others": sorted(other_cpus)}
            log(f"durable: the masters on CPU {pinned['master']}, all else on {pinned['others']}")
        for r in range(args.durable_rounds):
            for w in (1, 3):
                for kind in ("memory", "durable"):
                    c = clusters[kind]
                    log(f"durable: round {r + 1} of {args.durable_rounds}, HTTP w={w} on the "
                        f"{kind} cluster, {args.clients} clients, {args.seconds} s")
                    if pinned:       # the load generator inherits this process's CPUs
                        os.sched_setaffinity(0, set(pinned["others"]))
                    try:
                        res = run_loadgen(args, "http", w, url=c.master.url, pids=c.pids())
                    finally:
                        os.sched_setaffinity(0, mine)
                    c.drained()
                    runs.setdefault(f"{kind}-w{w}", []).append(res)
        dur = clusters["durable"]
        h = dur.health()
        disk = {"messages": h["last_seq"], "syncs": h["durable"]["syncs"],
                "bytes": {n: dur.disk_bytes(n) for n in ("master", *SECONDARIES)}}
        payload = h["last_seq"] * args.size
        disk["x_payload"] = {n: round(b / payload, 3) for n, b in disk["bytes"].items()}
        disk["messages_per_sync"] = round(h["last_seq"] / max(1, h["durable"]["syncs"]), 1)
    finally:
        for c in clusters.values():
            c.close()
    cases = {name: _merged(rs) for name, rs in runs.items()}
    ratios: dict = {"rounds": args.durable_rounds}
    for w in (1, 3):
        m, d = cases[f"memory-w{w}"], cases[f"durable-w{w}"]
        # the means' ratio is the sums' ratio: every case ran the same number of rounds
        ratios[f"w{w}_throughput"] = round(d["appends_per_s"] / m["appends_per_s"], 3)
        ratios[f"w{w}_throughput_rounds"] = [round(b / a, 3) for a, b in
                                             zip(m["rounds"], d["rounds"])]
        ratios[f"w{w}_p99"] = round(d["latency_ms"]["p99"] / m["latency_ms"]["p99"], 3)
    return {"cases": cases, "ratios": ratios, "disk": disk, "pinned": pinned}


def _merged(results: list[dict]) -> dict:
    """One case over its rounds: mean appends/s, median latencies and cores."""
    def med(values):
        return round(statistics.median(values), 3)
    cores = {k: med([r["cpu_cores"][k] for r in results if k in r.get("cpu_cores", {})])
             for k in results[0].get("cpu_cores", {})}
    sched = {k: med([r["sched"][k] for r in results if k in r.get("sched", {})])
             for k in results[0].get("sched", {})}
    return {"appends_per_s": round(statistics.mean(r["appends_per_s"] for r in results), 1),
            "latency_ms": {k: med([r["latency_ms"][k] for r in results])
                           for k in ("p50", "p99")},
            "cpu_cores": cores, "sched": sched,
            "rounds": [round(r["appends_per_s"], 1) for r in results]}


def _first_answer(url: str, timeout: float = 60.0) -> float:
    def ok():
        try:
            return http_json(url + "/health", timeout=1.0)[0] == 200
        except OSError:
            return False
    poll(ok, timeout, 0.005, url)
    return time.perf_counter()


def recovery_part(args, workdir: Path) -> dict:
    n, missed = args.stored, 1_000
    c = _Cluster(workdir / "recovery", True)
    try:
        log(f"durable: filling {n:,} messages of {args.size} B (append_many, w=3)")
        fill_s = fill(c.proxy(), n, args.size, args.batch, 3, "r")
        c.drained()
        # the master: kill -9, start, first HTTP answer
        c.master.kill()
        t0 = time.perf_counter()
        c.master.start()
        master_start = _first_answer(c.master.url) - t0
        assert c.health()["last_seq"] == n
        c.drained()
        # a secondary that misses the last `missed`
        s2 = c.secs["s2"]
        s2.kill()
        fill(c.proxy(), missed, args.size, missed, 2, "t")
        t0 = time.perf_counter()
        s2.start()
        answered = _first_answer(s2.url)
        poll(lambda: http_json(s2.url + "/health")[1]["messages"] >= n + missed, 60, 0.002,
             "s2 caught up")
        caught = time.perf_counter()
        poll(lambda: c.health()["secondaries"]["s2"]["acked_seq"] >= n + missed, 30, 0.01,
             "the master to see s2's ack")
        sent = c.health()["secondaries"]["s2"]["sent"]
        return {"stored": n, "fill_s": round(fill_s, 2),
                "master_start_to_http_s": round(master_start, 3),
                "secondary_start_to_http_s": round(answered - t0, 3),
                "secondary_answer_to_caught_up_s": round(caught - answered, 3),
                "secondary_missed": missed, "secondary_sent": sent}
    finally:
        c.close()


def _latencies(url: str, seconds: float, stop_reader: threading.Event | None = None) -> list:
    u = url.split("//", 1)[1]
    host, port = u.split(":")[0], int(u.split(":")[1].split("/")[0])
    conn = http.client.HTTPConnection(host, port, timeout=30)
    body = json.dumps({"message": "x" * 100, "w": 1})
    out = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        conn.request("POST", "/messages", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    return out


def _summary(ms: list) -> dict:
    s = sorted(ms)
    return {"count": len(s), "p50": round(statistics.median(s), 2),
            "p99": round(s[int(len(s) * 0.99) - 1], 2), "max": round(s[-1], 2)}


_READER = """
import json, signal, sys, time, urllib.request
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
url, n = sys.argv[1], int(sys.argv[2])
try:
    while True:
        t = time.perf_counter()
        body = json.loads(urllib.request.urlopen(url, timeout=60).read())
        assert len(body["messages"]) >= n
        print(round(time.perf_counter() - t, 3), flush=True)
except SystemExit:
    pass
"""


def reads_part(args, workdir: Path) -> dict:
    n = args.stored
    c = _Cluster(workdir / "reads", False)
    try:
        log(f"durable: reads with {n:,} stored")
        fill(c.proxy(), n, args.size, args.batch, 3, "g")
        c.drained()
        quiet = _latencies(c.master.url, 3.0)
        # the reader is another process: in this one its JSON decoding would hold the GIL
        # and stall the measuring writer, which is not what a server's writers see
        reader = subprocess.Popen([sys.executable, "-c", _READER, c.master.url + "/messages",
                                   str(n)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)            # let the first read start
        busy = _latencies(c.master.url, 6.0)
        reader.terminate()
        out = reader.communicate(timeout=60)[0].split()
        reads = [float(x) for x in out]
        return {"stored": n, "writer_alone_ms": _summary(quiet), "writer_with_reader_ms":
                _summary(busy), "full_reads": len(reads),
                "full_read_s": round(statistics.median(reads), 2) if reads else None}
    finally:
        c.close()


def measure(args, workdir: Path) -> dict:
    out = {"load": load_part(args, workdir), "recovery": recovery_part(args, workdir),
           "reads": reads_part(args, workdir)}
    out["targets"] = targets(out)
    return out


def run(args, out: dict) -> None:
    """The part's entry point (bench/parts.py); its flags are in bench/run.py's parser."""
    out["durable"] = measure(args, args.workdir)


def targets(d: dict) -> list[dict]:
    r, rec, disk = d["load"]["ratios"], d["recovery"], d["load"]["disk"]
    rows = [
        ("durable w=3 / in-memory w=3 appends/s", r["w3_throughput"], ">=",
         TARGET_DURABLE_VS_MEMORY),
        ("durable w=1 / in-memory w=1 appends/s", r["w1_throughput"], ">=",
         TARGET_DURABLE_VS_MEMORY),
        ("durable w=3 p99 / in-memory w=3 p99", r["w3_p99"], "<=", TARGET_DURABLE_P99),
        (f"master with {rec['stored']:,} stored: start to HTTP (s)",
         rec["master_start_to_http_s"], "<=", TARGET_MASTER_START_S),
        (f"secondary missing {rec['secondary_missed']:,}: answer to caught up (s)",
         rec["secondary_answer_to_caught_up_s"], "<=", TARGET_SECONDARY_CATCHUP_S),
        ("disk bytes per message / payload (master)", disk["x_payload"]["master"], "<=",
         TARGET_DISK_FACTOR),
    ]
    out = [{"target": t, "value": v, "op": op, "limit": lim,
            "met": v >= lim if op == ">=" else v <= lim} for t, v, op, lim in rows]
    if d["load"].get("pinned"):     # the targets are for nodes that share the machine's CPUs
        for row in out[:3]:
            row["met"] = None
    return out


def render(d: dict) -> str:
    load, rec, reads = d["load"], d["recovery"], d["reads"]
    pinned = load.get("pinned")
    lines = ["", "Durability (every node --fsync always vs in memory, HTTP, same run)" +
             (f"; --pin-master: the master on CPU {pinned['master']}, all else on "
              f"{pinned['others']} (not the targets' setup)" if pinned else ""),
             f"{'case':<16}{'appends/s':>12}{'p50 ms':>9}{'p99 ms':>9}   cores used"]
    for name, c in load["cases"].items():
        lat = c["latency_ms"]
        cores = " ".join(f"{k}={v}" for k, v in c.get("cpu_cores", {}).items()
                         if k in ("master", "s1", "s2", "loadgen", "other"))
        lines.append(f"{name:<16}{c['appends_per_s']:>12,.0f}{lat['p50']:>9.2f}{lat['p99']:>9.2f}"
                     f"   {cores}")
    lines.append("the master's CPU taken by other tasks (median of the rounds): waiting for a "
                 "CPU (share of time), preemptions/s; steal (cores)")
    for name, c in load["cases"].items():
        sched = c.get("sched", {})
        if sched:
            lines.append(f"  {name:<14}runq {sched.get('master_runq_wait', '?')}  preempted "
                         f"{sched.get('master_preempted_per_s', '?')}/s  steal "
                         f"{sched.get('steal_cores', '?')}")
    r = load["ratios"]
    if r.get("rounds", 1) > 1:
        for w in (1, 3):
            lines.append(f"durable / memory w={w}, {r['rounds']} rounds: {r[f'w{w}_throughput']}"
                         f" (per round: {', '.join(map(str, r[f'w{w}_throughput_rounds']))})")
    disk = load["disk"]
    lines.append(f"disk after the load: {disk['messages']:,} messages, "
                 f"{disk['messages_per_sync']} per fsync; bytes/payload " +
                 ", ".join(f"{k} {v}x" for k, v in disk["x_payload"].items()))
    lines.append(f"recovery, {rec['stored']:,} stored: master start -> HTTP "
                 f"{rec['master_start_to_http_s']} s; secondary that missed "
                 f"{rec['secondary_missed']:,}: start -> HTTP {rec['secondary_start_to_http_s']} s,"
                 f" then caught up in {rec['secondary_answer_to_caught_up_s']} s, sent "
                 f"{rec['secondary_sent']:,} messages")
    a, b = reads["writer_alone_ms"], reads["writer_with_reader_ms"]
    lines.append(f"reads, {reads['stored']:,} stored: a full GET /messages takes "
                 f"{reads['full_read_s']} s; a w=1 writer's p99/max {a['p99']}/{a['max']} ms "
                 f"alone, {b['p99']}/{b['max']} ms while {reads['full_reads']} full reads ran")
    for t in d["targets"]:
        mark = "n/c" if t["met"] is None else "met" if t["met"] else "MISSED"
        lines.append(f"  [{mark:>6}] {t['target']}: {t['value']} {t['op']} {t['limit']}")
    return "\n".join(lines)
