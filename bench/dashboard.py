"""Bench part `dashboard`: what watching the cluster costs the writers (issue 11).

In one cluster and one run, HTTP w=3 appends (the load generator of the `http` part, same
clients and seconds) are measured three ways:

  plain      nobody watches;
  dashboard  a client does what an open dashboard page does: GET / and its script once,
             then GET /cluster?after=ID every 0.5 s (the page's poll; each one also keeps
             the master reading both secondaries' tails over Pyro5);
  metrics    a Prometheus-like scraper GETs /metrics of the master and both secondaries
             every second.

The three alternate (plain, dashboard, metrics, then the reverse order, ...) so that a drift
of the shared machine does not favour one; each variant's figure is the median of its
rounds. Target: dashboard and metrics each >= 97% of plain's appends/s.

On a shared 2-core machine the throughput of one 10 s case moves by more than 3% from run
to run, whoever watches. So the part also measures what watching costs directly, without
load: the CPU time of the master and both secondaries (psutil) over IDLE_S seconds idle,
then watched by the page's poll, then scraped, in cores. Divided by the master's CPU per
append under load, that is the appends/s that watching can take away at most
("equivalent appends/s"), a figure that does not depend on the neighbours.
"""
from __future__ import annotations

import http.client
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from .cluster import Cluster
from .common import log
from .load import load_case
from .procs import Profiler, cpu_seconds, proc_pid

TARGET = 0.97
POLL_S = 0.5        # nodes/dashboard/static/app.js POLL_MS
SCRAPE_S = 1.0
VARIANTS = ("plain", "dashboard", "metrics")
IDLE_S = 8.0        # psutil counts CPU in 10 ms ticks: 1.25 millicores of resolution
BURST = 300         # back-to-back GETs to price one request in master CPU
WATCH_LINGER = 6.0  # > nodes.dashboard.WATCH_FOR: tails stop being read after the last poll


class Poller(threading.Thread):
    """GETs `paths` on their URLs every `interval` s (keep-alive, one connection per host)."""

    def __init__(self, urls: list[str], interval: float, once: list[str] = ()) -> None:
        super().__init__(daemon=True)
        self.urls, self.interval, self.once = urls, interval, list(once)
        self.stop_event = threading.Event()
        self.requests = self.errors = 0
        self.after = 0

    def _get(self, conns: dict, url: str) -> bytes | None:
        u = urlsplit(url)
        conn = conns.get(u.netloc)
        if conn is None:
            conn = conns[u.netloc] = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        try:
            conn.request("GET", u.path + (f"?{u.query}" if u.query else ""))
            resp = conn.getresponse()
            body = resp.read()
            self.requests += 1
            if resp.status != 200:
                self.errors += 1
            return body
        except OSError:
            self.errors += 1
            conns.pop(u.netloc).close()
            return None

    def run(self) -> None:
        import json
        conns: dict = {}
        for url in self.once:
            self._get(conns, url)
        while not self.stop_event.is_set():
            started = time.monotonic()
            for url in self.urls:
                body = self._get(conns, url.replace("{after}", str(self.after)))
                if body and "/cluster" in url:
                    self.after = json.loads(body).get("last_event", self.after)
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))
        for c in conns.values():
            c.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def watcher(variant: str, cluster) -> Poller | None:
    m = cluster.master.url
    if variant == "dashboard":
        return Poller([m + "/cluster?after={after}"], POLL_S,
                      once=[m + "/", m + "/dashboard/app.js", m + "/dashboard/style.css"])
    if variant == "metrics":
        return Poller([m + "/metrics"] + [p.url + "/metrics" for p in cluster.secondaries.values()],
                      SCRAPE_S)
    return None


def dashboard_part(args, workdir: Path, master_flags: dict, secondary_flags: dict) -> dict:
    rounds = 1 if args.quick else 3
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    polls: dict[str, int] = {v: 0 for v in VARIANTS}
    cluster = Cluster(workdir / "dashboard", master_flags, secondary_flags)
    try:
        idle_cost = watch_cost(cluster, log, 3.0 if args.quick else IDLE_S)
        for r in range(rounds):
            for variant in (VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))):
                log(f"dashboard: http w=3 {variant} (round {r + 1} of {rounds}), "
                    f"{args.clients} clients, {args.seconds} s")
                poller = watcher(variant, cluster)
                if poller:
                    poller.start()
                try:
                    res = load_case(args, cluster, "http", 3, Profiler(None, 0, False))
                finally:
                    if poller:
                        poller.stop()
                        polls[variant] += poller.requests
                        if poller.errors:
                            raise RuntimeError(f"{variant}: {poller.errors} failed GETs")
                    if variant == "dashboard":   # the tail loops must not run into the next
                        time.sleep(WATCH_LINGER)
                runs[variant].append(res)
    finally:
        cluster.close()

    out = {"rounds": rounds, "target": TARGET, "variants": {}, "idle_cost": idle_cost}
    for v in VARIANTS:
        rs = runs[v]
        out["variants"][v] = {
            "appends_per_s": round(statistics.median(x["appends_per_s"] for x in rs), 1),
            "each": [round(x["appends_per_s"], 1) for x in rs],
            "p99_ms": round(statistics.median(x["latency_ms"]["p99"] for x in rs), 2),
            "master_cpu_us": statistics.median(x["server_cpu_us_per_append"] or 0 for x in rs),
            "errors": sum(x.get("errors", 0) for x in rs),
            "watcher_requests": polls[v],
        }
    plain = out["variants"]["plain"]["appends_per_s"]
    for v in ("dashboard", "metrics"):
        ratio = round(out["variants"][v]["appends_per_s"] / plain, 3) if plain else None
        out["variants"][v]["vs_plain"] = ratio
        out["variants"][v]["met"] = None if ratio is None else ratio >= TARGET
        us = out["variants"]["plain"]["master_cpu_us"]
        cores = idle_cost[v]["cores_over_idle"]
        idle_cost[v]["equivalent_appends_per_s"] = round(cores / us * 1e6, 1) if us else None
        idle_cost[v]["share_of_plain"] = (round(cores / us * 1e6 / plain, 4) if us and plain
                                          else None)
    return out


def watch_cost(cluster, log, seconds: float) -> dict:
    """Cores the master and both secondaries use over `seconds`: idle, watched, scraped."""
    pids = [proc_pid(cluster.master)] + [proc_pid(p) for p in cluster.secondaries.values()]

    def cores(variant: str) -> dict:
        poller = watcher(variant, cluster)
        if poller:
            poller.start()
            time.sleep(1.0)        # the tail loops start on the first poll
        before, t0 = [cpu_seconds(p) for p in pids], time.perf_counter()
        time.sleep(seconds)
        after, t1 = [cpu_seconds(p) for p in pids], time.perf_counter()
        if poller:
            poller.stop()
        if variant == "dashboard":
            time.sleep(WATCH_LINGER)
        return {"cores": round(sum(a - b for a, b in zip(after, before)) / (t1 - t0), 5),
                "master_cores": round((after[0] - before[0]) / (t1 - t0), 5),
                "gets": poller.requests if poller else 0}

    log(f"dashboard: CPU of the idle cluster, watched, scraped ({seconds} s each)")
    out = {v: cores(v) for v in VARIANTS}
    out["seconds"] = seconds
    for v, path in (("dashboard", "/cluster"), ("metrics", "/metrics")):
        poller = Poller([], 0)
        conns: dict = {}
        before = cpu_seconds(pids[0])
        for _ in range(BURST):
            poller._get(conns, cluster.master.url + path)
        out[v]["master_us_per_get"] = round((cpu_seconds(pids[0]) - before) / BURST * 1e6, 1)
        for c in conns.values():
            c.close()
    time.sleep(WATCH_LINGER)
    for v in VARIANTS:
        out[v]["cores_over_idle"] = round(max(0.0, out[v]["cores"] - out["plain"]["cores"]), 5)
    return out


def run(args, out: dict) -> None:
    """The part's entry point (bench/parts.py)."""
    out["dashboard"] = dashboard_part(args, args.workdir, args.master_flags, args.secondary_flags)


def render(d: dict) -> str:
    lines = ["", f"dashboard and metrics cost (HTTP w=3, median of {d['rounds']} round(s) each; "
             f"target >= {d['target']:.0%} of plain)",
             f"{'variant':<11}{'appends/s':>11}{'vs plain':>10}{'p99 ms':>9}{'cpu us':>8}"
             f"{'GETs':>7}  each round"]
    for v, r in d["variants"].items():
        ratio = r.get("vs_plain")
        mark = "" if ratio is None else ("  met" if r["met"] else "  MISSED")
        lines.append(f"{v:<11}{r['appends_per_s']:>11,.0f}"
                     f"{(f'{ratio:.3f}' if ratio is not None else '-'):>10}{r['p99_ms']:>9.2f}"
                     f"{r['master_cpu_us'] or 0:>8.1f}{r['watcher_requests']:>7}  "
                     f"{', '.join(f'{x:,.0f}' for x in r['each'])}{mark}")
    c = d.get("idle_cost") or {}
    if c:
        lines.append(f"cost of watching an idle cluster (CPU of master + s1 + s2 over "
                     f"{c['seconds']:g} s): idle {c['plain']['cores'] * 1000:.1f} millicores")
        for v in ("dashboard", "metrics"):
            x = c[v]
            share = x.get("share_of_plain")
            lines.append(f"  {v:<10} +{x['cores_over_idle'] * 1000:.1f} millicores "
                         f"({x['gets']} GETs;"
                         f" one GET {x.get('master_us_per_get')} us of master CPU)"
                         f" = {x.get('equivalent_appends_per_s') or 0:,.0f} appends/s of master CPU"
                         + (f" = {share:.2%} of plain's appends/s" if share is not None else ""))
    return "\n".join(lines)
