"""The secondary's service: a SecondaryLog, its durable store, fault injection (the entry
point nodes/secondary_node.py serves it; a failover node, nodes/failover, may too)."""
from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Callable

import Pyro5.api
from loguru import logger

from .core.log import KeyBook, Refused, SecondaryLog
from .core.validate import BadRequest, check_messages
from .follow import Notifier
from .metrics import SecondaryStats
from .secondary_faults import Faults, Reply, log_sync
from .storage.store import Store


def _caller() -> str:
    """The address of the peer of the current Pyro5 call, for refusal log lines."""
    ctx = Pyro5.api.current_context
    addr = getattr(ctx, "client_sock_addr", None)
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else "a local caller"


class Secondary:
    """The secondary's service: a SecondaryLog, its durable store, fault injection.

    With a store, every message is written (and, with --fsync always, synced) before an ACK
    that covers it is returned or reported; held-back messages (after a gap) stay in memory
    only, so the file is always a gap-free prefix of the master's log.

    Two locks, so that a slow disk never makes the node look dead: `lock` guards the
    in-memory log and is held only briefly; `disk_lock` keeps writes in seq order and is
    held across store.write + store.commit (fdatasync). Taken in that order (disk_lock, then
    lock) or alone. What heartbeat() and history() report is `_durable`, a Reply swapped in
    after each commit or sync: it is read without any lock and never covers unsynced entries.
    Replicate calls may arrive concurrently (a pipelining master): each stores into memory,
    then writes and commits whatever is shown but not yet written (group commit)."""

    def __init__(self, name: str, delay: float = 0.0, error_rate: float = 0.0,
                 rand: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic, store: Store | None = None,
                 max_ahead: int = 10_000, allow_faults: bool = False,
                 loaded: tuple[str | None, list, list[str], dict[str, int]] | None = None,
                 commit: int | None = None, max_keys: int = 0) -> None:
        self.name = name
        self.allow_faults = allow_faults   # POST /faults and set_faults() only when True
        self.stats = SecondaryStats()      # read by GET /metrics (nodes/metrics.py)
        self.incarnation = uuid.uuid4().hex   # each process is a new incarnation
        self.faults = Faults(delay, error_rate, clock, rand)
        self.log = SecondaryLog(max_ahead)
        self.lock = threading.Lock()
        self.disk_lock = threading.Lock()
        self.store = store
        self.loaded_from_disk = 0
        self._syncs = 0     # bumped by every sync: a replicate call that straddles one fails
        self.fence: Any = None   # a failover node (nodes/failover) checks masters' calls
        self.commit = commit     # failover: readers see at most this many (None: no limit)
        # failover (max_keys > 0): the master's idempotency keys, kept for when this node
        # becomes master
        self.keys = KeyBook(max_keys)
        self.handed_over = False  # failover: the store is the elected Master's (hand_over)
        if loaded is not None:   # a deposed master's log (failover): already on its disk
            self.log.load(*loaded[:3])
            self.keys = KeyBook(max_keys, loaded[3])
        elif store is not None:
            stored = store.load(max_keys=max_keys)
            self.log.load(stored.log_id, stored.history, stored.messages)
            self.keys = KeyBook(max_keys, stored.keys)
            self.loaded_from_disk = len(stored.messages)
            logger.info("loaded {} messages of log {} epoch {} from {}", len(stored.messages),
                        stored.log_id, self.log.epoch, store.path)
        # Entries in the store, and how many of them a commit covered (all, without a store).
        self._written = self._synced = self.log.ack
        self._durable = self._reply_of(self.log.ack)
        self.follow = Notifier()   # advanced where the shown prefix grows (GET ?wait=, stream)

    @property
    def delay(self) -> float:
        return self.faults.delay

    @property
    def error_rate(self) -> float:
        return self.faults.error_rate

    def _reply_of(self, ack: int) -> Reply:
        return Reply(self.incarnation, ack, self.log.log_id, self.log.epoch,
                     tuple(tuple(pair) for pair in self.log.history))

    def _shown(self) -> int:
        """How many entries readers may see: only durable ones with a store, and with
        failover only committed ones (the master's commit). Under lock."""
        held = self.log.ack if self.store is None else min(self._durable.ack, self.log.ack)
        return held if self.commit is None else min(held, self.commit)

    def _take_commit(self, leader: dict | None) -> None:
        """Failover: the master's commit, taken only while this copy follows the master's
        epoch (synced: its entries match the master's up to its ACK), and capped by the
        ACK. Never lowered. Under lock."""
        if self.commit is None or leader is None or self.log.epoch != leader.get("epoch"):
            return
        commit = min(int(leader.get("commit", 0)), self.log.ack)
        if commit > self.commit:
            self.commit = commit
            self.follow.advance(self._shown())

    def _refuse(self, what: str, e: Exception) -> None:
        self.stats.refused += 1
        logger.warning("refused {} from {}: {}", what, _caller(), e)

    def _admit(self, leader: dict | None) -> dict:
        """With failover: refuse a call from a master of an older epoch (PermissionError);
        the answer's extra fields (this node's epoch)."""
        if self.fence is None or leader is None:
            return {}
        return {"term": self.fence.admit(leader)}

    def sync(self, log_id: object, history: object, last_seq: object,
             new_log: bool = False, leader: dict | None = None) -> dict:
        """Agree with the master's log (see SecondaryLog.sync) and persist the result. With
        failover, an elected master's log is the log: another log id is taken too."""
        if not isinstance(log_id, str) or not log_id or isinstance(last_seq, bool) \
                or not isinstance(last_seq, int) or last_seq < 0:
            raise ValueError("sync needs a log id and a last seq")
        extra = self._admit(leader)
        new_log = bool(new_log) or bool(extra)
        with self.disk_lock:     # no write in progress: the store can be cut and re-labelled
            self._check_not_handed_over()
            with self.lock:
                before = (self.log.log_id, self.log.epoch, self.log.ack)
                try:
                    result = self.log.sync(log_id, history, last_seq, bool(new_log))
                except Refused as e:
                    self._refuse("sync", e)
                    raise PermissionError(str(e)) from None
                self._syncs += 1
                self.keys.cut(result.keep)
                cut = self._written > result.keep
                self._written = min(self._written, result.keep)
                self._synced = min(self._synced, result.keep)
                # Readers stop seeing what was cut now; the new epoch shows once on disk.
                self._durable = replace(self._durable, ack=min(self._durable.ack, self._synced))
            log_sync(log_id, before[0], result)
            if result.dropped:
                self.stats.cut += len(result.dropped)
                if self.fence is not None:
                    self.fence.on_cut(len(result.dropped))
            if self.store is not None:
                if cut:
                    self.store.truncate(result.keep)
                self.store.save_meta(log_id, self.log.history)
            with self.lock:
                self._durable = self._reply_of(self._synced)
                self._take_commit(leader)
            if before != (self.log.log_id, self.log.epoch, self.log.ack):
                logger.info("synced with log {} epoch {}: ack={}", log_id, self.log.epoch,
                            self._durable.ack)
            return {**self._durable.wire(), **extra}

    def replicate(self, log_id: str, epoch: int, first_seq: int, messages: list[str],
                  leader: dict | None = None, keys: dict | None = None) -> dict:
        if isinstance(first_seq, bool) or not isinstance(first_seq, int) or first_seq < 1:
            raise ValueError("first_seq must be a positive integer")
        extra = self._admit(leader)
        try:
            messages = check_messages(messages)
        except BadRequest as e:
            raise ValueError(e.message) from None
        self.stats.replicate_calls += 1
        self.stats.received += len(messages)
        if self.faults.delay > 0:
            self.stats.injected_delays += 1
            self.faults.hold()      # outside the locks: concurrent calls wait side by side
        with self.lock:
            try:
                self.log.check(log_id, epoch, first_seq)
            except Refused as e:
                self._refuse(f"replicate seq={first_seq}", e)
                raise PermissionError(str(e)) from None
            if keys and self.keys.max_keys:
                self.keys.received(first_seq, keys, self._written)
            result = self.log.store(first_seq, messages)
            syncs = self._syncs
            if self.store is None:    # memory is all there is: held once stored
                self.keys.take(self._written + 1, self.log.ack)
                self._written = self._synced = self.log.ack
                self._durable = self._reply_of(self._synced)
        if self.store is not None:
            self._persist()
        with self.lock:
            self._take_commit(leader)
            self.follow.advance(self._shown())
            if self._syncs != syncs:
                # The log was re-synced (maybe cut, maybe a new epoch) after this call was
                # checked: its ACK would describe another log. The master retries after sync.
                raise PermissionError("re-synced while this replicate call was in flight")
            ack = self._durable.ack
        logger.debug("replicate seq={}..{} stored={} duplicates={} ack={}", first_seq,
                     first_seq + len(messages) - 1, result.stored, result.duplicates, ack)
        if self.faults.fail_now():
            self.stats.injected_errors += 1
            logger.debug("injected error after storing seq={}..{}", first_seq,
                         first_seq + len(messages) - 1)
            raise RuntimeError("injected error (the messages were stored; the ACK is withheld)")
        return {"incarnation": self.incarnation, "ack": ack, **extra}

    def _persist(self) -> None:
        """Write and commit what is shown but not yet in the store, then publish the new
        durable ACK. A call whose entries another call's commit already covered (it took
        them while this one waited for disk_lock) has nothing left to do."""
        with self.disk_lock:
            self._check_not_handed_over()
            with self.lock:
                first = self._written + 1
                entries = self.log.shown_since(first)
                keys = self.keys.take(first, first + len(entries) - 1)
            if entries:
                self.store.write(first, entries, keys)
                self._written += len(entries)
            if self._synced < self._written:   # also after a commit that failed last time
                self.store.commit()
                self._synced = self._written
                with self.lock:
                    self._durable = self._reply_of(self._synced)

    def _check_not_handed_over(self) -> None:
        """Under disk_lock: a call that began before this node won an election (it waited
        for the lock, or an injected delay) must not write into the store, which the
        elected Master owns now."""
        if self.handed_over:
            raise PermissionError(f"{self.name} is the master now: a call of the previous "
                                  "master that was still in progress is refused")

    def heartbeat(self, log_id: str | None = None, epoch: int | None = None,
                  leader: dict | None = None) -> dict:
        """What this secondary holds (durably) and follows; changes nothing, waits for
        nothing. With failover: whether the master `leader` is admitted, and this node's
        epoch (a stale master learns from it that it is deposed)."""
        if self.fence is None or leader is None:
            return self._durable.wire()
        accepted, term = self.fence.check(leader)
        if accepted and log_id == self.log.log_id:
            with self.lock:
                self._take_commit(leader)
        return {**self._durable.wire(), "term": term, "accepted": accepted}

    def hand_over(self) -> tuple[str | None, list[list[int]], list[str], int, dict[str, int]]:
        """This node won an election: what it holds on disk (log id, history, entries), what
        it knows committed, and the keys, for the Master that takes over its log and store."""
        with self.disk_lock:
            with self.lock:
                self.handed_over = True
                reply = self._durable
                keys = {k: seq for k, seq in self.keys.by_key.items() if seq <= reply.ack}
                return (reply.log_id, [list(p) for p in reply.history],
                        self.log.snapshot()[:reply.ack], self._shown(), keys)

    def read(self, log_id: str, first_seq: int, limit: int) -> list[str]:
        """Entries first_seq.. (at most limit) of the gap-free prefix, for a master that
        recovers its log from this secondary."""
        # Checked, not trusted: a first_seq of 0 or less made a negative slice, which read
        # from the end of the log.
        if isinstance(first_seq, bool) or not isinstance(first_seq, int) or first_seq < 1:
            raise ValueError(f"first_seq must be an integer from 1 on, got {first_seq!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an integer from 0 on, got {limit!r}")
        with self.lock:
            if log_id != self.log.log_id:
                raise ValueError(f"this secondary holds log {self.log.log_id}, not {log_id}")
            entries, count = self.log.snapshot(), self._shown()
        return entries[first_seq - 1:min(count, first_seq - 1 + min(limit, 100_000))]

    def history(self) -> dict:
        reply = self._durable
        return {**reply.wire(), "history": [list(pair) for pair in reply.history]}

    def messages(self) -> list[str]:
        entries, count = self.snapshot()
        return entries[:count]

    def snapshot(self) -> tuple[list[str], int]:
        """(entry list, count) to read without the lock (see SecondaryLog.snapshot)."""
        with self.lock:
            return self.log.snapshot(), self._shown()

    def health(self) -> dict:
        reply = self._durable
        return {"role": "secondary", "name": self.name, "messages": reply.ack,
                "held_back": self.log.held_back, "delay": self.delay,
                "error_rate": self.error_rate, "incarnation": self.incarnation,
                "log_id": reply.log_id, "epoch": reply.epoch, "cut": self.stats.cut,
                **({"commit_seq": self.commit} if self.commit is not None else {}),
                **({"failover": self.fence.report()} if self.fence is not None else {}),
                "durable": None if self.store is None else
                {"data_dir": str(self.store.path), "fsync": self.store.mode,
                 "loaded_from_disk": self.loaded_from_disk}}

    def tail(self, count: int = 20) -> dict:
        """For the master's dashboard: the last `count` messages shown, with their seq, and
        the seqs held back past a gap."""
        count = max(0, min(int(count), 100))
        with self.lock:
            entries, ack = self.log.snapshot(), self._shown()
            held = sorted(self.log._held)   # noqa: SLF001 (a read-only peek)
        first = max(1, ack - count + 1)
        return {"name": self.name, "incarnation": self.incarnation, "ack": ack,
                "tail": [[seq, entries[seq - 1][:200]] for seq in range(first, ack + 1)],
                "held": held[:count], "held_back": len(held), "delay": self.delay,
                "error_rate": self.error_rate, "allow_faults": self.allow_faults}

    def set_faults(self, delay: float | None = None, error_rate: float | None = None) -> dict:
        self.faults.set(delay, error_rate)   # wakes waiting calls to re-check their delay
        logger.info("faults set: delay={} error_rate={}", self.delay, self.error_rate)
        return {"delay": self.delay, "error_rate": self.error_rate}
