"""The durability part's cases with N messages stored (bench/durable.py):

2. recovery: a master with N stored is killed and restarted: seconds from its start to its
   first HTTP answer; a secondary with N stored that missed the last 1,000 restarts:
   seconds from its first answer to holding all, and how many messages the master sent it;
3. reads: one client reads GET /messages (the whole list) again and again while another
   appends with w=1: the writer's latency with and without the reader.
"""
from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from .cluster import fill
from .common import http_json, log, poll
from .durable_cluster import DurablePartCluster


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
    c = DurablePartCluster(workdir / "recovery", True)
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
    c = DurablePartCluster(workdir / "reads", False)
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
