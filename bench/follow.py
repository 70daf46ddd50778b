"""Bench part `follow`: following the log over HTTP, and batch appends (`--only follow`).

(a) w=1 HTTP append throughput (the load generator of the `http` part) against the master
    with nobody following, with FOLLOWERS long-polls held on it (waiting for a seq the run
    does not reach: what holding costs), and with FOLLOWERS streams following its tail (each
    is sent every message: what fan-out costs). The variants alternate over the rounds; each
    figure is the median of its rounds. Target: held costs at most 5%.
(b) The delay from a w=1 append (the time written into the message just before the POST
    is sent) to its receipt by a stream follower, p50 and p99, at RATE appends/s: with one
    follower, and with FOLLOWERS streams open (timed on a few of them).
(c) Batches of BATCH messages of --size bytes at w=3 over HTTP (BATCH_CLIENTS clients)
    against single POSTs at w=3 (the load generator) in the same run. Target: batches at
    least 100,000 messages/s.
(d) The master's CPU with the dashboard's page open: its poll of GET /cluster every 0.5 s,
    against a stream of the log (GET /messages/stream) with the same appends going on.

Followers run in their own process (bench/followers.py), so their CPU is not the master's.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from .cluster import Cluster
from .common import REPO, log
from .driver import run_loadgen

FOLLOWERS = 1000
RATE = 1000            # appends/s for the delay figure
BATCH = 1000           # messages per batch POST
BATCH_CLIENTS = 4
TARGET_HOLD = 0.95     # throughput with FOLLOWERS held long-polls / without
TARGET_BATCH = 100_000


def add_args(parser) -> None:
    parser.add_argument("--follow-count", type=int, default=FOLLOWERS,
                        help=f"follow part: long-polls or streams held open ({FOLLOWERS:,})")
    parser.add_argument("--follow-rounds", type=int, default=None,
                        help="follow part: rounds of each (a) variant (2, quick 1)")


class Followers:
    """A bench.followers process: started, ready, then stopped for its JSON."""

    def __init__(self, url: str, mode: str, count: int, first: int, timed: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.followers", "--url", url, "--mode", mode,
             "--count", str(count), "--first", str(first), "--timed", str(timed)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line or json.loads(line).get("ready") != count:
            self.proc.kill()
            raise RuntimeError(f"followers ({mode}) did not start: {line!r}")

    def stop(self) -> dict:
        out, _ = self.proc.communicate("", timeout=120)
        return json.loads(out.strip().splitlines()[-1])


def _post(conn, body: bytes) -> dict:
    conn.request("POST", "/messages", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 201:
        raise RuntimeError(f"POST /messages -> {resp.status}: {data[:200]!r}")
    return json.loads(data)


def _conn(url: str):
    import http.client
    u = urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def last_seq(cluster: Cluster) -> int:
    return cluster.master_health()["last_seq"]


# -- (a) ----------------------------------------------------------------------------------
def throughput(args, cluster: Cluster) -> dict:
    rounds = args.follow_rounds or (1 if args.quick else 2)
    variants = ("none", "held", "streams")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    followers: dict[str, list[dict]] = {v: [] for v in variants}
    pids = {"master": cluster.pids()["master"]}
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else tuple(reversed(variants))):
            log(f"follow: http w=1, {v} (round {r + 1} of {rounds}), {args.clients} clients, "
                f"{args.seconds} s")
            f = None
            if v == "held":
                f = Followers(cluster.master.url, "held", args.follow_count, 10 ** 12)
            elif v == "streams":
                f = Followers(cluster.master.url, "stream", args.follow_count,
                              last_seq(cluster) + 1)
            try:
                res = run_loadgen(args, "http", 1, url=cluster.master.url, pids=pids)
            finally:
                if f is not None:
                    followers[v].append(f.stop())
            runs[v].append(res)
            cluster.wait_drained()
    out = {"rounds": rounds, "followers": args.follow_count, "variants": {}}
    for v, rs in runs.items():
        rate = statistics.median(x["appends_per_s"] for x in rs)
        cores = statistics.median(x["cpu_cores"].get("master") or 0 for x in rs)
        out["variants"][v] = {
            "appends_per_s": round(rate, 1), "each": [round(x["appends_per_s"], 1) for x in rs],
            "p99_ms": round(statistics.median(x["latency_ms"]["p99"] for x in rs), 2),
            "master_cores": round(cores, 3),
            "master_cpu_us_per_append": round(cores / rate * 1e6, 1) if rate else None,
            "errors": sum(x.get("errors", 0) for x in rs),
            "followers": followers[v]}
    base = out["variants"]["none"]["appends_per_s"]
    for v in ("held", "streams"):
        x = out["variants"][v]
        x["vs_none"] = round(x["appends_per_s"] / base, 3) if base else None
    held = out["variants"]["held"]["vs_none"]
    out["held_met"] = None if held is None else held >= TARGET_HOLD
    return out


# -- (b) ----------------------------------------------------------------------------------
def paced_appends(url: str, rate: int, seconds: float, size: int, senders: int = 4) -> dict:
    """w=1 POSTs at `rate` per second on a schedule (a slow answer does not lower the rate:
    the next ones go at once), from `senders` threads with a connection each; every message
    starts with the unix time it was sent at."""
    n = int(rate * seconds)
    t0 = time.perf_counter() + 0.2
    late = [0] * senders

    def sender(k: int) -> None:
        conn = _conn(url)
        for i in range(k, n, senders):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.01:
                late[k] += 1
            text = f"{time.time():.6f}-"
            body = json.dumps({"message": (text + "x" * size)[:max(size, len(text))], "w": 1})
            _post(conn, body.encode())
        conn.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    return {"appends": n, "seconds": round(took, 3), "rate": round(n / took, 1),
            "late_by_10ms": sum(late)}


def delays(args, cluster: Cluster) -> dict:
    seconds = 3.0 if args.quick else 10.0
    out = {"rate": RATE, "seconds": seconds}
    for label, count, timed in (("one follower", 1, 1),
                                (f"{args.follow_count} streams", args.follow_count, 10)):
        log(f"follow: append -> stream delay at {RATE}/s, {label}, {seconds} s")
        f = Followers(cluster.master.url, "stream", count, last_seq(cluster) + 1, timed)
        try:
            sent = paced_appends(cluster.master.url, RATE, seconds, args.size)
            cluster.wait_drained()
            time.sleep(0.5)                # the last events on their way
        finally:
            got = f.stop()
        out[label] = {"sent": sent, "followers": got}
    return out


# -- (c) ----------------------------------------------------------------------------------
def batches(args, cluster: Cluster) -> dict:
    seconds = args.seconds
    pad = "x" * args.size
    log(f"follow: HTTP batches of {BATCH} x {args.size} B at w=3, {BATCH_CLIENTS} clients, "
        f"{seconds} s")
    counts = [0] * BATCH_CLIENTS
    errors: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        body = json.dumps({"messages": [(f"b{k}-{i:06d}" + pad)[:args.size]
                                        for i in range(BATCH)], "w": 3}).encode()
        conn = _conn(cluster.master.url)
        try:
            while not stop.is_set():
                _post(conn, body)
                counts[k] += BATCH
        except Exception as e:   # noqa: BLE001
            errors.append(repr(e))
        conn.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True)
               for k in range(BATCH_CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(min(1.0, args.warmup))
    before, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    done, took = sum(counts) - before, time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(60)
    cluster.wait_drained()
    log(f"follow: single POSTs at w=3, {args.clients} clients, {seconds} s")
    single = run_loadgen(args, "http", 3, url=cluster.master.url,
                         pids={"master": cluster.pids()["master"]})
    cluster.wait_drained()
    rate = done / took
    return {"batch": BATCH, "size": args.size, "clients": BATCH_CLIENTS,
            "batched_messages_per_s": round(rate, 1),
            "single_messages_per_s": round(single["appends_per_s"], 1),
            "single_p99_ms": round(single["latency_ms"]["p99"], 2),
            "speedup": round(rate / single["appends_per_s"], 1) if single["appends_per_s"]
            else None, "errors": errors, "target": TARGET_BATCH,
            "met": rate >= TARGET_BATCH}


# -- (d) ----------------------------------------------------------------------------------
def dashboard_cost(args, cluster: Cluster) -> dict:
    """Master CPU per second with one page open: its poll of GET /cluster every 0.5 s, or a
    stream of the log, while w=1 appends go on at RATE/10 per second (a lively cluster)."""
    from .dashboard import POLL_S, WATCH_LINGER, Poller
    from .procs import cpu_seconds

    seconds = 3.0 if args.quick else 8.0
    pid = cluster.pids()["master"]
    rate = RATE // 10
    m = cluster.master.url

    def measure(label: str, start, stop) -> dict:
        handle = start()
        time.sleep(1.0)
        box: dict = {}
        appender = threading.Thread(target=lambda: box.update(
            paced_appends(m, rate, seconds, args.size)), daemon=True)
        c0, t0 = cpu_seconds(pid), time.perf_counter()
        appender.start()
        appender.join(seconds + 60)
        c1, t1 = cpu_seconds(pid), time.perf_counter()
        extra = stop(handle)
        return {"master_cores": round((c1 - c0) / (t1 - t0), 4), "appends": box, **extra}

    log(f"follow: master CPU, nobody watching / dashboard poll / stream, {seconds} s each")
    out = {"seconds": seconds, "appends_per_s": rate}
    out["nobody"] = measure("nobody", lambda: None, lambda h: {})

    def poll_start():
        p = Poller([m + "/cluster?after={after}"], POLL_S,
                   once=[m + "/", m + "/dashboard/app.js", m + "/dashboard/style.css"])
        p.start()
        return p

    def poll_stop(p):
        p.stop()
        time.sleep(WATCH_LINGER)        # the master's tail loops end after the last poll
        return {"gets": p.requests}

    out["dashboard poll"] = measure("poll", poll_start, poll_stop)
    out["stream"] = measure(
        "stream", lambda: Followers(m, "stream", 1, last_seq(cluster) + 1),
        lambda f: {"events": f.stop()["events"]})
    base = out["nobody"]["master_cores"]
    for k in ("dashboard poll", "stream"):
        out[k]["over_nobody_cores"] = round(out[k]["master_cores"] - base, 4)
    return out


def run(args, out: dict) -> None:
    """The part's entry point (bench/parts.py)."""
    flags = dict(args.master_flags)
    flags.setdefault("max_connections", 10_000)
    cluster = Cluster(args.workdir / "follow", flags, args.secondary_flags)
    try:
        section = {"throughput": throughput(args, cluster)}
        section["batches"] = batches(args, cluster)
        section["delay"] = delays(args, cluster)
        section["dashboard"] = dashboard_cost(args, cluster)
    finally:
        cluster.close()
    out["follow"] = section


def render(d: dict) -> str:
    t = d["throughput"]
    lines = ["", f"follow: HTTP w=1 appends with {t['followers']:,} followers on the master "
             f"(median of {t['rounds']} round(s); target: held costs <= 5%)",
             f"{'variant':<10}{'appends/s':>11}{'vs none':>9}{'p99 ms':>9}{'master':>8}"
             f"{'us/app':>8}{'events':>11}  each round"]
    for v, x in t["variants"].items():
        ratio = x.get("vs_none")
        events = sum(f.get("events", 0) for f in x["followers"])
        mark = ("  met" if t["held_met"] else "  MISSED") if v == "held" else ""
        lines.append(f"{v:<10}{x['appends_per_s']:>11,.0f}"
                     f"{(f'{ratio:.3f}' if ratio is not None else '-'):>9}{x['p99_ms']:>9.2f}"
                     f"{x['master_cores']:>8.2f}{x['master_cpu_us_per_append'] or 0:>8.0f}"
                     f"{events:>11,}  {', '.join(f'{y:,.0f}' for y in x['each'])}{mark}")
    dl = d["delay"]
    lines += ["", f"follow: delay from a w=1 append to its receipt over a stream, at "
              f"{dl['rate']:,} appends/s for {dl['seconds']:g} s",
              f"{'followers':<16}{'sent/s':>9}{'timed':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"]
    for label in [k for k in dl if k not in ("rate", "seconds")]:
        x = dl[label]
        f = x["followers"]
        lines.append(f"{label:<16}{x['sent']['rate']:>9,.0f}{f['timed']:>9,}"
                     f"{f['delay_ms']['p50'] or 0:>9.2f}{f['delay_ms']['p99'] or 0:>9.2f}"
                     f"{f['delay_ms']['max'] or 0:>9.2f}")
    b = d["batches"]
    lines += ["", f"follow: HTTP batches of {b['batch']:,} x {b['size']} B at w=3 against single "
              f"POSTs at w=3 (target >= {b['target']:,} messages/s)",
              f"  batched {b['batched_messages_per_s']:>11,.0f} messages/s"
              f"{'  met' if b['met'] else '  MISSED'}",
              f"  single  {b['single_messages_per_s']:>11,.0f} messages/s "
              f"(p99 {b['single_p99_ms']} ms): batches {b['speedup']}x"]
    c = d["dashboard"]
    lines += ["", f"follow: the master's CPU with one dashboard page open, {c['appends_per_s']} "
              f"w=1 appends/s going on, {c['seconds']:g} s each"]
    for k in ("nobody", "dashboard poll", "stream"):
        x = c[k]
        over = x.get("over_nobody_cores")
        lines.append(f"  {k:<15}{x['master_cores'] * 1000:>8.1f} millicores"
                     + (f"  (+{over * 1000:.1f} over nobody)" if over is not None else ""))
    return "\n".join(lines)
