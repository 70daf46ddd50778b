"""The invariants the simulation checks after every step (a step changes one node).

Safety, at every step:
  * at most one master per epoch;
  * at most one node accepts writes at any (simulated, real) time: the lease;
  * a write acknowledged with w = majority is in the log of every later master;
  * every node's shown prefix (its first `commit` entries) agrees with one history, and no
    shown entry is ever cut;
  * what is cut is recorded, with the node and seq where it was cut.
Liveness, once faults stop: within the bound, one master that accepts writes and every node
holding its log, all shown. Then: every acknowledged write is in that log, or (w = 1 only)
was recorded as cut: none is lost silently.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from nodes.core.election import Role

if TYPE_CHECKING:
    from .cluster import Node, Sim


class Violation(AssertionError):
    seed: int | None = None


class Checker:
    def __init__(self, sim: "Sim") -> None:
        self.sim = sim
        self.masters: dict[int, str] = {}           # epoch -> its master
        self.history: list[tuple[int, int]] = []    # seq - 1 -> the entry shown there
        self.majority_acks: list[tuple[int, int, int]] = []   # (write id, seq, epoch)
        self.w1_acks: list[tuple[int, int, int]] = []
        self.cuts: dict[int, tuple[str, int, float]] = {}     # write id -> (node, seq, when)
        self.calm_at: float | None = None
        self.converged_at: float | None = None

    def fail(self, what: str) -> None:
        sim = self.sim
        raise Violation(f"seed {sim.seed} ({sim.cfg.nodes} nodes) at t={sim.now:.3f}: {what}\n"
                        f"  replay: python -m tests.sim --seed {sim.seed} --nodes {sim.cfg.nodes}"
                        + "".join(f" --break {k}" for k, v in vars(sim.cfg.broken).items()
                                  if v))

    # -- called by the nodes ----------------------------------------------------------------
    def after_step(self, node: "Node") -> None:
        el = node.el
        if el.role is Role.MASTER:
            first = self.masters.setdefault(el.epoch, node.name)
            if first != node.name:
                self.fail(f"two masters in epoch {el.epoch}: {first} and {node.name}")
        log, history = node.log, self.history
        if node.commit > len(log):
            self.fail(f"{node.name} shows {node.commit} entries but holds {len(log)}")
        for i in range(node.verified_from, node.commit):
            if i == len(history):
                history.append(log[i])
            elif history[i] != log[i]:
                self.fail(f"seq {i + 1} shows {log[i]} on {node.name} but {history[i]} "
                          "elsewhere")
        node.verified_from = max(node.verified_from, node.commit)

    def cut(self, name: str, seq: int, entries: list[tuple[int, int]], now: float) -> None:
        node = self.sim.nodes[name]
        if seq <= node.commit:
            self.fail(f"{name} cuts seq {seq}, which it shows (commit {node.commit})")
        for i, (_, write_id) in enumerate(entries):
            if write_id > 0:
                self.cuts.setdefault(write_id, (name, seq + i, now))

    def became_master(self, node: "Node") -> None:
        """Leader completeness: the new master holds every majority-acknowledged write."""
        for write_id, seq, epoch in self.majority_acks:
            if epoch < node.el.epoch and not self._holds(node, write_id, seq, epoch):
                self.fail(f"{node.name}, master of epoch {node.el.epoch}, lacks write "
                          f"{write_id} (seq {seq}) acknowledged with w=majority in epoch {epoch}")

    def acked(self, node: "Node", write_id: int, seq: int, epoch: int, majority: bool) -> None:
        if not self._holds(node, write_id, seq, epoch):
            self.fail(f"{node.name} acknowledges write {write_id} at seq {seq} it does not hold")
        (self.majority_acks if majority else self.w1_acks).append((write_id, seq, epoch))
        if majority:
            for other in self.sim.nodes.values():
                if other.up and other.el.role is Role.MASTER and other.el.epoch > epoch:
                    self.became_master(other)

    @staticmethod
    def _holds(node: "Node", write_id: int, seq: int, epoch: int) -> bool:
        return len(node.log) >= seq and node.log[seq - 1] == (epoch, write_id)

    # -- called by the loop -------------------------------------------------------------------
    def one_writer(self) -> None:
        now = self.sim.now
        writers = [n.name for n in self.sim.nodes.values()
                   if n.up and n.el.writable(n.local(now))]
        if len(writers) > 1:
            self.fail(f"{writers} all accept writes at once (leases overlap)")

    def converged(self) -> bool:
        """After the faults: one writable master, every node holding and showing its log.
        Then no acknowledged write may be missing from it unless recorded as cut."""
        nodes = list(self.sim.nodes.values())
        now = self.sim.now
        masters = [n for n in nodes if n.el.writable(n.local(now))]
        if len(masters) != 1:
            return False
        log = masters[0].log
        if any(n.log != log or n.commit != len(log) for n in nodes):
            return False
        self.converged_at = now
        for write_id, seq, epoch in self.majority_acks:
            if not self._holds(masters[0], write_id, seq, epoch):
                self.fail(f"write {write_id} (seq {seq}), acknowledged with w=majority, is lost")
        for write_id, seq, epoch in self.w1_acks:
            if not self._holds(masters[0], write_id, seq, epoch) and write_id not in self.cuts:
                self.fail(f"write {write_id} (seq {seq}, w=1) is lost and no node recorded "
                          "cutting it")
        return True
