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

This module runs 1 and judges all three; 2 and 3 are in bench/durable_stored.py, the
cluster they share and --pin-master's CPU placement in bench/durable_cluster.py.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from .common import SECONDARIES, log
from .driver import run_loadgen
from .durable_cluster import DurablePartCluster, pin_cluster, split_cpus
from .durable_stored import reads_part, recovery_part

TARGET_DURABLE_VS_MEMORY = 0.85
TARGET_DURABLE_P99 = 1.5
TARGET_MASTER_START_S = 2.0
TARGET_SECONDARY_CATCHUP_S = 1.0
TARGET_DISK_FACTOR = 1.3


def load_part(args, workdir: Path) -> dict:
    """Each round runs w=1 and w=3 on both clusters, memory first; a ratio compares the sums
    over the rounds (on a noisy machine one pair of cases can be off by 20%), and each
    round's own ratio is kept to show the spread. With --pin-master the master runs alone
    on one CPU and everything else, the load generator included, on the others."""
    clusters = {"memory": DurablePartCluster(workdir / "mem", False),
                "durable": DurablePartCluster(workdir / "dur", True)}
    runs: dict[str, list[dict]] = {}
    pinned = None
    mine = os.sched_getaffinity(0)
    try:
        if getattr(args, "pin_master", False):
            master_cpus, other_cpus = split_cpus(mine)
            for c in clusters.values():
                pin_cluster(c, master_cpus, other_cpus)
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
