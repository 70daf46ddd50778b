"""The running master: drives the pure MasterState with threads, a clock and Pyro5.

Threads (each owns its own Pyro5 proxies; a proxy belongs to one thread):
  sender-NAME     one per secondary: ships everything after the secondary's ACK in one
                  replicate() call, waits for the ACK, repeats; backs off on failure.
  heartbeat-NAME  one per secondary: a small heartbeat() call every interval; its answer
                  (or its silence) drives the health state, and a restarted secondary's
                  new incarnation shows up here within one interval.
  tick            discovery in the name server, health transitions and read-only mode.
  flush           with a data directory: writes what was appended since its last round as
                  one record and syncs it (group commit), then counts the master as a holder.
Before any of them run, start() recovers the log: it loads the master's own disk, asks every
known secondary what it holds (core/recovery.py decides) and fetches what it lacks.
Client threads (HTTP or Pyro5) append under the same lock and wait on an Event until
their write concern is met. In a node process every "thread" is a gevent greenlet (the
process is monkey-patched at startup); the code is plain threaded code either way.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import Pyro5.core
from loguru import logger

from . import rpc, tls
from .events import add_event
from .metrics import MasterStats
from .core import history as hist
from .core import recovery
from .core.health import HealthPolicy, Status
from .core.master import SAME, MasterState, Sync
from .core.progress import Backoff
from .storage.store import Store


class _Wait:
    """One append waiting for its write concern: released with the count of holders."""
    __slots__ = ("event", "seq", "acks")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.seq = 0
        self.acks = 0


class WriteConcernTimeout(Exception):
    def __init__(self, seq: int, acks: int, w: int, timeout: float) -> None:
        super().__init__(f"write concern w={w} not met in {timeout:g} s (acks={acks}); the "
                         "message stays in the log and keeps replicating")
        self.seq, self.acks, self.w = seq, acks, w


@dataclass(frozen=True)
class Timing:
    rpc_timeout: float = 10.0          # any replicate() call
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 1.0
    discovery_interval: float = 1.0
    startup_wait: float = 2.0          # how long start() waits for every known secondary


class Master:
    def __init__(self, named: list[str], policy: HealthPolicy, backoff: Backoff,
                 timing: Timing, ns_factory: Callable[[], Any] | None,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random, max_batch: int = 10_000,
                 store: Store | None = None, new_log: bool = False,
                 max_keys: int = 100_000) -> None:
        self.state = MasterState(policy, backoff, named, max_batch=max_batch,
                                 volatile=store is None, max_keys=max_keys, now=clock())
        self.timing = timing
        self.store = store
        self.new_log = new_log
        self.recovery: dict | None = None     # how the log was recovered, for /health
        self.clock = clock
        self.rand = rand
        self.cond = threading.Condition()
        self._ns_factory = ns_factory
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_peers: set[str] = set()
        self._statuses: dict[str, Status] = {}
        # TLS: (name, uri) of a registration -> "" (verified) or why it is ignored
        self._checked: dict[tuple[str, str], str] = {}
        self._instances: dict[str, str] = {}
        self._catching_up: dict[str, tuple[float, int | None]] = {}
        self._in_flight: set[str] = set()       # secondaries a replicate call is out to
        self._written = 0
        self._replicating = False
        self.stats = MasterStats()           # read by GET /metrics (nodes/metrics.py)

    @property
    def log_id(self) -> str:
        return self.state.log_id

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the log (see _recover), then start replicating. Returns once the log is
        known, or, for a master with nothing on disk still waiting for its secondaries,
        after timing.startup_wait: recovery then goes on in the background, read-only."""
        own = recovery.Copy("master", None, [], 0)
        if self.store is not None:
            loaded = self.store.load(self.state.log.max_keys)
            self.state.log.load(loaded.messages, loaded.keys)
            own = recovery.Copy("master", loaded.log_id, loaded.history, len(loaded.messages))
            logger.info("loaded {} messages of log {} from {}{}", own.length, own.log_id,
                        self.store.path, f" (cut a torn tail: {loaded.cut})" if loaded.cut else "")
        self.state.recovering = "recovering: the master is still finding its log"
        if self._recover(own, time.monotonic() + self.timing.startup_wait) is None:
            self._spawn("recovery", self._recover_in_background, own)
        else:
            self._start_replication()

    def _start_replication(self) -> None:
        self._replicating = True
        self._written = self.state.durable
        if self.store is not None:
            self._spawn("flush", self._flush_loop)
        with self.cond:
            names = list(self.state.peers)
        for name in names:
            self._start_peer(name)
        self._spawn("tick", self._tick_loop)

    def _recover_in_background(self, own: recovery.Copy) -> None:
        while not self._stop.is_set():
            if self._recover(own, time.monotonic() + self.timing.heartbeat_interval) is not None:
                self._start_replication()
                return

    def _recover(self, own: recovery.Copy, deadline: float) -> str | None:
        """Ask every known secondary what it holds until all answered or the deadline; then
        serve the most recent copy (fetching it if it is a secondary's), start a new log, or
        keep waiting. Returns the log id served, or None (still waiting)."""
        answers: dict[str, recovery.Copy] = {}
        while True:
            self._discover_once()
            with self.cond:
                known = {n: p.uri for n, p in self.state.peers.items()}
            for name, copy in self._ask_all({n: u for n, u in known.items()
                                             if u and n not in answers}).items():
                answers[name] = copy
            if len(answers) == len(known) or time.monotonic() >= deadline or self._stop.is_set():
                break
            self._stop.wait(0.05)
        waited = time.monotonic() >= deadline
        plan = recovery.plan(own, list(answers.values()), len(known), waited, self.new_log)
        for copy in answers.values():
            if copy.log_id not in (None, own.log_id, plan.source and plan.source.log_id) \
                    and not copy.empty and plan.action == "serve":
                logger.error("{} holds another log ({}, {} messages): it will be refused until "
                             "it is emptied or the master starts with --new-log", copy.name,
                             copy.log_id, copy.length)
        if plan.action == "wait":
            with self.cond:
                changed = self.state.recovering != plan.reason
                self.state.recovering = plan.reason
            if changed:
                logger.warning("{}", plan.reason)
            return None
        try:
            return self._carry_out(plan, own, answers)
        except Exception as e:   # the source went away mid-fetch: ask again
            logger.warning("recovery from {} failed ({}: {}); asking again",
                           plan.source.name if plan.source else "?", type(e).__name__, e)
            return None

    def _carry_out(self, plan: recovery.Plan, own: recovery.Copy,
                   answers: dict[str, recovery.Copy]) -> str:
        log = self.state.log
        started = time.monotonic()
        fetched = 0
        if plan.action == "new":
            log_id, history = uuid.uuid4().hex, [[1, 1]]
            if own.length:
                log.truncate(0)
                self.store.truncate(0)
        else:
            src = plan.source
            log_id = src.log_id
            if plan.keep < own.length:
                logger.warning("dropping seq={}..{} of the master's own log: {} holds a more "
                               "recent log", plan.keep + 1, own.length, src.name)
                log.truncate(plan.keep)
                if self.store is not None:
                    self.store.truncate(plan.keep)
            if src.name != "master" and src.length > plan.keep:
                if self.store is not None:   # a crash mid-fetch leaves a valid prefix
                    self.store.save_meta(log_id, hist.cut(src.history, src.length))
                fetched = self._fetch(src, plan.keep)
            history = hist.begin_epoch(hist.cut(src.history, src.length), log.last_seq,
                                       plan.epoch)
        if self.store is not None:
            self.store.save_meta(log_id, history)
        with self.cond:
            self.state.begin(log_id, history, durable=log.last_seq)
            for name, copy in answers.items():
                if name in self.state.peers:
                    self.state.on_answer(name, self._instances.get(name, ""), copy.length,
                                         self.clock(), copy.log_id, hist.epoch_at(copy.history,
                                                                                  copy.length))
        took = time.monotonic() - started
        if plan.action == "new":
            logger.info("{}: log {}", plan.reason, log_id)
        elif fetched:
            logger.warning("recovered {} messages from {} in {:.2f} s: serving log {} with {} "
                           "messages, epoch {}", fetched, plan.source.name, took, log_id,
                           log.last_seq, self.state.epoch)
        else:
            logger.info("serving log {} with {} messages, epoch {}", log_id, log.last_seq,
                        self.state.epoch)
        add_event("recovery", f"{plan.action}: log {log_id[:8]} with {log.last_seq} messages, "
                              f"epoch {self.state.epoch}" + (f", fetched {fetched} from "
                              f"{plan.source.name}" if fetched else ""))
        self.recovery = {"action": plan.action, "source": plan.source.name if plan.source
                         else None, "fetched": fetched, "seconds": round(took, 3),
                         "answered": sorted(answers), "at": time.time()}
        return log_id

    def _fetch(self, src: recovery.Copy, keep: int, chunk: int = 50_000) -> int:
        """Copy src's entries keep+1..src.length into the master's log (and disk)."""
        log = self.state.log
        with self.cond:
            uri = self.state.peers[src.name].uri
        p = rpc.proxy(uri, self.timing.rpc_timeout)
        try:
            while log.last_seq < src.length:
                first = log.last_seq + 1
                batch = p.read(src.log_id, first, min(chunk, src.length - log.last_seq))
                if not batch:
                    raise RuntimeError(f"{src.name} sent nothing from seq={first}")
                log.extend(batch)
                if self.store is not None:
                    self.store.write(first, batch)
            if self.store is not None:
                self.store.sync()
        finally:
            p._pyroRelease()
        return src.length - keep

    def _ask_all(self, uris: dict[str, str]) -> dict[str, recovery.Copy]:
        """history() of each secondary at once, each call in its own thread with its proxy."""
        out: dict[str, recovery.Copy] = {}

        def ask(name: str, uri: str) -> None:
            p = rpc.proxy(uri, self.timing.heartbeat_timeout)
            try:
                r = p.history()
                out[name] = recovery.Copy(name, r["log_id"], r["history"], r["ack"])
                self._instances[name] = r["instance"]
            except Exception as e:
                logger.debug("{} did not answer yet: {}", name, e)
            finally:
                p._pyroRelease()

        threads = [threading.Thread(target=ask, args=item, daemon=True) for item in uris.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.timing.heartbeat_timeout + 1)
        return dict(out)

    def _discover_once(self) -> None:
        if self._ns_factory is None:
            return
        try:
            self.discover(self._ns_factory().list(prefix=rpc.SECONDARY_PREFIX))
        except Exception as e:
            logger.debug("discovery in the name server failed: {}", e)

    def stop(self) -> None:
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        for t in self._threads:
            t.join(timeout=self.timing.rpc_timeout + 1)
        if self.store is not None:
            self.store.close()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _start_peer(self, name: str) -> None:
        if name in self._started_peers or not self._replicating:
            return
        self._started_peers.add(name)
        self._spawn(f"sender-{name}", self._send_loop, name)
        self._spawn(f"heartbeat-{name}", self._heartbeat_loop, name)

    # -- client operations --------------------------------------------------------------
    @property
    def cluster_size(self) -> int:
        return self.state.cluster_size

    def append(self, message: str, w: int, timeout: float | None = None,
               key: str | None = None) -> dict:
        """Append and wait until w nodes hold the message (raises ReadOnly or
        WriteConcernTimeout). A repeated key appends nothing and waits on the first seq."""
        wait = _Wait() if w > 1 or self.store is not None else None
        with self.cond:
            a = self.state.append(message, w, self.clock(), key, wait)
            if a.created:
                self.cond.notify_all()
        if not a.created:
            logger.info("append with id {!r} repeated: seq={}", key, a.seq)
        return self._await(a.seq, a.acks, a.wait_id, wait, w, timeout)

    def append_many(self, messages: list[str], w: int, timeout: float | None = None) -> dict:
        wait = _Wait() if w > 1 or self.store is not None else None
        with self.cond:
            a = self.state.append_many(messages, w, self.clock(), wait)
            self.cond.notify_all()
        result = self._await(a.seq, a.acks, a.wait_id, wait, w, timeout)
        return {"first_seq": a.seq - len(messages) + 1, **result}

    def _await(self, seq: int, acks: int, wait_id: int | None, wait: "_Wait | None", w: int,
               timeout: float | None) -> dict:
        if wait_id is None or wait is None:          # met already
            return {"seq": seq, "acks": acks, "w": w}
        wait.seq = seq   # read by _answered, which cannot run before we released the lock
        if not wait.event.wait(timeout):
            with self.cond:
                if not wait.event.is_set():      # not released at the very last moment
                    self.state.cancel_wait(wait_id)
                    raise WriteConcernTimeout(seq, self.state.acks(seq), w, timeout or 0)
        return {"seq": seq, "acks": wait.acks, "w": w}

    def messages(self) -> list[str]:
        """What the master's disk holds (an entry not yet synced may still be lost)."""
        with self.cond:
            return self.state.log.messages(self.state.durable)

    def snapshot(self) -> tuple[list[str], int]:
        """(entry list, count) to read without the lock: entries 1..count stay as they are."""
        with self.cond:
            return self.state.log.snapshot(), self.state.durable

    def health(self) -> dict:
        with self.cond:
            report = self.state.health(self.clock())
        report["name"] = "master"
        report["log_id"] = self.log_id
        report["durable"] = None if self.store is None else {
            "data_dir": str(self.store.path), "fsync": self.store.mode, "syncs": self.store.syncs}
        report["recovery"] = self.recovery
        return report

    # -- group commit -------------------------------------------------------------------
    def _flush_loop(self) -> None:
        """Write everything appended since the last round as one record, sync it per the
        fsync mode, then count the master as a holder up to there. While one round syncs,
        the next round's appends gather: one sync serves them all."""
        log, store = self.state.log, self.store
        while True:
            with self.cond:
                while log.last_seq <= self._written and not self._stop.is_set():
                    self.cond.wait()
                if log.last_seq <= self._written:
                    return                                   # stopping, nothing left
                first, last = self._written + 1, log.last_seq
                batch = log.snapshot()[first - 1:last]
                keys = log.take_keys(first, last)
            try:
                store.write(first, batch, keys)
                store.commit()
            except OSError as e:       # a full or failing disk: nothing more is acknowledged
                logger.critical("cannot write seq={}..{} to {}: {}; no further appends are "
                                "acknowledged", first, last, store.path, e)
                with self.cond:
                    self.state.recovering = f"read-only: the master's disk failed: {e}"
                return
            with self.cond:
                self._written = last
                released = self.state.on_durable(last)
                for wait in released:
                    wait.acks = self.state.acks(wait.seq)
            # No notify: the senders ship everything appended, synced here or not, so the
            # master's sync changes nothing they wait for (waking them would cost two
            # greenlet switches per group commit for nothing).
            for wait in released:
                wait.event.set()

    # -- replication ----------------------------------------------------------------------
    def _answered(self, name: str, reply: dict, how: str, sent: int = 0) -> None:
        with self.cond:
            if name not in self.state.peers:     # forgotten meanwhile (it left)
                return
            was_synced = self.state.synced(name)
            restarted, released = self.state.on_answer(
                name, reply["instance"], reply["ack"], self.clock(),
                reply.get("log_id", SAME), reply.get("epoch", SAME), sent)
            for wait in released:
                wait.acks = self.state.acks(wait.seq)
            peer = self.state.peers[name]
            acked, durable, sent = peer.acked, self.state.durable, peer.sent
            synced_now = self.state.synced(name) and not was_synced
            if restarted or how != "replicate" or synced_now:
                self.cond.notify_all()      # a sender may be waiting out a backoff
        for wait in released:
            wait.event.set()
        if restarted:
            logger.warning("{} answered as a new incarnation with ack={}", name, acked)
            add_event("restart", f"{name} answered as a new incarnation with ack={acked}")
        if (restarted or synced_now) and acked < durable:
            self._catching_up[name] = (time.monotonic(), acked)
            logger.info("catching up {} from seq={}: {} messages to send", name, acked + 1,
                        durable - acked)
            add_event("catchup", f"catching up {name} from seq={acked + 1}: "
                                 f"{durable - acked} messages to send")
        elif (restarted or synced_now) and sent:
            logger.info("{} caught up at seq={}: sent {} messages", name, acked, sent)
        elif restarted and name in self._in_flight:
            # A heartbeat met the new incarnation after it had stored the replicate call that
            # is still out to it: that call's answer is the one that says what was sent.
            self._catching_up[name] = (time.monotonic(), None)
        elif name in self._catching_up and acked >= durable and (
                how == "replicate" or self._catching_up[name][1] is not None):
            t0, start = self._catching_up.pop(name)
            lacked = "" if start is None else f" (it lacked {acked - start})"
            logger.info("{} caught up at seq={}: sent {} messages{} in {:.2f} s",
                        name, acked, sent, lacked, time.monotonic() - t0)
            add_event("catchup", f"{name} caught up at seq={acked} in "
                                 f"{time.monotonic() - t0:.2f} s")

    def _send_loop(self, name: str) -> None:
        proxy, proxy_uri = None, None
        with self.cond:
            mine = self.state.peers[name]    # this loop serves this peer while it is known
        while True:
            # Let requests that are ready run first, so they join this batch, not the next.
            time.sleep(0)
            with self.cond:
                while True:
                    if self._stop.is_set() or self.state.peers.get(name) is not mine:
                        if proxy is not None:
                            proxy._pyroRelease()
                        return
                    now = self.clock()
                    batch = self.state.next_batch(name, now)
                    if batch is not None:
                        break
                    wake = self.state.wake_at(name)
                    self.cond.wait(None if wake is None else max(0.001, wake - now))
                uri = self.state.peers[name].uri
            if proxy is None or uri != proxy_uri:
                if proxy is not None:
                    proxy._pyroRelease()
                proxy, proxy_uri = rpc.proxy(uri, self.timing.rpc_timeout), uri
            if isinstance(batch, Sync):
                try:
                    reply = proxy.sync(batch.log_id, batch.history, batch.last_seq, self.new_log)
                except Exception as e:
                    proxy = self._failed(name, proxy, f"sync of {name}", e)
                    continue
                self._answered(name, reply, "sync")
                continue
            first, count = batch.first_seq, len(batch.messages)
            started = time.perf_counter()
            self._in_flight.add(name)
            try:
                reply = proxy.replicate(self.log_id, self.state.epoch, first, batch.messages)
            except Exception as e:  # refused, timed out, remote error: all are retried
                self._in_flight.discard(name)
                self.stats.replicate_failed(name)
                proxy = self._failed(name, proxy, f"replicate to {name} seq={first}.."
                                                  f"{first + count - 1}", e)
                continue
            self.stats.replicate_ok(name, count, time.perf_counter() - started)
            self._answered(name, reply, "replicate", sent=count)
            self._in_flight.discard(name)
            logger.debug("replicate to {} seq={}..{} count={} ack={} in {:.1f} ms", name, first,
                         first + count - 1, count, reply["ack"],
                         (time.perf_counter() - started) * 1000)

    def _failed(self, name: str, proxy: Any, what: str, e: Exception) -> None:
        """A call failed (refused, timed out, remote error): back off, log, drop the proxy."""
        with self.cond:
            if name not in self.state.peers:
                proxy._pyroRelease()
                return None
            wait = self.state.on_failure(name, self.clock(), self.rand)
            failures = self.state.peers[name].failures
        log = logger.warning if failures <= 3 or failures % 20 == 0 else logger.debug
        log("{} failed ({}: {}); retry #{} in {:.2f} s", what, type(e).__name__, e, failures, wait)
        proxy._pyroRelease()
        return None

    def _heartbeat_loop(self, name: str) -> None:
        proxy, proxy_uri, ns = None, None, None
        with self.cond:
            mine = self.state.peers[name]
        while not self._stop.is_set():
            with self.cond:
                if self.state.peers.get(name) is not mine:
                    break
                uri = mine.uri
            if uri is not None:
                if proxy is None or uri != proxy_uri:
                    if proxy is not None:
                        proxy._pyroRelease()
                    proxy, proxy_uri = rpc.proxy(uri, self.timing.heartbeat_timeout), uri
                try:
                    self._answered(name, proxy.heartbeat(self.log_id, self.state.epoch),
                                   "heartbeat")
                except Exception as e:
                    logger.trace("heartbeat to {} failed: {}", name, e)
                    proxy._pyroRelease()
                    proxy = None
                    ns = self._look_up_again(name, ns)
            self._stop.wait(self.timing.heartbeat_interval)
        if proxy is not None:
            proxy._pyroRelease()

    def _look_up_again(self, name: str, ns: Any) -> Any:
        """A silent secondary may have restarted at a new address: ask the name server now,
        so that catch-up starts within a heartbeat instead of at the next discovery."""
        if self._ns_factory is None:
            return None
        try:
            ns = ns or self._ns_factory()
            full = rpc.SECONDARY_PREFIX + name
            registered = ns.list(prefix=full)
            if full in registered:
                self.discover({full: registered[full]})
            return ns
        except Exception as e:
            logger.trace("name server look-up of {} failed: {}", name, e)
            return None

    # -- discovery, health transitions, mode ----------------------------------------------
    def _tick_loop(self) -> None:
        ns = None
        next_discovery = 0.0
        while not self._stop.is_set():
            now = self.clock()
            if self._ns_factory is not None and now >= next_discovery:
                next_discovery = now + self.timing.discovery_interval
                try:
                    ns = ns or self._ns_factory()
                    registered = ns.list(prefix=rpc.SECONDARY_PREFIX)
                    self.discover(registered)
                    self._forget_departed(registered)
                except Exception as e:
                    logger.warning("discovery in the name server failed: {}", e)
                    ns = None
            self._log_transitions()
            self._stop.wait(min(self.timing.heartbeat_interval, self.timing.discovery_interval) / 2)

    def discover(self, registered: dict[str, str]) -> None:
        for full_name, uri in sorted(registered.items()):
            name = full_name[len(rpc.SECONDARY_PREFIX):]
            if tls.enabled() and not self._verified(name, full_name, uri):
                continue
            with self.cond:
                change = self.state.set_uri(name, uri, self.clock())
                if change != "same":
                    self.cond.notify_all()
            if change == "new":
                logger.info("discovered {} at {} (cluster size {})", name, uri, self.cluster_size)
                add_event("discovered", f"discovered {name} (cluster size {self.cluster_size})")
            elif change == "moved":
                logger.info("{} registered again at {}", name, uri)
                add_event("discovered", f"{name} registered again at a new address")
            self._start_peer(name)

    def _forget_departed(self, registered: dict[str, str]) -> None:
        names = {full[len(rpc.SECONDARY_PREFIX):] for full in registered}
        with self.cond:
            gone = self.state.departed(names, self.clock())
            for name in gone:
                self._started_peers.discard(name)
                self._statuses.pop(name, None)
            if gone:
                self.cond.notify_all()        # its loops see that they are done
        for name in gone:
            logger.warning("{} left (unregistered and Unhealthy): forgotten; cluster size {}",
                           name, self.cluster_size)
            add_event("left", f"{name} left: cluster size {self.cluster_size}")

    def _verified(self, name: str, full_name: str, uri: str) -> bool:
        """With TLS: a registration counts as secondary `name` only once the endpoint it
        names has shown name's certificate (checked once per URI; a mismatch is logged once
        and the registration ignored, so it changes neither the peers nor the cluster size)."""
        known = self._checked.get((name, uri))
        if known is None:
            with self.cond:
                peer = self.state.peers.get(name)
                if peer is not None and peer.uri == uri:
                    return True
            parsed = Pyro5.core.URI(uri)
            if not tls.may_be_secondary(name) or parsed.object != full_name:
                known = f"{uri} cannot stand for secondary {name!r}"
            else:   # the daemon there (whatever objects it serves) must show name's certificate
                p = rpc.proxy(f"PYRO:{Pyro5.core.DAEMON_NAME}@{parsed.location}",
                              self.timing.heartbeat_timeout, expect=name)
                try:
                    p._pyroBind()
                    known = ""
                except rpc.PeerMismatch as e:
                    known = str(e)
                except Exception as e:   # not reachable (yet): look again next time
                    logger.debug("could not check the certificate of {} at {}: {}", name, uri, e)
                    return False
                finally:
                    p._pyroRelease()
            self._checked[(name, uri)] = known
            if known:
                logger.warning("ignored the registration of {} at {}: {}", full_name, uri, known)
        return known == ""

    def _log_transitions(self) -> None:
        with self.cond:
            now = self.clock()
            statuses = {name: self.state.status(name, now) for name in self.state.peers}
            mode = self.state.update_mode(now)
            lags = {name: self.state.log.last_seq - p.acked for name, p in self.state.peers.items()}
        for name, status in statuses.items():
            old = self._statuses.get(name)
            if old is not status and not (old is None and status is Status.UNHEALTHY):
                logger.info("{} is {} (was {}), lag={}", name, status.value,
                            old.value if old else "unknown", lags[name])
                add_event("health", f"{name} is {status.value} (was "
                                    f"{old.value if old else 'unknown'}), lag={lags[name]}")
            self._statuses[name] = status
        if mode is not None:
            if mode.ok:
                logger.warning("quorum back ({} of {} nodes): accepting appends again",
                               mode.available, mode.size)
                add_event("mode", f"quorum back ({mode.available} of {mode.size} nodes): "
                                  "accepting appends again")
            else:
                logger.error("read-only: {}", mode.reason())
                add_event("mode", f"read-only: {mode.reason()}")
