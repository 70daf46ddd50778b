"""The failover part of the benchmark (``python -m bench --only failover [--quick]``): how
long a client is without a master, and what --failover costs when nothing fails.

Three nodes (master, s1, s2), each with --failover --cluster master,s1,s2, a data directory
(--fsync always: the votes must survive a crash) and the default election flags
(--election-min 0.6, --election-max 1.2, --lease 0.5), unless --master-flag/--secondary-flag
say otherwise (they go to every node of the failover cluster).

1. kills: kill -9 of whichever node is master, then a client that tries a w=1 POST every
   10 ms through the nodes in turn (the killed one first: it was the client's master),
   following 307s at once, with a 0.25 s timeout per request: seconds from the SIGKILL to
   the first 201, which only a new master can give. The killed node is then started again
   (it rejoins as a secondary) and the cluster must be healthy again (one master, writable,
   every other node Healthy and synced, every node naming that master) before the next kill.
   Median and max over --failover-kills (20, quick 5); targets: median <= 1.5 s, max <= 3 s.
2. pause (SIGSTOP of the master): seconds until another node says it is master, and until
   it accepts a write; then SIGCONT: what the old master answers to a write at once (never
   201: its lease ended while it was stopped) and how long until it says it is a secondary.
   lease: the master cut off instead (both other nodes SIGSTOPped): seconds until it refuses
   a write (503), which is when a paused master's own lease ends too, on its own clock. It
   must end before any node can be elected (election >= --election-min after the last
   heartbeat a majority answered).
3. steady: HTTP w=3 appends/s and p99 with the load generator (--clients, --seconds) on a
   cluster with --failover and one without, both with the same data directories, alternated
   for --failover-rounds rounds (3, quick 1); ratio of the sums (target >= 0.95).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .common import http_json, log
from .driver import run_loadgen
from .procs import proc_pid
from .loadgen import percentile
from .trees import reap_nodes

NAMES = ("master", "s1", "s2")
RETRY_S = 0.01                 # the client tries again every 10 ms
REQUEST_TIMEOUT_S = 0.25       # ... and waits this long for one answer
FAILOVER_DEADLINE_S = 30.0     # a kill not over by then is recorded as None
TARGET_MEDIAN_S = 1.5
TARGET_MAX_S = 3.0
TARGET_STEADY = 0.95


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("failover part")
    g.add_argument("--failover-kills", type=int, default=None,
                   help="kill -9 of the master, times (20, quick 5)")
    g.add_argument("--failover-pauses", type=int, default=None,
                   help="SIGSTOP trials of the master, and of the lease (5 each, quick 2)")
    g.add_argument("--failover-rounds", type=int, default=None,
                   help="steady state: rounds of the on/off alternation (3, quick 1)")
    g.add_argument("--failover-cases", default="kills,pause,steady",
                   help="comma list of kills,pause,steady")


def settings(args) -> dict:
    quick = bool(getattr(args, "quick", False))

    def pick(name, full, small):
        v = getattr(args, name, None)
        return v if v is not None else (small if quick else full)

    cases = [c.strip() for c in (getattr(args, "failover_cases", None) or "kills,pause,steady")
             .split(",") if c.strip()]
    bad = set(cases) - {"kills", "pause", "steady"}
    if bad:
        raise SystemExit(f"unknown failover cases {sorted(bad)}; choose from kills,pause,steady")
    return {"quick": quick, "cases": cases, "kills": pick("failover_kills", 20, 5),
            "pauses": pick("failover_pauses", 5, 2), "rounds": pick("failover_rounds", 3, 1),
            "flags": {**dict(getattr(args, "master_flags", None) or {}),
                      **dict(getattr(args, "secondary_flags", None) or {})}}


# --------------------------------------------------------------------------- HTTP


def post(url: str, message: str, w: int = 1, timeout: float = REQUEST_TIMEOUT_S
         ) -> tuple[int | str, str | None]:
    """One POST /messages on a fresh connection: (status or exception name, Location)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", "/messages", body=json.dumps({"message": message, "w": w}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location")
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__, None
    finally:
        conn.close()


def write_through_any(urls: list[str], message: str, deadline: float) -> dict:
    """The client of case 1: a w=1 POST every 10 ms, the nodes in turn, 307s followed at
    once; returns when one answers 201 (or at the deadline) with what it met on the way."""
    seen: dict[str, int] = {}
    i = 0
    while time.perf_counter() < deadline:
        url = urls[i % len(urls)]
        i += 1
        for _ in range(3):                      # a 307 is followed at once, within one try
            status, location = post(url, message)
            seen[str(status)] = seen.get(str(status), 0) + 1
            if status == 307 and location:
                u = urlsplit(location)
                url = f"{u.scheme}://{u.netloc}"
                continue
            break
        if status == 201:
            return {"ok": True, "at": time.perf_counter(), "by": url, "answers": seen,
                    "tries": i}
        time.sleep(RETRY_S)
    return {"ok": False, "at": None, "by": None, "answers": seen, "tries": i}


def view(url: str, timeout: float = 0.25) -> dict | None:
    """A node's /health "failover" object; None when it does not answer."""
    try:
        status, body = http_json(url + "/health", timeout=timeout)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return body.get("failover") if status == 200 and isinstance(body, dict) else None


# --------------------------------------------------------------------------- the cluster


class FailoverCluster:
    """master, s1, s2 with --failover (or without, for the steady state's comparison)."""

    def __init__(self, workdir: Path, failover: bool, flags: dict) -> None:
        from nodes.launcher import LocalCluster

        self.failover = failover
        self.lc = LocalCluster(workdir)
        try:
            self.lc.start_nameserver()
            fo = dict(failover=True, cluster=list(NAMES)) if failover else {}
            nodes = {}
            for name in NAMES[1:]:
                nodes[name] = self.lc.start_secondary(name, data_dir=workdir / name, wait=False,
                                                      **fo, **flags)
            nodes["master"] = self.lc.start_master(list(NAMES[1:]), data_dir=workdir / "master",
                                                   wait=False, **fo, **flags)
            for p in nodes.values():
                p.wait_ready()
            self.procs = {n: nodes[n] for n in NAMES}
            self.wait_healthy()
        except BaseException:
            self.lc.close()
            raise

    def url(self, name: str) -> str:
        return self.procs[name].url

    def master(self) -> str | None:
        """The node every answering node names as master (it saying so itself), else None."""
        if not self.failover:
            return "master"
        views = {n: view(self.url(n)) for n in NAMES}
        named = {v["master"] for v in views.values() if v}
        if len(named) != 1:
            return None
        m = named.pop()
        v = views.get(m)
        return m if v and v["role"] == "master" else None

    def healthy(self) -> str | None:
        """The master's name when the cluster is whole: every node answers and names it, it
        is writable, and it sees every other node Healthy and synced."""
        m = self.master()
        if m is None:
            return None
        status, h = http_json(self.url(m) + "/health", timeout=1.0)
        if status != 200 or h.get("read_only") or h.get("role") != "master":
            return None
        secs = h.get("secondaries", {})
        others = [n for n in NAMES if n != m]
        if not all(secs.get(n, {}).get("status") == "Healthy" and secs[n].get("synced", True)
                   for n in others):
            return None
        if self.failover and not h.get("failover", {}).get("writable"):
            return None
        return m

    def wait_healthy(self, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                m = self.healthy()
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                m = None
            if m:
                return m
            time.sleep(0.05)
        raise TimeoutError(f"the cluster was not healthy within {timeout:g} s")

    def pids(self) -> dict:
        return {n: proc_pid(p) for n, p in self.procs.items()}

    def close(self) -> None:
        self.lc.close()


# --------------------------------------------------------------------------- 1. kills


def kills_case(s: dict, workdir: Path) -> dict:
    n = s["kills"]
    log(f"failover kills: {n} x kill -9 of the master; a client retrying every "
        f"{RETRY_S * 1000:g} ms through any node")
    c = FailoverCluster(workdir / "kills", True, s["flags"])
    trials = []
    try:
        for i in range(n):
            m = c.wait_healthy()
            urls = [c.url(m)] + [c.url(x) for x in NAMES if x != m]
            t0 = time.perf_counter()
            c.procs[m].kill()                       # SIGKILL, then reaped
            got = write_through_any(urls, f"after kill {i}", t0 + FAILOVER_DEADLINE_S)
            seconds = None if not got["ok"] else round(got["at"] - t0, 4)
            new = next((x for x in NAMES if c.url(x) == got["by"]), None)
            trials.append({"killed": m, "new_master": new, "seconds": seconds,
                           "tries": got["tries"], "answers": got["answers"]})
            log(f"failover kill {i + 1}/{n}: {m} killed, {new} wrote after "
                + (f"{seconds:.3f} s" if seconds is not None else "never"))
            c.procs[m].start()                       # same flags and data: a secondary now
            c.procs[m].wait_ready()
    finally:
        c.close()
    done = [t["seconds"] for t in trials if t["seconds"] is not None]
    med = round(statistics.median(done), 4) if done else None
    worst = max(done) if done else None
    return {"kills": n, "completed": len(done), "median_s": med, "max_s": worst,
            "p90_s": percentile(sorted(done), 90) if done else None,
            "min_s": min(done) if done else None,
            "trials": trials, "retry_s": RETRY_S, "request_timeout_s": REQUEST_TIMEOUT_S,
            "targets": {"median_s": TARGET_MEDIAN_S, "max_s": TARGET_MAX_S},
            "met": {"median": None if med is None else (med <= TARGET_MEDIAN_S
                                                        and len(done) == n),
                    "max": None if worst is None else (worst <= TARGET_MAX_S
                                                       and len(done) == n)}}


# --------------------------------------------------------------------------- 2. pause


def _poll(predicate, timeout: float, interval: float = RETRY_S):
    """(perf_counter when predicate() first returned something truthy, its value), or
    (None, None) at the deadline."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        value = predicate()
        if value:
            return time.perf_counter(), value
        time.sleep(interval)
    return None, None


def pause_case(s: dict, workdir: Path) -> dict:
    n = s["pauses"]
    log(f"failover pause: {n} x SIGSTOP of the master, {n} x the master cut off (lease)")
    c = FailoverCluster(workdir / "pause", True, s["flags"])
    paused, leases = [], []
    try:
        for i in range(n):
            m = c.wait_healthy()
            others = [x for x in NAMES if x != m]
            epoch = view(c.url(m))["epoch"]
            t0 = time.perf_counter()
            os.kill(proc_pid(c.procs[m]), signal.SIGSTOP)
            try:
                def elected():
                    for x in others:
                        v = view(c.url(x))
                        if v and v["role"] == "master" and v["epoch"] > epoch:
                            return x
                t_el, new = _poll(elected, FAILOVER_DEADLINE_S)
                t_wr = None
                if new:
                    t_wr, _ = _poll(lambda: post(c.url(new), f"pause {i}")[0] == 201,
                                    FAILOVER_DEADLINE_S)
            finally:
                os.kill(proc_pid(c.procs[m]), signal.SIGCONT)
            t_resume = time.perf_counter()
            # what the resumed old master answers to a write, first thing (timeout: it may
            # still be working through what arrived while it was stopped)
            first_answer, _ = post(c.url(m), f"to the old master {i}", timeout=5.0)
            t_down, _ = _poll(lambda: (view(c.url(m)) or {}).get("role") == "secondary",
                              FAILOVER_DEADLINE_S)
            rec = {"paused": m, "new_master": new,
                   "elected_s": None if t_el is None else round(t_el - t0, 4),
                   "write_s": None if t_wr is None else round(t_wr - t0, 4),
                   "old_master_answered": first_answer,
                   "stepped_down_s": None if t_down is None else round(t_down - t_resume, 4)}
            paused.append(rec)
            log(f"failover pause {i + 1}/{n}: {rec}")
        for i in range(n):
            m = c.wait_healthy()
            others = [x for x in NAMES if x != m]
            t0 = time.perf_counter()
            last_ok = None
            for x in others:
                os.kill(proc_pid(c.procs[x]), signal.SIGSTOP)
            try:
                def refused():
                    nonlocal last_ok
                    status, _ = post(c.url(m), f"lease {i}")
                    if status == 201:
                        last_ok = time.perf_counter()
                    return status if status not in (201,) else None
                t_ref, status = _poll(refused, FAILOVER_DEADLINE_S)
            finally:
                for x in others:
                    os.kill(proc_pid(c.procs[x]), signal.SIGCONT)
            rec = {"master": m, "refused_s": None if t_ref is None else round(t_ref - t0, 4),
                   "last_201_s": None if last_ok is None else round(last_ok - t0, 4),
                   "answer": status}
            leases.append(rec)
            log(f"failover lease {i + 1}/{n}: {rec}")
        c.wait_healthy()
    finally:
        c.close()

    def stats(values):
        xs = [x for x in values if x is not None]
        return {"median": round(statistics.median(xs), 4) if xs else None,
                "max": max(xs) if xs else None, "min": min(xs) if xs else None,
                "n": len(xs)}
    return {"pauses": paused, "leases": leases,
            "elected": stats(r["elected_s"] for r in paused),
            "write": stats(r["write_s"] for r in paused),
            "stepped_down": stats(r["stepped_down_s"] for r in paused),
            "refused": stats(r["refused_s"] for r in leases),
            "old_master_201": sum(1 for r in paused if r["old_master_answered"] == 201)}


# --------------------------------------------------------------------------- 3. steady


def steady_case(args, s: dict, workdir: Path) -> dict:
    rounds = s["rounds"]
    clusters = {"off": FailoverCluster(workdir / "off", False, s["flags"]),
                "on": FailoverCluster(workdir / "on", True, s["flags"])}
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        for r in range(rounds):
            for kind in (("off", "on") if r % 2 == 0 else ("on", "off")):
                c = clusters[kind]
                m = c.wait_healthy()
                log(f"failover steady: round {r + 1}/{rounds}, --failover {kind}, HTTP w=3, "
                    f"{args.clients} clients, {args.seconds:g} s (master: {m})")
                runs[kind].append(run_loadgen(args, "http", 3, url=c.url(m), pids=c.pids()))
    finally:
        for c in clusters.values():
            c.close()
    out: dict = {"rounds": rounds, "clients": args.clients, "seconds": args.seconds}
    for kind, rs in runs.items():
        out[kind] = {"appends_per_s": round(statistics.mean(x["appends_per_s"] for x in rs), 1),
                     "p99_ms": round(statistics.median(x["latency_ms"]["p99"] for x in rs), 2),
                     "errors": sum(x.get("errors", 0) for x in rs),
                     "rounds": [round(x["appends_per_s"], 1) for x in rs]}
    on, off = out["on"], out["off"]
    out["throughput_ratio"] = round(on["appends_per_s"] / off["appends_per_s"], 3)
    out["ratio_rounds"] = [round(b / a, 3) for a, b in zip(off["rounds"], on["rounds"])]
    out["p99_ratio"] = round(on["p99_ms"] / off["p99_ms"], 3)
    out["target"] = TARGET_STEADY
    out["met"] = out["throughput_ratio"] >= TARGET_STEADY
    return out


# --------------------------------------------------------------------------- part


def run(args, out: dict) -> None:
    s = settings(args)
    res: dict = {"params": {k: v for k, v in s.items()}}
    out["failover"] = res
    workdir = Path(tempfile.mkdtemp(prefix="replog-bench-failover-"))
    try:
        if "kills" in s["cases"]:
            res["kills"] = kills_case(s, workdir)
        if "pause" in s["cases"]:
            res["pause"] = pause_case(s, workdir)
        if "steady" in s["cases"]:
            res["steady"] = steady_case(args, s, workdir)
    finally:
        reap_nodes()
        if getattr(args, "keep_workdir", False):
            log(f"failover: cluster logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _s(x, nd=3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _mark(met) -> str:
    return "n/a" if met is None else ("met" if met else "MISSED")


def render(res: dict) -> str:
    lines = ["", "failover (3 nodes, --failover, default election flags unless given)"]
    k = res.get("kills")
    if k:
        lines.append(f"kill -9 of the master -> first 201 for a client retrying every "
                     f"{k['retry_s'] * 1000:g} ms through any node ({k['completed']} of "
                     f"{k['kills']} kills)")
        lines.append(f"  {'median s':>9}{'p90 s':>8}{'max s':>8}{'min s':>8}")
        lines.append(f"  {_s(k['median_s']):>9}{_s(k['p90_s']):>8}{_s(k['max_s']):>8}"
                     f"{_s(k['min_s']):>8}")
        lines.append("  each: " + ", ".join(_s(t["seconds"], 2) for t in k["trials"]))
        lines.append(f"  [{_mark(k['met']['median']):>6}] median <= {k['targets']['median_s']:g} s")
        lines.append(f"  [{_mark(k['met']['max']):>6}] max <= {k['targets']['max_s']:g} s")
    p = res.get("pause")
    if p:
        lines.append(f"SIGSTOP of the master ({p['elected']['n']} trials), seconds from the "
                     "SIGSTOP; the master cut off (lease)")
        lines.append(f"  {'':<44}{'median':>8}{'max':>8}{'min':>8}")
        for label, key in (("another node says it is master", "elected"),
                           ("... and accepts a write", "write"),
                           ("old master, resumed: a secondary again", "stepped_down"),
                           ("master cut off: refuses writes (lease)", "refused")):
            st = p[key]
            lines.append(f"  {label:<44}{_s(st['median']):>8}{_s(st['max']):>8}"
                         f"{_s(st['min']):>8}")
        answers = [r["old_master_answered"] for r in p["pauses"]]
        lines.append(f"  the resumed old master's answer to a write at once: {answers} "
                     f"({p['old_master_201']} accepted)")
    st = res.get("steady")
    if st:
        lines.append(f"steady state, HTTP w=3, {st['clients']} clients, {st['rounds']} "
                     f"round(s) of {st['seconds']:g} s, alternated")
        lines.append(f"  {'':<14}{'appends/s':>10}{'p99 ms':>9}{'errors':>8}  rounds")
        for kind in ("off", "on"):
            r = st[kind]
            lines.append(f"  --failover {kind:<3}{r['appends_per_s']:>10,.0f}{r['p99_ms']:>9.1f}"
                         f"{r['errors']:>8}  {r['rounds']}")
        lines.append(f"  on/off: throughput x{st['throughput_ratio']:.3f} (rounds "
                     f"{st['ratio_rounds']}), p99 x{st['p99_ratio']:.3f}")
        lines.append(f"  [{_mark(st['met']):>6}] throughput on/off >= {st['target']:g}")
    return "\n".join(lines)
