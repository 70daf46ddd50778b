"""The master's state machine: the log, every secondary's progress, write-concern waits,
health and quorum. Single-threaded and clock-free: the shell calls it under one lock and
passes `now` in; it returns what the shell must do (tokens to release, delays to wait)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .concern import Waits, holders
from .health import HealthPolicy, Quorum, Status, quorum
from .log import MasterLog
from .progress import Backoff, Progress


class ReadOnly(Exception):
    """The master has no quorum and refuses appends."""


@dataclass(frozen=True)
class Appended:
    seq: int
    created: bool     # False when an idempotency key matched an earlier append
    acks: int         # nodes holding it right now
    wait_id: int | None  # set when the caller must wait for its write concern


@dataclass(frozen=True)
class Batch:
    first_seq: int
    messages: list[str]


class MasterState:
    def __init__(self, policy: HealthPolicy | None = None, backoff: Backoff | None = None,
                 named: tuple[str, ...] | list[str] = (), max_batch: int = 10_000,
                 max_batch_bytes: int = 4 << 20) -> None:
        self.policy = policy or HealthPolicy()
        self.backoff = backoff or Backoff()
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.log = MasterLog()
        self.peers: dict[str, Progress] = {}
        self.waits = Waits()
        self.read_only = False
        for name in named:
            self.add_peer(name)

    # -- membership -------------------------------------------------------------------
    @property
    def cluster_size(self) -> int:
        return 1 + len(self.peers)

    def add_peer(self, name: str) -> bool:
        if name in self.peers:
            return False
        self.peers[name] = Progress()
        return True

    def set_uri(self, name: str, uri: str) -> str:
        """Record where a secondary is registered; 'new', 'moved' or 'same'."""
        added = self.add_peer(name)
        peer = self.peers[name]
        old, peer.uri = peer.uri, uri
        if old != uri:
            peer.retry_at = 0.0   # a new address: stop waiting out the old one's backoff
        if added or old is None:
            return "new"
        return "same" if old == uri else "moved"

    # -- appends and write concern ----------------------------------------------------
    def acks(self, seq: int) -> int:
        return holders(seq, [p.acked for p in self.peers.values()])

    def append(self, message: str, w: int, now: float, key: str | None = None,
               token: Any = None) -> Appended:
        """Append (or find, by key) a message; register a wait when w is not met yet.
        A repeated key is answered even without quorum: it appends nothing."""
        if key is None or self.log.seq_of(key) is None:
            self._check_writable(now)
        seq, created = self.log.append(message, key)
        return self._wait_for(seq, created, w, token)

    def append_many(self, messages: list[str], w: int, now: float, token: Any = None) -> Appended:
        self._check_writable(now)
        _, last = self.log.extend(messages)
        return self._wait_for(last, True, w, token)

    def _check_writable(self, now: float) -> None:
        # the hot path of every append: count answering secondaries, as quorum() does
        horizon = now - self.policy.unhealthy_after
        available = 1 + sum(1 for p in self.peers.values()
                            if p.last_answer is not None and p.last_answer > horizon)
        if available < self.cluster_size // 2 + 1:
            raise ReadOnly(self.quorum(now).reason())

    def _wait_for(self, seq: int, created: bool, w: int, token: Any) -> Appended:
        acks = self.acks(seq)
        wait_id = None if acks >= w else self.waits.add(seq, w, token)
        return Appended(seq=seq, created=created, acks=acks, wait_id=wait_id)

    def cancel_wait(self, wait_id: int) -> None:
        self.waits.cancel(wait_id)

    # -- replication --------------------------------------------------------------------
    def next_batch(self, name: str, now: float) -> Batch | None:
        """What to send to this secondary now: everything after its ACK, in one batch."""
        peer = self.peers[name]
        if peer.uri is None or now < peer.retry_at or peer.acked >= self.log.last_seq:
            return None
        first = peer.acked + 1
        return Batch(first, self.log.entries(first, self.max_batch, self.max_batch_bytes))

    def wake_at(self, name: str) -> float | None:
        """When next_batch may have something for this secondary without new appends."""
        peer = self.peers[name]
        if peer.uri is None or peer.acked >= self.log.last_seq:
            return None
        return peer.retry_at

    def on_answer(self, name: str, instance: str, ack: int, now: float) -> tuple[bool, list[Any]]:
        """A secondary answered (replicate or heartbeat). Returns (restarted, released tokens)."""
        peer = self.peers[name]
        restarted = peer.on_answer(instance, min(ack, self.log.last_seq), now)
        released = self.waits.release([p.acked for p in self.peers.values()]) if self.waits else []
        return restarted, released

    def on_failure(self, name: str, now: float, rand: Callable[[], float]) -> float:
        """A replicate call failed; returns how long to wait before trying again."""
        return self.peers[name].on_failure(now, self.backoff, rand)

    # -- health and quorum ------------------------------------------------------------
    def status(self, name: str, now: float) -> Status:
        return self.policy.status(self.peers[name].last_answer, now)

    def quorum(self, now: float) -> Quorum:
        return quorum([self.status(name, now) for name in self.peers])

    def update_mode(self, now: float) -> Quorum | None:
        """Re-evaluate the read-only flag that the shell reports and logs; returns the quorum
        when the mode changed. (Appends check the quorum itself, at their own `now`.)"""
        q = self.quorum(now)
        if q.ok == self.read_only:
            self.read_only = not q.ok
            return q
        return None

    def health(self, now: float) -> dict:
        q = self.quorum(now)
        last = self.log.last_seq
        return {
            "role": "master",
            "read_only": not q.ok,
            "reason": q.reason(),
            "last_seq": last,
            "waiting": len(self.waits),
            "quorum": {"size": q.size, "needed": q.needed, "available": q.available},
            "secondaries": {
                name: {
                    "status": self.policy.status(p.last_answer, now).value,
                    "acked_seq": p.acked,
                    "lag": last - p.acked,
                    "last_answer_age": None if p.last_answer is None
                    else round(now - p.last_answer, 3),
                    "uri": p.uri,
                }
                for name, p in sorted(self.peers.items())
            },
        }
