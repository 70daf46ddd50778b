"""A secondary: keeps a copy of the master's log and shows its gap-free prefix.

    python -m nodes.secondary_node --name secondary1 --http-port 5001 [--delay 2]
"""
from __future__ import annotations

if __name__ == "__main__":
    # Run as a node: make threads, locks and sockets cooperative (gevent) before anything
    # else imports them. Importing this module (tests do) patches nothing.
    from gevent import monkey
    monkey.patch_all()

import random
import threading
import time
import uuid
from dataclasses import replace
from typing import Callable

import Pyro5.api
from loguru import logger

from . import logs, rpc
from .config import Parser, add_common, add_storage
from .core.log import Refused, SecondaryLog
from .core.validate import BadRequest, check_faults, check_messages
from .follow import Notifier
from .metrics import SecondaryStats
from .secondary_api import SecondaryAPI
from .secondary_faults import Faults, Reply, log_sync
from .serve import configure_rpc, log_config, run_node
from .storage.store import CorruptLog, DataDirError, Store
from .web import secondary_app


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
                 max_ahead: int = 10_000, allow_faults: bool = False) -> None:
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
        if store is not None:
            loaded = store.load(max_keys=0)
            self.log.load(loaded.log_id, loaded.history, loaded.messages)
            self.loaded_from_disk = len(loaded.messages)
            logger.info("loaded {} messages of log {} epoch {} from {}", len(loaded.messages),
                        loaded.log_id, self.log.epoch, store.path)
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
        """How many entries readers may see: only durable ones with a store. Under lock."""
        return self.log.ack if self.store is None else min(self._durable.ack, self.log.ack)

    def _refuse(self, what: str, e: Exception) -> None:
        self.stats.refused += 1
        logger.warning("refused {} from {}: {}", what, _caller(), e)

    def sync(self, log_id: object, history: object, last_seq: object,
             new_log: bool = False) -> dict:
        """Agree with the master's log (see SecondaryLog.sync) and persist the result."""
        if not isinstance(log_id, str) or not log_id or isinstance(last_seq, bool) \
                or not isinstance(last_seq, int) or last_seq < 0:
            raise ValueError("sync needs a log id and a last seq")
        with self.disk_lock:     # no write in progress: the store can be cut and re-labelled
            with self.lock:
                before = (self.log.log_id, self.log.epoch, self.log.ack)
                try:
                    result = self.log.sync(log_id, history, last_seq, bool(new_log))
                except Refused as e:
                    self._refuse("sync", e)
                    raise PermissionError(str(e)) from None
                self._syncs += 1
                cut = self._written > result.keep
                self._written = min(self._written, result.keep)
                self._synced = min(self._synced, result.keep)
                # Readers stop seeing what was cut now; the new epoch shows once on disk.
                self._durable = replace(self._durable, ack=min(self._durable.ack, self._synced))
            log_sync(log_id, before[0], result)
            if self.store is not None:
                if cut:
                    self.store.truncate(result.keep)
                self.store.save_meta(log_id, self.log.history)
            with self.lock:
                self._durable = self._reply_of(self._synced)
            if before != (self.log.log_id, self.log.epoch, self.log.ack):
                logger.info("synced with log {} epoch {}: ack={}", log_id, self.log.epoch,
                            self._durable.ack)
            return self._durable.wire()

    def replicate(self, log_id: str, epoch: int, first_seq: int, messages: list[str]) -> dict:
        if isinstance(first_seq, bool) or not isinstance(first_seq, int) or first_seq < 1:
            raise ValueError("first_seq must be a positive integer")
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
            result = self.log.store(first_seq, messages)
            syncs = self._syncs
            if self.store is None:    # memory is all there is: held once stored
                self._written = self._synced = self.log.ack
                self._durable = self._reply_of(self._synced)
        if self.store is not None:
            self._persist()
        with self.lock:
            self.follow.advance(self._durable.ack)
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
        return {"incarnation": self.incarnation, "ack": ack}

    def _persist(self) -> None:
        """Write and commit what is shown but not yet in the store, then publish the new
        durable ACK. A call whose entries another call's commit already covered (it took
        them while this one waited for disk_lock) has nothing left to do."""
        with self.disk_lock:
            with self.lock:
                first = self._written + 1
                entries = self.log.shown_since(first)
            if entries:
                self.store.write(first, entries)
                self._written += len(entries)
            if self._synced < self._written:   # also after a commit that failed last time
                self.store.commit()
                self._synced = self._written
                with self.lock:
                    self._durable = self._reply_of(self._synced)

    def heartbeat(self, log_id: str | None = None, epoch: int | None = None) -> dict:
        """What this secondary holds (durably) and follows; changes nothing, waits for nothing."""
        return self._durable.wire()

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
                "log_id": reply.log_id, "epoch": reply.epoch,
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


def parser() -> Parser:
    p = Parser(prog="python -m nodes.secondary_node",
               description="A secondary of the replicated log: registers in the Pyro5 name "
                           "server as replog.secondary.NAME, stores what the master "
                           "replicates, serves GET /messages and GET /health over HTTP.")
    p.flag("--name", default="secondary1", help="this secondary's name")
    p.flag("--http-port", type=int, default=5001, help="HTTP port (0: any free)")
    p.flag("--delay", type=float, default=0.0,
           help="seconds every replicate call sleeps before it stores and ACKs")
    p.flag("--error-rate", type=float, default=0.0,
           help="probability that a replicate call answers with an error after storing")
    p.flag("--max-ahead", type=int, default=10_000,
           help="refuse a replicate call whose first seq lies more than this past the ACK "
                "(keeps the hold-back map bounded; the master's --max-batch or more)")
    add_storage(p)
    add_common(p)
    p.switch("--allow-faults", help="accept fault injection (POST /faults, set_faults): a "
                                    "test and demo tool, off in production")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        check_faults({"delay": args.delay, "error_rate": args.error_rate})
    except BadRequest as e:
        parser().error(f"--delay / --error-rate: {e.message}")
    logs.setup(args.name, args.log_level)
    log_config(args)
    configure_rpc(args, rpc.SECONDARY_PREFIX + args.name)
    # offload: fdatasync in the helper process. In place it would block gevent's loop, and
    # with it every heartbeat and HTTP request, for as long as the disk takes.
    store = Store(args.data_dir, args.fsync, args.fsync_interval, offload=True) \
        if args.data_dir else None
    try:
        secondary = Secondary(args.name, args.delay, args.error_rate, store=store,
                              max_ahead=args.max_ahead, allow_faults=args.allow_faults)
    except DataDirError as e:
        logger.error("cannot start: {}{}", "the log is corrupt: " if
                     isinstance(e, CorruptLog) else "", e)
        raise SystemExit(1) from None
    run_node(args, SecondaryAPI(secondary), rpc.SECONDARY_PREFIX + args.name,
             secondary_app(secondary, args.max_body))


if __name__ == "__main__":
    main()
