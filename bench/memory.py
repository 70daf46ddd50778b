"""The memory case (``--only memory``): resident memory of the master and the secondaries
per stored message.
"""

from __future__ import annotations

import time
from pathlib import Path

from .cluster import Cluster, fill
from .common import SECONDARIES, http_json, log, poll
from .procs import rss_bytes


def memory_case(args, workdir: Path, master_flags, secondary_flags) -> dict:
    n = args.memory
    cluster = Cluster(workdir / "memory", master_flags, secondary_flags)
    try:
        proxy = cluster.master_proxy()
        # warm up with one full batch, so that the baseline already holds what filling needs
        # transiently (the Pyro5 message buffers, the decoder's high-water mark)
        warm = args.batch
        fill(proxy, warm, args.size, args.batch, 3, "w")
        cluster.wait_drained()
        time.sleep(0.3)
        pids = cluster.pids()
        nodes = ["master", *SECONDARIES]
        before = {k: rss_bytes(pids[k]) for k in nodes}
        log(f"memory: filling {n:,} messages of {args.size} B with append_many w=3")
        fill_s = fill(proxy, n, args.size, args.batch, 3, "m")
        cluster.wait_drained()
        for name, p in cluster.secondaries.items():
            poll(lambda p=p: http_json(p.url + "/health")[1]["messages"] >= n + warm, 60, 0.1, f"{name} to hold all")
        time.sleep(0.3)
        after = {k: rss_bytes(pids[k]) for k in nodes}
        per = {}
        for k in nodes:
            bpm = (after[k] - before[k]) / n
            per[k] = {
                "rss_before": before[k],
                "rss_after": after[k],
                "bytes_per_message": round(bpm, 1),
                "x_payload": round(bpm / args.size, 2),
            }
        return {"messages": n, "message_bytes": args.size, "warmup_messages": warm, "fill_s": round(fill_s, 3),
                "fill_rate": round(n / fill_s, 1), "nodes": per}
    finally:
        cluster.close()
