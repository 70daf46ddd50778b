"""The master's state machine: the log, every secondary's progress, write-concern waits,
health and quorum. Single-threaded and clock-free: the shell calls it under one lock and
passes `now` in; it returns what the shell must do (tokens to release, delays to wait)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import history as hist
from .concern import Waits, holders
from .health import HealthPolicy, Quorum, Status, quorum
from .log import MasterLog
from .progress import Backoff, Progress


class ReadOnly(Exception):
    """The master has no quorum (or is still recovering its log) and refuses appends."""

SAME = object()   # on_answer(): "the peer follows the master's own log and epoch"


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


@dataclass(frozen=True)
class Sync:
    """The secondary follows another log or epoch: it must sync before it is sent entries."""
    log_id: str
    history: list[list[int]]
    last_seq: int


class MasterState:
    """durable: the highest seq on the master's own disk; with a volatile (in-memory) log it
    follows every append. recovering: a reason to refuse appends until the log is known."""

    def __init__(self, policy: HealthPolicy | None = None, backoff: Backoff | None = None,
                 named: tuple[str, ...] | list[str] = (), max_batch: int = 10_000,
                 max_batch_bytes: int = 4 << 20, volatile: bool = True,
                 max_keys: int = 100_000, now: float = 0.0) -> None:
        self.policy = policy or HealthPolicy()
        self.backoff = backoff or Backoff()
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.volatile = volatile
        self.log = MasterLog(max_keys, track_keys=not volatile)
        self.log_id: str = ""
        self.history: list[list[int]] = [[1, 1]]
        self.durable = 0
        self.recovering: str | None = None
        self.peers: dict[str, Progress] = {}
        self.waits = Waits()
        self.read_only = False
        self.named = frozenset(named)
        for name in named:
            self.add_peer(name, now)

    @property
    def epoch(self) -> int:
        return hist.last_epoch(self.history)

    def begin(self, log_id: str, history: list[list[int]], durable: int) -> None:
        """Serve log_id from now on, with this epoch history, its first `durable` entries
        already on disk."""
        self.log_id, self.history, self.durable = log_id, history, durable
        self.recovering = None

    # -- membership -------------------------------------------------------------------
    @property
    def cluster_size(self) -> int:
        return 1 + len(self.peers)

    def add_peer(self, name: str, now: float) -> bool:
        if name in self.peers:
            return False
        self.peers[name] = Progress(known_since=now)
        return True

    def departed(self, registered: set[str] | frozenset[str], now: float) -> list[str]:
        """Forget the secondaries that left on purpose: found by discovery (not named at
        start), no longer registered (a node that stops cleanly unregisters; one killed stays
        registered) and Unhealthy. They no longer count in the cluster size or the quorum."""
        gone = [name for name in self.peers
                if name not in self.named and name not in registered
                and self.status(name, now) is Status.UNHEALTHY]
        for name in gone:
            del self.peers[name]
        return gone

    def set_uri(self, name: str, uri: str, now: float) -> str:
        """Record where a secondary is registered; 'new', 'moved' or 'same'."""
        added = self.add_peer(name, now)
        peer = self.peers[name]
        old, peer.uri = peer.uri, uri
        if old != uri:
            # A new address is most likely a new process: stop waiting out the old one's
            # backoff, and ask what it follows (a Sync) before sending it entries, which it
            # would refuse until synced (and the refusal would cost a backoff).
            peer.retry_at = 0.0
            if old is not None:
                peer.log_id, peer.epoch = None, 0
        if added or old is None:
            return "new"
        return "same" if old == uri else "moved"

    # -- appends and write concern ----------------------------------------------------
    def acks(self, seq: int) -> int:
        return holders(seq, [p.acked for p in self.peers.values()], self.durable)

    def append(self, message: str, w: int, now: float, key: str | None = None,
               token: Any = None) -> Appended:
        """Append (or find, by key) a message; register a wait when w is not met yet.
        A repeated key is answered even without quorum: it appends nothing."""
        if key is None or self.log.seq_of(key) is None:
            self._check_writable(now)
        seq, created = self.log.append(message, key)
        if created and self.volatile:
            self.durable = seq
        return self._wait_for(seq, created, w, token)

    def append_many(self, messages: list[str], w: int, now: float, token: Any = None) -> Appended:
        self._check_writable(now)
        _, last = self.log.extend(messages)
        if self.volatile:
            self.durable = last
        return self._wait_for(last, True, w, token)

    def _check_writable(self, now: float) -> None:
        if self.recovering is not None:
            raise ReadOnly(self.recovering)
        # the hot path of every append: count answering secondaries, as quorum() does
        horizon = now - self.policy.unhealthy_after
        available = 1
        for p in self.peers.values():
            seen = p.last_answer if p.last_answer is not None else p.known_since
            if seen is not None and seen > horizon:
                available += 1
        if available < self.cluster_size // 2 + 1:
            raise ReadOnly(self.quorum(now).reason())

    def on_durable(self, seq: int) -> list[Any]:
        """The master's disk holds every entry up to seq; returns the waits now met."""
        self.durable = max(self.durable, seq)
        return self._release()

    def _release(self) -> list[Any]:
        if not self.waits:
            return []
        return self.waits.release([p.acked for p in self.peers.values()], self.durable)

    def _wait_for(self, seq: int, created: bool, w: int, token: Any) -> Appended:
        acks = self.acks(seq)
        wait_id = None if acks >= w else self.waits.add(seq, w, token)
        return Appended(seq=seq, created=created, acks=acks, wait_id=wait_id)

    def cancel_wait(self, wait_id: int) -> None:
        self.waits.cancel(wait_id)

    # -- replication --------------------------------------------------------------------
    def synced(self, name: str) -> bool:
        peer = self.peers[name]
        return peer.log_id == self.log_id and peer.epoch == self.epoch

    def next_batch(self, name: str, now: float) -> Batch | Sync | None:
        """What to send to this secondary now: a Sync when it follows another log or epoch,
        else everything after its ACK, in one batch."""
        peer = self.peers[name]
        if peer.uri is None or now < peer.retry_at or self.recovering is not None:
            return None
        if not self.synced(name):
            return Sync(self.log_id, self.history, self.log.last_seq)
        if peer.acked >= self.log.last_seq:
            return None
        # Sent while the master's own sync may still run: the two disks work at once. An
        # entry a master loses in a crash before its sync was never acknowledged; a restarted
        # master adopts it from a secondary that has it, or cuts it off the secondaries.
        first = peer.acked + 1
        return Batch(first, self.log.entries(first, self.max_batch, self.max_batch_bytes))

    def wake_at(self, name: str) -> float | None:
        """When next_batch may have something for this secondary without new appends."""
        peer = self.peers[name]
        if peer.uri is None or (peer.acked >= self.log.last_seq and self.synced(name)):
            return None
        return peer.retry_at

    def on_answer(self, name: str, instance: str, ack: int, now: float, log_id: Any = SAME,
                  epoch: Any = SAME, sent: int = 0) -> tuple[bool, list[Any]]:
        """A secondary answered (replicate, heartbeat or sync) with the log and epoch it
        follows; `sent` messages were in the call. Returns (restarted, released tokens).
        Until it follows this master's log and epoch its entries may differ from the
        master's, so it holds nothing that counts."""
        peer = self.peers[name]
        peer.log_id = self.log_id if log_id is SAME else log_id
        peer.epoch = self.epoch if epoch is SAME else epoch
        counted = min(ack, self.log.last_seq) if self.synced(name) else 0
        restarted = peer.on_answer(instance, counted, now)
        peer.sent += sent
        return restarted, self._release()

    def on_failure(self, name: str, now: float, rand: Callable[[], float]) -> float:
        """A replicate call failed; returns how long to wait before trying again."""
        return self.peers[name].on_failure(now, self.backoff, rand)

    # -- health and quorum ------------------------------------------------------------
    def status(self, name: str, now: float) -> Status:
        peer = self.peers[name]
        return self.policy.status(peer.last_answer, now, peer.known_since)

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
            "read_only": not q.ok or self.recovering is not None,
            "reason": self.recovering or q.reason(),
            "last_seq": last,
            "durable_seq": self.durable,
            "epoch": self.epoch,
            "waiting": len(self.waits),
            "quorum": {"size": q.size, "needed": q.needed, "available": q.available},
            "secondaries": {
                name: {
                    "status": self.status(name, now).value,
                    "acked_seq": p.acked,
                    "lag": last - p.acked,
                    "last_answer_age": None if p.last_answer is None
                    else round(now - p.last_answer, 3),
                    "uri": p.uri,
                    "synced": self.synced(name),
                    "sent": p.sent,
                }
                for name, p in sorted(self.peers.items())
            },
        }
