"""The running master: drives the pure MasterState with threads, a clock and Pyro5.

Threads (each owns its own Pyro5 proxies; a proxy belongs to one thread):
  sender-NAME     one per secondary: ships everything after the secondary's ACK in one
                  replicate() call, waits for the ACK, repeats; backs off on failure.
  heartbeat-NAME  one per secondary: a small heartbeat() call every interval; its answer
                  (or its silence) drives the health state, and a restarted secondary's
                  new incarnation shows up here within one interval.
  tick            discovery in the name server, health transitions and read-only mode.
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

from loguru import logger

from . import rpc
from .core.health import HealthPolicy, Status
from .core.master import MasterState
from .core.progress import Backoff


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


class Master:
    def __init__(self, named: list[str], policy: HealthPolicy, backoff: Backoff,
                 timing: Timing, ns_factory: Callable[[], Any] | None,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random, max_batch: int = 10_000) -> None:
        self.state = MasterState(policy, backoff, named, max_batch=max_batch)
        self.timing = timing
        self.log_id = uuid.uuid4().hex
        self.clock = clock
        self.rand = rand
        self.cond = threading.Condition()
        self._ns_factory = ns_factory
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_peers: set[str] = set()
        self._statuses: dict[str, Status] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        with self.cond:
            names = list(self.state.peers)
        for name in names:
            self._start_peer(name)
        self._spawn("tick", self._tick_loop)

    def stop(self) -> None:
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        for t in self._threads:
            t.join(timeout=self.timing.rpc_timeout + 1)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _start_peer(self, name: str) -> None:
        if name in self._started_peers:
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
        wait = _Wait() if w > 1 else None
        with self.cond:
            a = self.state.append(message, w, self.clock(), key, wait)
            if a.created:
                self.cond.notify_all()
        if not a.created:
            logger.info("append with id {!r} repeated: seq={}", key, a.seq)
        return self._await(a.seq, a.acks, a.wait_id, wait, w, timeout)

    def append_many(self, messages: list[str], w: int, timeout: float | None = None) -> dict:
        wait = _Wait() if w > 1 else None
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
        with self.cond:
            return self.state.log.messages()

    def health(self) -> dict:
        with self.cond:
            report = self.state.health(self.clock())
        report["name"] = "master"
        report["log_id"] = self.log_id
        return report

    # -- replication ----------------------------------------------------------------------
    def _answered(self, name: str, reply: dict, how: str) -> None:
        with self.cond:
            restarted, released = self.state.on_answer(name, reply["instance"], reply["ack"],
                                                       self.clock())
            for wait in released:
                wait.acks = self.state.acks(wait.seq)
            acked = self.state.peers[name].acked
            if restarted or how == "heartbeat":
                self.cond.notify_all()      # a sender may be waiting out a backoff
        for wait in released:
            wait.event.set()
        if restarted:
            logger.warning("{} answered as a new incarnation with ack={}: catching up from seq={}",
                           name, acked, acked + 1)

    def _send_loop(self, name: str) -> None:
        proxy, proxy_uri = None, None
        while True:
            # Let requests that are ready run first, so they join this batch, not the next.
            time.sleep(0)
            with self.cond:
                while True:
                    if self._stop.is_set():
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
            first, count = batch.first_seq, len(batch.messages)
            started = time.perf_counter()
            try:
                reply = proxy.replicate(self.log_id, first, batch.messages)
            except Exception as e:  # refused, timed out, remote error: all are retried
                with self.cond:
                    wait = self.state.on_failure(name, self.clock(), self.rand)
                    failures = self.state.peers[name].failures
                log = logger.warning if failures <= 3 or failures % 20 == 0 else logger.debug
                log("replicate to {} seq={}..{} failed ({}: {}); retry #{} in {:.2f} s", name,
                    first, first + count - 1, type(e).__name__, e, failures, wait)
                proxy._pyroRelease()
                proxy = None
                continue
            self._answered(name, reply, "replicate")
            logger.debug("replicate to {} seq={}..{} count={} ack={} in {:.1f} ms", name, first,
                         first + count - 1, count, reply["ack"],
                         (time.perf_counter() - started) * 1000)

    def _heartbeat_loop(self, name: str) -> None:
        proxy, proxy_uri, ns = None, None, None
        while not self._stop.is_set():
            with self.cond:
                uri = self.state.peers[name].uri
            if uri is not None:
                if proxy is None or uri != proxy_uri:
                    if proxy is not None:
                        proxy._pyroRelease()
                    proxy, proxy_uri = rpc.proxy(uri, self.timing.heartbeat_timeout), uri
                try:
                    self._answered(name, proxy.heartbeat(self.log_id), "heartbeat")
                except Exception as e:
                    logger.trace("heartbeat to {} failed: {}", name, e)
                    proxy._pyroRelease()
                    proxy = None
                    ns = self._look_up_again(name, ns)
            self._stop.wait(self.timing.heartbeat_interval)

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
                    self.discover(ns.list(prefix=rpc.SECONDARY_PREFIX))
                except Exception as e:
                    logger.warning("discovery in the name server failed: {}", e)
                    ns = None
            self._log_transitions()
            self._stop.wait(min(self.timing.heartbeat_interval, self.timing.discovery_interval) / 2)

    def discover(self, registered: dict[str, str]) -> None:
        for full_name, uri in sorted(registered.items()):
            name = full_name[len(rpc.SECONDARY_PREFIX):]
            with self.cond:
                change = self.state.set_uri(name, uri)
                if change != "same":
                    self.cond.notify_all()
            if change == "new":
                logger.info("discovered {} at {} (cluster size {})", name, uri, self.cluster_size)
            elif change == "moved":
                logger.info("{} registered again at {}", name, uri)
            self._start_peer(name)

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
            self._statuses[name] = status
        if mode is not None:
            if mode.ok:
                logger.warning("quorum back ({} of {} nodes): accepting appends again",
                               mode.available, mode.size)
            else:
                logger.error("read-only: {}", mode.reason())
