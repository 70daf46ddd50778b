"""Helpers of the failover tests (test_failover.py): who is master, writers that find it
through any node, and a sampler that checks that no seq ever shows two messages.

Every wait has a deadline (wait_until); nothing here asserts a duration."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests

from nodes.launcher import http_json, wait_until

from .conftest import FAST

# The master's tuning of the other fault tests; election timing stays at the nodes' defaults
# (--election-min 0.6, --election-max 1.2, --lease 0.5): what an operator gets.
FAILOVER_FLAGS = dict(FAST)
NAMES = ("s1", "s2")


def failover_state(proc, timeout=1.0) -> dict:
    """The "failover" part of a node's GET /health (raises if it does not answer)."""
    status, body = http_json("GET", proc.url + "/health", timeout=timeout)
    assert status == 200, (proc.name, status, body)
    return body["failover"]


def health(proc, timeout=2.0) -> dict:
    status, body = http_json("GET", proc.url + "/health", timeout=timeout)
    assert status == 200, (proc.name, status, body)
    return body


def messages(proc, timeout=5.0) -> list[str]:
    status, body = http_json("GET", proc.url + "/messages", timeout=timeout)
    assert status == 200, (proc.name, status, body)
    return body["messages"]


def stepped_down_to(proc, master) -> bool:
    """Has `proc` finished stepping down (its role is a Secondary now, not only in its
    election state) and does it follow `master`?"""
    h = health(proc)
    return (h["role"] == "secondary" and h["failover"]["stepped_down"] >= 1
            and h["failover"]["master"] == master.name)


def writable_master(procs):
    """The node that says it is a writable master (the highest epoch if, briefly, a deposed
    one still says so), or None."""
    found = []
    for p in procs:
        if not p.alive():
            continue
        try:
            f = failover_state(p, timeout=0.5)
        except Exception:
            continue                  # paused, dead or starting
        if f["role"] == "master" and f["writable"]:
            found.append((f["epoch"], p.name, p))
    return max(found, key=lambda t: t[0])[2] if found else None


def wait_master(procs, timeout=20.0, other_than=None, above_epoch=-1):
    """Wait for a writable master (not `other_than`, of an epoch above `above_epoch`)."""
    def ready():
        p = writable_master(procs)
        if p is None or p is other_than:
            return None
        return p if failover_state(p)["epoch"] > above_epoch else None
    what = "a writable master" + (f" other than {other_than.name}" if other_than else "")
    return wait_until(ready, timeout, what=what)


def post(url, message, w, session=None, http_timeout=3.0, concern_timeout=2.0,
         follow=True) -> requests.Response:
    s = session or requests
    return s.post(url + "/messages", json={"message": message, "w": w,
                                           "timeout": concern_timeout},
                  timeout=http_timeout, allow_redirects=follow)


def write_until_acked(procs, message, w, timeout=20.0) -> tuple[int, str, str]:
    """POST `message` through whichever node (following 307s) until one acknowledges it;
    (seq, the message as sent, the URL that answered 201). Each retry sends a new message (message#n): a failed
    try may or may not have been appended, and the checks must tell the two apart."""
    tries = [0]

    def once():
        for p in procs:
            if not p.alive():
                continue
            tries[0] += 1
            try:
                r = post(p.url, f"{message}#{tries[0]}", w)
            except requests.RequestException:
                continue
            if r.status_code == 201:
                return r.json()["seq"], f"{message}#{tries[0]}", r.url
        return None
    seq, text, url = wait_until(once, timeout, interval=0.1, what=f"{message!r} acknowledged")
    return seq, text, url


@dataclass
class Writers:
    """`count` threads writing with write concern `w`. Each starts at another node, follows
    307s, and on anything but 201 (an error, a timeout, 503) moves to the next node. Every
    try is a new message; `acked` maps each acknowledged one to its seq."""
    procs: list
    count: int = 4
    w: int = 2
    prefix: str = "w"
    http_timeout: float = 2.0
    concern_timeout: float = 1.5
    acked: dict = field(default_factory=dict)       # message -> seq
    outcomes: Counter = field(default_factory=Counter)
    redirected: int = 0                             # 201s reached through a 307

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True,
                                          name=f"writer-{i}") for i in range(self.count)]

    def start(self) -> "Writers":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.http_timeout * 3 + 5)
            assert not t.is_alive(), f"{t.name} did not stop"

    def _run(self, k: int) -> None:
        node = k
        i = 0
        with requests.Session() as s:
            while not self._stop.is_set():
                proc = self.procs[node % len(self.procs)]
                message = f"{self.prefix}{k}-{i}"
                i += 1
                try:
                    r = post(proc.url, message, self.w, s, self.http_timeout,
                             self.concern_timeout)
                    outcome = r.status_code
                except requests.RequestException as e:
                    r, outcome = None, type(e).__name__
                with self._lock:
                    self.outcomes[outcome] += 1
                    if outcome == 201:
                        self.acked[message] = r.json()["seq"]
                        self.redirected += bool(r.history)
                if outcome != 201:
                    node += 1                      # try another node
                    self._stop.wait(0.05)          # a client's back-off, not a test wait

    def count_acked(self) -> int:
        with self._lock:
            return len(self.acked)


class Sampler:
    """Reads GET /messages of every node, again and again, in a thread; every sample must
    agree with every earlier one (of any node) on the seqs both have: a seq never shows two
    different messages. `conflicts` lists every disagreement found."""

    def __init__(self, procs, interval=0.02):
        self.procs = list(procs)
        self.interval = interval
        self.first_seen: dict[int, tuple[str, str, int]] = {}   # seq -> (message, node, n)
        self.conflicts: list[tuple] = []
        self.samples: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        sessions = {p.name: requests.Session() for p in self.procs}
        n = 0
        while not self._stop.is_set():
            for p in self.procs:
                if not p.alive():
                    continue
                try:
                    r = sessions[p.name].get(p.url + "/messages", timeout=0.5)
                    if r.status_code != 200:
                        continue
                    log = r.json()["messages"]
                except (requests.RequestException, ValueError):
                    continue                     # paused, dead, restarting
                n += 1
                self.samples[p.name] += 1
                self.check(p.name, log, n)
            self._stop.wait(self.interval)
        for s in sessions.values():
            s.close()

    def check(self, node: str, log: list[str], n: int) -> None:
        first_seen = self.first_seen
        for seq, message in enumerate(log, 1):
            seen = first_seen.setdefault(seq, (message, node, n))
            if seen[0] != message and len(self.conflicts) < 50:
                self.conflicts.append((seq, seen, (message, node, n)))

    def describe(self) -> str:
        return "\n".join(f"seq {seq}: {a[0]!r} on {a[1]} (sample {a[2]}), then {b[0]!r} on "
                         f"{b[1]} (sample {b[2]})" for seq, a, b in self.conflicts[:10])


def check_acked_in(log: list[str], acked: dict[str, int], where: str) -> None:
    """Every acknowledged write is in `log` at the seq it was acknowledged with."""
    wrong = {m: (seq, log[seq - 1] if seq <= len(log) else None)
             for m, seq in acked.items() if seq > len(log) or log[seq - 1] != m}
    assert not wrong, (f"{len(wrong)} of {len(acked)} acknowledged writes are not at their "
                       f"seq on {where} (message: (seq, what is there)): "
                       f"{dict(list(wrong.items())[:10])}")


def check_no_duplicates(log: list[str], where: str) -> None:
    dup = [m for m, n in Counter(log).items() if n > 1]
    assert not dup, f"{where} holds {len(dup)} messages twice: {dup[:10]}"


def wait_converged(procs, master, timeout=30.0) -> list[str]:
    """Wait until every node in procs shows exactly the master's log; returns it."""
    def same():
        expected = messages(master)
        return all(messages(p) == expected for p in procs) and expected
    wait_until(same, timeout, interval=0.1,
               what=f"{[p.name for p in procs]} to show {master.name}'s log")
    return messages(master)


class Clock:
    """Elapsed time of a test's phases, printed (-s shows them): measured, never asserted."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.last = self.t0

    def mark(self, what: str) -> float:
        now = time.monotonic()
        took = now - self.last
        print(f"[{now - self.t0:6.2f} s] {what} (+{took:.2f} s)")
        self.last = now
        return took


def set_delay(proc, delay: float) -> None:
    """A secondary's injected delay before a replicate call stores (POST /faults)."""
    status, body = http_json("POST", proc.url + "/faults", {"delay": delay}, timeout=5)
    assert status == 200, (proc.name, status, body)


CUT_LINE = re.compile(r"cut back to the master's log: dropped seq=(\d+)\.\.(\d+) \((\d+) "
                      r"messages")


def cut_lines(proc) -> list[tuple[int, int, int]]:
    """(first seq, last seq, count) of every "cut back" line in a node's log file."""
    return [tuple(map(int, m.groups()))
            for m in CUT_LINE.finditer(proc.log_path.read_text(errors="replace"))]


def metric(proc, name: str) -> float:
    status_line = [line for line in requests.get(proc.url + "/metrics", timeout=5).text
                   .splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]
    assert len(status_line) == 1, (name, status_line)
    return float(status_line[0].rsplit(" ", 1)[1])


class Partition:
    """Cut one node off from the others on loopback, for real: every node runs under its
    own group id (setpriv --regid), and iptables' owner match drops, in a chain of its own,
    (a) what that node sends to the others' Pyro5 ports and (b) what they send to its Pyro5
    port. HTTP ports stay open: clients still reach every node. Needs root and iptables;
    heal() (also on close) removes the chain."""

    GID_BASE = 47000

    def __init__(self, workdir):
        self.chain = f"REPLOG-FO-{os.getpid()}"
        self.workdir = workdir
        self.gids: dict[str, int] = {}
        self.active = False

    @staticmethod
    def available() -> str | None:
        """None if this host can do it, else why not."""
        if os.geteuid() != 0:
            return "needs root (iptables, setpriv --regid)"
        for tool in ("iptables", "setpriv"):
            if shutil.which(tool) is None:
                return f"needs {tool}"
        r = subprocess.run(["iptables", "-S", "OUTPUT"], capture_output=True, text=True)
        return None if r.returncode == 0 else f"iptables does not work here: {r.stderr.strip()}"

    def python_for(self, name: str) -> str:
        """A python wrapper that runs the node under a group id of its own."""
        gid = self.gids.setdefault(name, self.GID_BASE + len(self.gids))
        path = self.workdir / f"python-gid-{gid}"
        path.write_text(f'#!/bin/sh\nexec setpriv --regid {gid} --clear-groups '
                        f'{sys.executable} "$@"\n')
        path.chmod(0o755)
        return str(path)

    def _ipt(self, *args: str) -> None:
        subprocess.run(["iptables", *args], check=True, capture_output=True, text=True)

    def cut(self, node: str, pyro_ports: dict[str, int]) -> None:
        others = [n for n in pyro_ports if n != node]
        self._ipt("-N", self.chain)
        self.active = True
        self._ipt("-I", "OUTPUT", "-o", "lo", "-j", self.chain)
        self._ipt("-A", self.chain, "-p", "tcp", "-m", "owner", "--gid-owner",
                  str(self.gids[node]), "-m", "multiport", "--dports",
                  ",".join(str(pyro_ports[n]) for n in others), "-j", "DROP")
        for n in others:
            self._ipt("-A", self.chain, "-p", "tcp", "--dport", str(pyro_ports[node]), "-m",
                      "owner", "--gid-owner", str(self.gids[n]), "-j", "DROP")

    def heal(self) -> None:
        if not self.active:
            return
        self._ipt("-D", "OUTPUT", "-o", "lo", "-j", self.chain)
        self._ipt("-F", self.chain)
        self._ipt("-X", self.chain)
        self.active = False
