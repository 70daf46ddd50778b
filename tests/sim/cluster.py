"""A whole cluster in one process: each node's election core (nodes/core/election.py) plus a
minimal model of replication, driven by a simulated network, drifting clocks and a disk.

Everything random comes from one random.Random(seed) and events run in (time, order) from a
heap, so a seed replays exactly. Nothing here touches a socket, a thread or the real clock.

Replication (Raft's AppendEntries in replog's words): the master appends entries tagged
with its epoch, and to each secondary sends what it lacks after the previous entry's seq and
epoch; a secondary whose entry there differs (or is missing) refuses, and the master steps
back. A secondary cuts its tail only where an entry conflicts, and the cut is recorded. The
call doubles as the heartbeat: it carries the master's epoch, its commit and its stamp.
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from nodes.core.election import (Broken, Cluster, Election, Out, PreVoteAnswer,
                                 PreVoteRequest, Role, Stored, Timing, VoteAnswer, VoteRequest)
from nodes.core.commit import commit_index, shown_by_secondary

from .checker import Checker, Violation

Entry = tuple[int, int]      # (epoch, write id); a master's first entry has a negative id


@dataclass(frozen=True)
class Append:
    epoch: int
    master: str
    prev: int                # seq before the entries
    prev_epoch: int
    entries: tuple[Entry, ...]
    commit: int
    stamp: float


@dataclass(frozen=True)
class AppendAnswer:
    epoch: int
    node: str
    accepted: bool           # the epoch was accepted
    match: int | None        # the entries fit: the node's log matches up to here
    hint: int                # they did not: try again after this seq
    stamp: float


@dataclass
class Config:
    nodes: int = 3
    timing: Timing = field(default_factory=lambda: Timing(
        election_min=1.0, election_max=2.0, heartbeat=0.25, lease=0.7, drift=0.02))
    broken: Broken = field(default_factory=Broken)
    fault_time: float = 30.0     # seconds of faults and writes
    settle: float = 20.0         # the bound: a master and every node converged by then
    write_every: float = 0.5     # mean gap between client writes
    max_batch: int = 20


class Node:
    def __init__(self, sim: "Sim", name: str, rate: float, offset: float) -> None:
        self.sim, self.name, self.rate, self.offset = sim, name, rate, offset
        self.stored, self.disk_log = Stored(), []          # the simulated disk
        self.up, self.paused, self.backlog = True, False, []
        self.life = 0                # a restart ignores the events of the previous one
        self.start()

    def local(self, t: float) -> float:
        return self.offset + self.rate * t

    def real(self, local: float) -> float:
        return (local - self.offset) / self.rate

    def start(self) -> None:
        sim = self.sim
        self.life += 1
        self.el = Election(sim.cluster[self.name], sim.cfg.timing, self.stored,
                           self.local(sim.now), sim.rng.random, sim.cfg.broken)
        self.log: list[Entry] = list(self.disk_log)
        self.commit, self.verified_from = 0, 0
        self.next: dict[str, int] = {}
        self.match: dict[str, int] = {}
        self.waits: dict[int, tuple[int, int]] = {}    # seq -> (write id, epoch): w=majority
        self.wake = float("inf")
        self.schedule_wake()

    # -- disk and helpers -------------------------------------------------------------------
    def rank(self) -> tuple[int, int]:
        return (self.log[-1][0] if self.log else 0, len(self.log))

    def sync_log(self) -> None:
        self.disk_log = list(self.log)

    def cut(self, seq: int) -> None:
        """Cut seq and after (they conflict with the master's log): recorded, never silent."""
        self.sim.checker.cut(self.name, seq, self.log[seq - 1:], self.sim.now)
        del self.log[seq - 1:]
        self.verified_from = min(self.verified_from, seq - 1)

    def schedule_wake(self) -> None:
        at = self.el.wake_at()
        if at < self.wake:          # a later deadline is met by the wake already pending
            self.wake = at
            self.sim.at(max(self.real(at), self.sim.now), self, "wake", (self.life, at))

    def carry_out(self, out: Out) -> None:
        if out.persist is not None:
            self.stored = out.persist            # synced before anything is sent
        if out.stepped_down:
            self.waits.clear()                   # never acknowledged: the client times out
        if out.became_master:
            self.become_master()
        for to, msg in out.send:
            self.sim.send(self.name, to, msg)
        if out.heartbeat:
            for other in self.sim.cluster[self.name].others:
                self.send_append(other)
        self.sim.checker.after_step(self)
        self.schedule_wake()

    # -- events -----------------------------------------------------------------------------
    def on_wake(self) -> None:
        # A timer fires no earlier than its target on the node's clock (the conversion to
        # real time and back may round just below it).
        now = max(self.local(self.sim.now), self.wake)
        self.wake = float("inf")
        if self.el.wake_at() > now:
            self.schedule_wake()                 # the deadline moved on meanwhile
            return
        self.carry_out(self.el.tick(now, self.rank()))

    def deliver(self, msg: Any) -> None:
        now = self.local(self.sim.now)
        el = self.el
        if isinstance(msg, VoteRequest):
            self.carry_out(el.on_vote_request(msg, self.rank(), now))
        elif isinstance(msg, VoteAnswer):
            self.carry_out(el.on_vote_answer(msg, now))
        elif isinstance(msg, PreVoteRequest):
            self.carry_out(el.on_prevote_request(msg, self.rank(), now))
        elif isinstance(msg, PreVoteAnswer):
            self.carry_out(el.on_prevote_answer(msg, self.rank(), now))
        elif isinstance(msg, Append):
            self.on_append(msg, now)
        elif isinstance(msg, AppendAnswer):
            self.on_append_answer(msg, now)

    def on_append(self, m: Append, now: float) -> None:
        accepted, out = self.el.on_master_call(m.epoch, m.master, now)
        match, hint = None, 0
        if accepted:
            log = self.log
            if m.prev > len(log) or (m.prev > 0 and log[m.prev - 1][0] != m.prev_epoch):
                hint = min(len(log), m.prev - 1)
            else:
                for i, entry in enumerate(m.entries):
                    seq = m.prev + 1 + i
                    if seq <= len(log) and log[seq - 1] != entry:
                        self.cut(seq)
                    if seq > len(log):
                        log.append(entry)
                self.sync_log()                  # on disk before the answer says so
                match = m.prev + len(m.entries)
                self.commit = shown_by_secondary(self.commit, m.commit, match)
        self.sim.send(self.name, m.master,
                      AppendAnswer(self.el.epoch, self.name, accepted, match, hint, m.stamp))
        self.carry_out(out)

    def on_append_answer(self, a: AppendAnswer, now: float) -> None:
        out = self.el.on_master_answer(a.node, a.epoch, a.accepted, a.stamp, now)
        if self.el.role is Role.MASTER and a.accepted and a.epoch == self.el.epoch \
                and a.node in self.next:
            if a.match is not None:
                self.match[a.node] = max(self.match[a.node], a.match)
                self.next[a.node] = max(self.next[a.node], a.match + 1)
                self.advance_commit()
                if self.next[a.node] <= len(self.log):
                    self.send_append(a.node)     # catching up: no need to wait a heartbeat
            else:
                self.next[a.node] = max(self.match[a.node] + 1, min(self.next[a.node] - 1,
                                                                   a.hint + 1))
                self.send_append(a.node)
        self.carry_out(out)

    # -- the master's side ----------------------------------------------------------------
    def become_master(self) -> None:
        others = self.sim.cluster[self.name].others
        self.next = {n: len(self.log) + 1 for n in others}
        self.match = {n: 0 for n in others}
        self.waits = {}
        # An entry of its own epoch, so that older entries can be committed (Raft §5.4.2).
        self.append_entry(-self.sim.new_id())
        self.sim.checker.became_master(self)

    def append_entry(self, write_id: int) -> int:
        self.log.append((self.el.epoch, write_id))
        self.sync_log()
        self.advance_commit()
        return len(self.log)

    def advance_commit(self) -> None:
        log = self.log
        self.commit = commit_index(self.commit, len(self.sim.cluster[self.name].nodes),
                                   len(log), self.match.values(),
                                   lambda s: log[s - 1][0] if s else 0, self.el.epoch)
        for seq in [s for s in self.waits if s <= self.commit]:
            write_id, epoch = self.waits.pop(seq)
            self.sim.checker.acked(self, write_id, seq, epoch, majority=True)

    def send_append(self, to: str) -> None:
        first = self.next[to]
        prev = first - 1
        entries = tuple(self.log[prev:prev + self.sim.cfg.max_batch])
        self.sim.send(self.name, to, Append(self.el.epoch, self.name, prev,
                                            self.log[prev - 1][0] if prev else 0, entries,
                                            self.commit, self.local(self.sim.now)))

    def write(self, write_id: int, majority: bool) -> bool:
        """A client's write; False: not the master, or its lease does not hold."""
        if not self.up or self.paused or not self.el.writable(self.local(self.sim.now)):
            return False
        seq = self.append_entry(write_id)
        if majority and self.commit < seq:
            self.waits[seq] = (write_id, self.el.epoch)
        else:
            self.sim.checker.acked(self, write_id, seq, self.el.epoch, majority)
        self.sim.checker.after_step(self)
        return True


class Sim:
    def __init__(self, seed: int, cfg: Config | None = None) -> None:
        self.seed, self.cfg = seed, cfg or Config()
        self.rng = random.Random(seed)
        self.now, self.events = 0.0, 0
        self._heap: list[tuple[float, int, Any, str, Any]] = []
        self._order = 0
        self._ids = 0
        names = [f"n{i}" for i in range(1, self.cfg.nodes + 1)]
        self.cluster = {n: Cluster(n, frozenset(names)) for n in names}
        self.blocked: set[tuple[str, str]] = set()       # (from, to) cut one way
        self.loss, self.dup = 0.05, 0.03
        self.checker = Checker(self)
        d = self.cfg.timing.drift
        self.nodes = {n: Node(self, n, 1 + self.rng.uniform(-d, d), self.rng.uniform(0, 100))
                      for n in names}
        self.at(self.rng.expovariate(1 / self.cfg.write_every), None, "write")
        self.at(self.rng.uniform(0.5, 3), None, "fault")
        self.at(self.cfg.fault_time, None, "calm")

    def new_id(self) -> int:
        self._ids += 1
        return self._ids

    def at(self, t: float, node: Node | None, kind: str, data: Any = None) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t, self._order, node, kind, data))

    # -- the network --------------------------------------------------------------------------
    def send(self, src: str, dst: str, msg: Any) -> None:
        rng = self.rng
        if (src, dst) in self.blocked or rng.random() < self.loss:
            return
        for _ in range(2 if rng.random() < self.dup else 1):
            r = rng.random()                         # late ones reorder; a few stall long
            delay = (rng.uniform(1.0, 4.0) if r < 0.01 else rng.uniform(0.1, 1.0) if r < 0.06
                     else rng.uniform(0.002, 0.05))
            self.at(self.now + delay, self.nodes[dst], "msg", msg)

    # -- faults -------------------------------------------------------------------------------
    def fault(self) -> None:
        rng, names = self.rng, list(self.nodes)
        kind = rng.choice(["partition", "one-way", "heal", "crash", "pause", "lossy", "heal"])
        if kind == "partition":
            side = set(rng.sample(names, rng.randint(1, len(names) // 2)))
            self.blocked = {(a, b) for a in names for b in names if (a in side) != (b in side)}
        elif kind == "one-way":
            a, b = rng.sample(names, 2)
            self.blocked.add((a, b))
        elif kind == "heal":
            self.blocked, self.loss, self.dup = set(), 0.05, 0.03
        elif kind == "lossy":
            self.loss, self.dup = rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.3)
        else:
            node = self.nodes[rng.choice(names)]
            if node.up and not node.paused:
                if kind == "crash":
                    node.up = False
                    node.life += 1
                    self.at(self.now + rng.uniform(0.2, 5), node, "restart")
                else:
                    node.paused = True
                    self.at(self.now + rng.uniform(0.2, 3), node, "resume")
        self.at(self.now + rng.uniform(0.3, 3), None, "fault")

    def calm(self) -> None:
        """Faults stop: every node up and running, the network whole and reliable."""
        self.blocked, self.loss, self.dup = set(), 0.0, 0.0
        for node in self.nodes.values():
            if not node.up:
                self.restart(node)
            if node.paused:
                self.resume(node)
        self.checker.calm_at = self.now

    def restart(self, node: Node) -> None:
        if not node.up:
            node.up = True
            node.start()

    def resume(self, node: Node) -> None:
        if node.paused:
            node.paused = False
            backlog, node.backlog = node.backlog, []
            for msg in backlog:
                if node.up:
                    node.deliver(msg)
            node.wake = float("inf")
            node.schedule_wake()

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> "Sim":
        """Run to the end; raises Violation (with the seed in its message) on a broken rule."""
        cfg, calm = self.cfg, False
        end = cfg.fault_time + cfg.settle
        try:
            while self._heap:
                t, _, node, kind, data = heapq.heappop(self._heap)
                if t > end:
                    break
                self.now = t
                self.events += 1
                if kind == "msg" or kind == "wake":
                    if not node.up or (kind == "wake" and data != (node.life, node.wake)):
                        continue
                    if node.paused:
                        if kind == "msg":
                            node.backlog.append(data)
                        continue
                    node.deliver(data) if kind == "msg" else node.on_wake()
                elif kind == "write" and not calm:
                    self.client_write()
                    self.at(t + self.rng.expovariate(1 / cfg.write_every), None, "write")
                elif kind == "fault" and not calm:
                    self.fault()
                elif kind == "restart":
                    self.restart(node)
                elif kind == "resume":
                    self.resume(node)
                elif kind == "calm":
                    calm = True
                    self.calm()
                    self.at(t + 0.5, None, "probe")
                elif kind == "probe":
                    if self.checker.converged():
                        return self
                    self.at(t + 0.5, None, "probe")
                self.checker.one_writer()
            self.checker.fail(f"no master with every node converged within {cfg.settle} s "
                              "of the faults' end")
        except Violation as v:
            v.seed = self.seed
            raise
        return self

    def client_write(self) -> None:
        """A client tries the nodes in a random order until one accepts (a redirect)."""
        write_id, majority = self.new_id(), self.rng.random() < 0.5
        for name in self.rng.sample(list(self.nodes), len(self.nodes)):
            if self.nodes[name].write(write_id, majority):
                return
