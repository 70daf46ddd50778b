"""A chaos run against a failover cluster (every node with --failover): the nemesis kills
(-9, then restarts) or pauses (SIGSTOP, then SIGCONT) the master again and again, now and
then another node, never more than one node at a time (a majority stays up); clients write
through any node, following the 307s; a sampler reads every node's list and election state.
The checker (`check`) then verifies issue 19's guarantees on the whole history:

* one master per epoch (no two nodes ever said they were master of the same epoch);
* no seq showed two different messages, on any node, at any time sampled;
* every write acknowledged with w=2 (a majority of 3) is in the final log at its seq;
* a write acknowledged with w=1 is at its seq or lost, and every lost one was cut on some
  node (the nodes' cut counts cover them), never silently;
* at the end all nodes hold one list, with no message twice.

    python -m tests.chaos.failover --seed 7 --duration 30
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import requests

from nodes.launcher import wait_until
from nodes.launcher.ports import port_taken

ROOT = Path(__file__).resolve().parents[2]
NODES = ("master", "s1", "s2")


@dataclass
class Op:
    message: str
    w: int
    invoke: float
    complete: float = 0.0
    status: int | None = None     # None: no answer
    seq: int | None = None


@dataclass
class Run:
    seed: int
    duration: float
    ops: list[Op] = field(default_factory=list)
    lists: list[tuple[float, str, list[str]]] = field(default_factory=list)
    claims: list[tuple[float, str, int, str]] = field(default_factory=list)  # node, epoch, role
    faults: list[str] = field(default_factory=list)
    final: dict[str, list[str]] = field(default_factory=dict)
    cut: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_ports(count: int) -> list[int]:
    rnd = random.SystemRandom()
    for _ in range(200):
        base = rnd.randrange(12_000, 32_000)
        if not any(port_taken(base + i) for i in range(count)):
            return [base + i for i in range(count)]
    raise RuntimeError("no run of free ports")


class Cluster:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        *http, self.ns_port = free_ports(len(NODES) + 1)
        self.http = dict(zip(NODES, http))
        self.procs: dict[str, subprocess.Popen] = {}
        self.ns: subprocess.Popen | None = None

    def url(self, node: str, path: str) -> str:
        return f"http://127.0.0.1:{self.http[node]}{path}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start_ns(self) -> None:
        self.ns = self._spawn("nameserver", ["-m", "nameserver", "--port", str(self.ns_port)])

    def start(self, node: str) -> None:
        common = ["--failover", "--http-port", str(self.http[node]), "--ns-port",
                  str(self.ns_port), "--data-dir", str(self.dir / "data" / node)]
        if node == "master":
            args = ["-m", "nodes.master_node", "--secondaries", "s1,s2", *common]
        else:
            args = ["-m", "nodes.secondary_node", "--name", node, "--cluster",
                    ",".join(NODES), *common]
        self.procs[node] = self._spawn(node, args)

    def health(self, node: str) -> dict | None:
        try:
            r = requests.get(self.url(node, "/health"), timeout=1)
            return r.json() if r.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def stop(self) -> None:
        for p in [*self.procs.values(), self.ns]:
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGCONT)
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)


def client(c: Cluster, run: Run, name: str, stop: threading.Event, t0: float) -> None:
    rnd = random.Random(f"{run.seed}-{name}")
    i = 0
    with requests.Session() as s:
        while not stop.is_set():
            i += 1
            op = Op(f"{name}-{i}", rnd.choice((1, 2)), time.monotonic() - t0)
            try:
                r = s.post(c.url(rnd.choice(NODES), "/messages"),
                           json={"message": op.message, "w": op.w, "timeout": 2}, timeout=3)
                op.status = r.status_code
                if r.status_code == 201:
                    op.seq = r.json()["seq"]
            except requests.RequestException:
                pass
            op.complete = time.monotonic() - t0
            with run.lock:
                run.ops.append(op)
            if op.status != 201:
                stop.wait(0.05)


def sampler(c: Cluster, run: Run, stop: threading.Event, t0: float) -> None:
    while not stop.is_set():
        for node in NODES:
            h = c.health(node)
            now = time.monotonic() - t0
            if h and h.get("failover"):
                f = h["failover"]
                with run.lock:
                    run.claims.append((now, node, f["epoch"], f["role"]))
            try:
                r = requests.get(c.url(node, "/messages"), timeout=1)
                if r.status_code == 200:
                    with run.lock:
                        run.lists.append((now, node, r.json()["messages"]))
            except (requests.RequestException, ValueError):
                pass
        stop.wait(0.1)


def master_now(c: Cluster) -> str | None:
    for node in NODES:
        h = c.health(node)
        if h and h.get("failover", {}).get("role") == "master":
            return node
    return None


def nemesis(c: Cluster, run: Run, stop: threading.Event) -> None:
    rnd = random.Random(run.seed)
    while not stop.wait(rnd.uniform(1.0, 3.0)):
        victim = master_now(c) if rnd.random() < 0.7 else rnd.choice(NODES)
        victim = victim or rnd.choice(NODES)
        p = c.procs[victim]
        if rnd.random() < 0.5:
            run.faults.append(f"kill -9 {victim}")
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
            stop.wait(rnd.uniform(0.3, 2.0))
            c.start(victim)
        else:
            run.faults.append(f"pause {victim}")
            os.killpg(p.pid, signal.SIGSTOP)
            stop.wait(rnd.uniform(0.3, 3.0))
            os.killpg(p.pid, signal.SIGCONT)


def converged(c: Cluster) -> dict[str, list[str]] | None:
    lists, masters = {}, set()
    for node in NODES:
        h = c.health(node)
        if not h:
            return None
        f = h["failover"]
        if f["role"] == "master":
            if not f["writable"]:
                return None
            masters.add(node)
        try:
            lists[node] = requests.get(c.url(node, "/messages"), timeout=2).json()["messages"]
        except (requests.RequestException, ValueError):
            return None
    if len(masters) != 1 or len({tuple(v) for v in lists.values()}) != 1:
        return None
    return lists


def master_epochs(r: Run) -> set[int]:
    """The epochs in which some node said it was master, as sampled so far."""
    with r.lock:
        return {e for _, _, e, role in r.claims if role == "master"}


def run(seed: int, duration: float, workdir: Path, clients: int = 3,
        min_masters: int = 3) -> Run:
    """`duration` seconds of faults, and on (at most 2 x `duration` more) until masters of
    `min_masters` epochs were seen: whether a seed's faults force elections in a given time
    depends on its draws (a pause shorter than the election timeout, or a fault on a
    secondary, forces none) and on how busy the machine is, and a run without elections
    would check little."""
    workdir.mkdir(parents=True, exist_ok=True)
    r = Run(seed, duration)
    c = Cluster(workdir)
    try:
        c.start_ns()
        for node in NODES:
            c.start(node)
        wait_until(lambda: master_now(c), 60, what="a first master")
        stop, t0 = threading.Event(), time.monotonic()
        threads = [threading.Thread(target=client, args=(c, r, f"c{i}", stop, t0), daemon=True)
                   for i in range(clients)]
        threads += [threading.Thread(target=sampler, args=(c, r, stop, t0), daemon=True)]
        for t in threads:
            t.start()
        fault_stop = threading.Event()
        nem = threading.Thread(target=nemesis, args=(c, r, fault_stop), daemon=True)
        nem.start()
        time.sleep(duration)
        extra = time.monotonic() + 2 * duration
        while len(master_epochs(r)) < min_masters and time.monotonic() < extra:
            time.sleep(0.2)
        fault_stop.set()
        nem.join(15)
        stop.set()
        for t in threads:
            t.join(10)
        # heal: every node running, then one w=3 write and the same list everywhere
        for node, p in c.procs.items():
            if p.poll() is not None:
                c.start(node)
        probe = Op("probe", 3, 0.0)

        def probe_ok() -> bool:
            try:
                resp = requests.post(c.url(master_now(c) or "master", "/messages"),
                                     json={"message": "probe", "w": 3, "id": "probe"}, timeout=3)
                probe.status = resp.status_code
                probe.seq = resp.json().get("seq") if resp.status_code == 201 else None
                return resp.status_code == 201
            except (requests.RequestException, ValueError):
                return False

        wait_until(probe_ok, 60, what="a w=3 probe write after healing")
        r.ops.append(probe)
        r.final = wait_until(lambda: converged(c), 60, what="every node with one list")
        r.cut = sum((c.health(n) or {}).get("failover", {}).get("cut", 0) for n in NODES)
    finally:
        c.stop()
    return r


def check(r: Run) -> list[str]:
    """Every violation of the guarantees, as sentences (empty: none)."""
    problems: list[str] = []
    masters: dict[int, set[str]] = defaultdict(set)
    for _, node, epoch, role in r.claims:
        if role == "master":
            masters[epoch].add(node)
    problems += [f"epoch {e} had two masters: {sorted(n)}" for e, n in masters.items()
                 if len(n) > 1]
    seen: dict[int, tuple[str, str, float]] = {}
    for at, node, lst in [*r.lists, *((float("inf"), n, v) for n, v in r.final.items())]:
        for seq, message in enumerate(lst, 1):
            first = seen.setdefault(seq, (message, node, at))
            if first[0] != message:
                problems.append(f"seq {seq} showed {first[0]!r} on {first[1]} at {first[2]:.2f} s "
                                f"and {message!r} on {node} at {at:.2f} s")
                break
    final = next(iter(r.final.values()), [])
    if len(set(final)) != len(final):
        problems.append("a message is twice in the final log")
    lost_w1 = 0
    for op in r.ops:
        if op.status != 201:
            continue
        held = op.seq is not None and op.seq <= len(final) and final[op.seq - 1] == op.message
        if not held and op.w >= 2:
            problems.append(f"{op.message!r} acknowledged with w={op.w} at seq {op.seq} is "
                            "not there in the final log")
        elif not held:
            lost_w1 += 1
            if op.message in final:
                problems.append(f"{op.message!r} (w=1) moved from seq {op.seq}")
    if lost_w1 > r.cut:
        problems.append(f"{lost_w1} w=1 writes were lost but the nodes counted only {r.cut} "
                        "cut: some were lost silently")
    return problems


def summary(r: Run, problems: list[str]) -> str:
    ok = sum(1 for op in r.ops if op.status == 201)
    epochs = sorted(master_epochs(r))
    lines = [f"seed {r.seed}: {len(r.ops)} writes, {ok} acknowledged, {len(r.faults)} faults "
             f"({', '.join(r.faults)}), masters in epochs {epochs}, final log "
             f"{len(next(iter(r.final.values()), []))}, cut {r.cut}",
             *(f"  PROBLEM: {p}" for p in problems)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=random.SystemRandom().randrange(10**6))
    p.add_argument("--duration", type=float, default=30.0,
                   help="seconds of faults, and on until 3 epochs had a master (at most 3x)")
    args = p.parse_args()
    r = run(args.seed, args.duration, Path(tempfile.mkdtemp(prefix="replog-chaos-fo-")))
    problems = check(r)
    print(summary(r, problems))
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
