"""The name-server part of the benchmark (``python -m bench --only nameserver [--quick]``):
the name server stays out of the data path, and every node registers again when it comes
back empty (the failover issue: "within 2 s; measure it and publish the figure").

Two clusters of processes, each a name server, master, s1 and s2 with data directories
(--fsync always): one with a fixed master, one with --failover (bench/failover.py's
FailoverCluster). Per round (--ns-rounds, 10, quick 2, per cluster), the cluster whole:

1. w=3 appends from one keep-alive HTTP client for --ns-write-seconds (1, quick 0.5) with the
   name server up (the reference), then kill -9 of the name server and the same again: the
   writes must go on; then the master's /health must still show every secondary Healthy
   (heartbeats went on) and itself writable.
2. --failover only: kill -9 of the master too, the name server still down: seconds until
   another node says it is master, and until it accepts a w=2 write (elections and
   replication go on with the addresses the nodes already know).
3. the name server started again, empty, on the same port; its list polled every 20 ms:
   seconds from its first answer (and from its start) until it holds replog.master and
   replog.secondary.NAME of every live node, each with that node's address (--failover:
   also until replog.node.NAME). Target: at most 2 s in every round, from its first answer.
   It is started after a random pause (0-1 s), so that the rounds meet the nodes' periodic
   checks at every phase.
   Then the killed master is started again (it rejoins as a secondary) before the next round.
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .common import log
from .failover import NAMES, FailoverCluster, _poll, post, view
from .trees import reap_nodes

MODES = ("fixed", "failover")
POLL_S = 0.02              # the name server's list is polled this often
DEADLINE_S = 30.0          # an election or re-registration not over by then is recorded as None
WRITE_TIMEOUT_S = 5.0      # one w=3 write (fsync always, on a shared disk)
TARGET_S = 2.0
JITTER_S = 1.0             # the name server comes back after a random pause of up to this: the
                           # nodes check it every 0.5 or 1 s, and rounds of a steady length
                           # would catch their checks at about the same phase every time
MASTER, SECONDARY, NODE = "replog.master", "replog.secondary.", "replog.node."


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("nameserver part")
    g.add_argument("--ns-rounds", type=int, default=None,
                   help="kill -9 of the name server, rounds per cluster (10, quick 2)")
    g.add_argument("--ns-write-seconds", type=float, default=None,
                   help="seconds of w=3 appends per round, name server up and down (1, quick 0.5)")
    g.add_argument("--ns-modes", default=",".join(MODES),
                   help="comma list of the clusters: fixed (a fixed master), failover")


def settings(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    rounds = getattr(args, "ns_rounds", None)
    write_s = getattr(args, "ns_write_seconds", None)
    modes = [m.strip() for m in (getattr(args, "ns_modes", None) or ",".join(MODES)).split(",")
             if m.strip()]
    bad = set(modes) - set(MODES)
    if bad:
        raise SystemExit(f"unknown --ns-modes {sorted(bad)}; choose from {','.join(MODES)}")
    return {"quick": quick, "modes": modes,
            "rounds": rounds if rounds is not None else (2 if quick else 10),
            "write_s": write_s if write_s is not None else (0.5 if quick else 1.0),
            "flags": {**dict(getattr(args, "master_flags", None) or {}),
                      **dict(getattr(args, "secondary_flags", None) or {})}}


class Lister:
    """The name server's replog.* entries as the benchmark polls them; None while it does
    not answer."""

    def __init__(self, port: int) -> None:
        self.uri, self.proxy = f"PYRO:Pyro.NameServer@127.0.0.1:{port}", None

    def list(self) -> dict | None:
        import Pyro5.api
        import Pyro5.errors

        try:
            if self.proxy is None:
                self.proxy = Pyro5.api.Proxy(self.uri)
                self.proxy._pyroTimeout = 0.5
            return dict(self.proxy.list(prefix="replog."))
        except (Pyro5.errors.PyroError, OSError):
            self.close()
            return None

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy._pyroRelease()
            self.proxy = None


def write_for(url: str, seconds: float, w: int, tag: str) -> dict:
    """POST /messages at w on one keep-alive connection for `seconds`: accepted (201) and
    every other answer by status or exception name."""
    u = urlsplit(url)
    conn, ok, failed, slowest, n = None, 0, {}, 0.0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=WRITE_TIMEOUT_S)
        t = time.perf_counter()
        n += 1
        try:
            conn.request("POST", "/messages", body=json.dumps({"message": f"{tag} {n}", "w": w}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as e:
            status = type(e).__name__
            conn.close()
            conn = None
        if status == 201:
            ok += 1
            slowest = max(slowest, time.perf_counter() - t)
        else:
            failed[str(status)] = failed.get(str(status), 0) + 1
    if conn is not None:
        conn.close()
    took = time.perf_counter() - t0
    return {"accepted": ok, "failed": failed, "seconds": round(took, 3),
            "per_s": round(ok / took, 1), "slowest_ms": round(slowest * 1000, 1)}


def wanted(listed: dict, failover: bool, master: str, alive: list[str]) -> tuple[dict, dict]:
    """(the role entries, the replog.node.* entries) the name server must hold again, from
    its list before the kill: each live node's name at that node's Pyro5 address."""
    if not failover:
        return {k: v for k, v in listed.items() if k == MASTER or k.startswith(SECONDARY)}, {}
    at = {x: listed[NODE + x].split("@", 1)[1] for x in alive}
    roles = {MASTER: f"PYRO:{MASTER}@{at[master]}"}
    roles.update({SECONDARY + x: f"PYRO:{SECONDARY}{x}@{at[x]}" for x in alive if x != master})
    return roles, {NODE + x: listed[NODE + x] for x in alive}


def _complete(listed: dict | None, want: dict) -> bool:
    return listed is not None and all(listed.get(k) == v for k, v in want.items())


def one_round(c: FailoverCluster, lister: Lister, s: dict, mode: str, i: int) -> dict:
    failover = mode == "failover"
    m = c.wait_healthy()
    role_names = {MASTER} | {SECONDARY + x for x in NAMES if x != m}
    names = role_names | ({NODE + x for x in NAMES} if failover else set())

    def whole():                 # every entry there, each role at its node's address
        d = lister.list()
        return d if d and names <= set(d) and \
            wanted(d, failover, m, list(NAMES))[0] == {k: d[k] for k in role_names} else None
    _, before = _poll(whole, DEADLINE_S, POLL_S)
    if not before:
        raise RuntimeError(f"{mode}: the name server does not hold the cluster's entries "
                           f"before round {i + 1}: {lister.list()}")
    rec: dict = {"round": i + 1, "master": m}
    rec["up"] = write_for(c.url(m), s["write_s"], 3, f"{mode} {i} ns up")
    ns = c.lc.procs["nameserver"]
    ns.kill()
    lister.close()
    rec["down"] = write_for(c.url(m), s["write_s"], 3, f"{mode} {i} ns down")
    try:
        rec["healthy_while_down"] = c.healthy() == m
    except (OSError, http.client.HTTPException, ValueError, KeyError):
        rec["healthy_while_down"] = False
    alive, killed = list(NAMES), None
    if failover:
        epoch, killed = view(c.url(m))["epoch"], m
        t0 = time.perf_counter()
        c.procs[m].kill()
        alive = [x for x in NAMES if x != m]

        def elected():
            for x in alive:
                v = view(c.url(x))
                if v and v["role"] == "master" and v["epoch"] > epoch:
                    return x
        t_el, new = _poll(elected, DEADLINE_S)
        t_wr = None
        if new:
            t_wr, _ = _poll(lambda: post(c.url(new), f"{mode} {i} new master", w=2)[0] == 201,
                            DEADLINE_S)
        rec["election"] = {"killed": m, "new_master": new,
                           "elected_s": None if t_el is None else round(t_el - t0, 4),
                           "write_s": None if t_wr is None else round(t_wr - t0, 4)}
        m = new
    roles, nodes = wanted(before, failover, m, alive) if m else ({}, {})
    rec["pause_s"] = round(random.uniform(0, JITTER_S), 3)
    time.sleep(rec["pause_s"])
    ns.stop()                                   # reaped already; closes its log
    t_start = time.perf_counter()
    ns.start()                                  # same port, nothing registered
    t_up = t_roles = t_all = None
    listed = None
    while time.perf_counter() - t_start < DEADLINE_S and not (t_roles and t_all):
        listed = lister.list()
        now = time.perf_counter()
        if listed is not None:
            t_up = t_up or now
            t_roles = t_roles or (now if roles and _complete(listed, roles) else None)
            t_all = t_all or (now if t_roles and _complete(listed, nodes) else None)
        time.sleep(POLL_S)
    rec["ns_answers_s"] = None if t_up is None else round(t_up - t_start, 4)
    rec["registered_s"] = None if t_roles is None else round(t_roles - t_up, 4)
    rec["registered_from_start_s"] = None if t_roles is None else round(t_roles - t_start, 4)
    rec["nodes_registered_s"] = None if not (failover and t_all) else round(t_all - t_up, 4)
    rec["wrong"] = sorted(k for k, v in (listed or {}).items()
                          if not k.startswith(NODE) and roles.get(k) != v)
    log(f"nameserver {mode} {i + 1}/{s['rounds']}: writes down {rec['down']['accepted']} "
        f"(failed {rec['down']['failed']}), " + (f"election {rec['election']}, " if failover
                                                 else "") +
        f"registered again {rec['registered_s']} s after the name server answered")
    if killed:
        c.procs[killed].start()                 # rejoins as a secondary
        c.procs[killed].wait_ready()
    return rec


def stats(values) -> dict:
    xs = [x for x in values if x is not None]
    return {"median": round(statistics.median(xs), 4) if xs else None,
            "max": max(xs) if xs else None, "min": min(xs) if xs else None, "n": len(xs)}


def summary(rounds: list[dict], planned: int) -> dict:
    out = {"rounds": planned, "completed": sum(1 for r in rounds if r["registered_s"] is not None),
           "registered": stats(r["registered_s"] for r in rounds),
           "registered_from_start": stats(r["registered_from_start_s"] for r in rounds),
           "ns_answers": stats(r["ns_answers_s"] for r in rounds),
           "nodes_registered": stats(r["nodes_registered_s"] for r in rounds),
           "writes_up_per_s": stats(r["up"]["per_s"] for r in rounds),
           "writes_down_per_s": stats(r["down"]["per_s"] for r in rounds),
           "writes_down": sum(r["down"]["accepted"] for r in rounds),
           "writes_down_failed": sum(sum(r["down"]["failed"].values()) for r in rounds),
           "writes_up_failed": sum(sum(r["up"]["failed"].values()) for r in rounds),
           "healthy_while_down": sum(1 for r in rounds if r["healthy_while_down"]),
           "wrong": sum(1 for r in rounds if r["wrong"])}
    if any("election" in r for r in rounds):
        el = [r["election"] for r in rounds if "election" in r]
        out["elected"] = stats(e["elected_s"] for e in el)
        out["write"] = stats(e["write_s"] for e in el)
    worst = out["registered"]["max"]
    out["met"] = None if worst is None else (worst <= TARGET_S and out["completed"] == planned)
    return out


def run(args, out: dict) -> None:
    s = settings(args)
    res: dict = {"params": {k: v for k, v in s.items()}, "target_s": TARGET_S}
    out["nameserver"] = res
    workdir = Path(tempfile.mkdtemp(prefix="replog-bench-ns-"))
    try:
        for mode in s["modes"]:
            log(f"nameserver: {mode} cluster, {s['rounds']} x kill -9 of the name server")
            c = FailoverCluster(workdir / mode, mode == "failover", s["flags"])
            lister = Lister(c.lc.ns_port)
            rounds: list[dict] = []
            res[mode] = {"trials": rounds}
            try:
                for i in range(s["rounds"]):
                    rounds.append(one_round(c, lister, s, mode, i))
                c.wait_healthy()
            finally:
                lister.close()
                c.close()
                res[mode].update(summary(rounds, s["rounds"]))
    finally:
        reap_nodes()
        if getattr(args, "keep_workdir", False):
            log(f"nameserver: cluster logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _s(x, nd=3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def render(res: dict) -> str:
    modes = [m for m in MODES if m in res]
    if not modes:
        return ""
    p = res["params"]
    lines = ["", f"name server down: kill -9, then started again empty on its port "
                 f"({p['rounds']} rounds per cluster: master, s1, s2, data directories)"]
    lines.append(f"  w=3 appends from one client, {p['write_s']:g} s per round with the name "
                 "server up, then down")
    lines.append(f"  {'cluster':<10}{'up /s':>8}{'down /s':>9}{'accepted down':>15}"
                 f"{'failed':>8}  master writable, secondaries Healthy while down")
    for m in modes:
        r = res[m]
        lines.append(f"  {m:<10}{_s(r['writes_up_per_s']['median'], 0):>8}"
                     f"{_s(r['writes_down_per_s']['median'], 0):>9}{r['writes_down']:>15}"
                     f"{r['writes_down_failed']:>8}  {r['healthy_while_down']} of "
                     f"{len(r['trials'])} rounds")
    lines.append("  every live node registered again (replog.master, replog.secondary.NAME, "
                 "right addresses), seconds")
    lines.append(f"  {'cluster':<10}{'after the name server answers':>30}{'after its start':>18}"
                 f"{'it answers':>12}")
    lines.append(f"  {'':<10}{'median':>10}{'max':>10}{'min':>10}{'median':>9}{'max':>9}"
                 f"{'median':>12}")
    for m in modes:
        r = res[m]
        a, b, c = r["registered"], r["registered_from_start"], r["ns_answers"]
        lines.append(f"  {m:<10}{_s(a['median']):>10}{_s(a['max']):>10}{_s(a['min']):>10}"
                     f"{_s(b['median']):>9}{_s(b['max']):>9}{_s(c['median']):>12}"
                     + (f"   ({r['completed']} of {r['rounds']})" if r["completed"] != r["rounds"]
                        else ""))
        if r["wrong"]:
            lines.append(f"  {m}: {r['wrong']} round(s) ended with a wrong or stale entry")
    fo = res.get("failover")
    if fo and fo["nodes_registered"]["n"]:
        nr = fo["nodes_registered"]
        lines.append(f"  failover, replog.node.NAME too: median {_s(nr['median'])}, "
                     f"max {_s(nr['max'])}")
    if fo and "elected" in fo:
        el, wr = fo["elected"], fo["write"]
        lines.append(f"  failover: the master killed too while the name server is down: another "
                     f"node master after {_s(el['median'])} s median ({_s(el['max'])} max), a "
                     f"w=2 write after {_s(wr['median'])} s ({_s(wr['max'])} max), "
                     f"{wr['n']} of {len(fo['trials'])}")
    for m in modes:
        met = res[m]["met"]
        mark = "n/a" if met is None else ("met" if met else "MISSED")
        lines.append(f"  [{mark:>6}] {m}: every node registered again within "
                     f"{res['target_s']:g} s of the name server's first answer (max)")
    return "\n".join(lines)
