"""The master's link to one secondary: its senders (the pipeline) and its heartbeat loop.

    sender-NAME-K   `window` of them: each takes what the state machine says to send next
                    (a Batch after what is already out, or a Sync), makes the call on its own
                    proxy, and reports the answer or the failure. With calls out, a further
                    one goes only once the newest has been out Pipeline.after (see
                    core/calls.py), so a slow secondary gets a call every `after` at most and
                    a fast one gets large batches.
    heartbeat-NAME  a small heartbeat() call every interval; its answer (or its silence)
                    drives the health state, and a restarted secondary's new incarnation shows
                    up here within one interval.
Every loop ends once the secondary is forgotten (it left) or the master stops. Nothing a
call or an answer raises ends a loop: it is logged, counted as a failure, and retried."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from loguru import logger

from ..core.calls import Sync
from ..core.master import SAME
from .shell import Shell


class Conn:
    """One proxy, owned by one loop, reopened when the secondary's address changes."""

    def __init__(self, shell: Shell, timeout: float) -> None:
        self.shell, self.timeout = shell, timeout
        self.proxy: Any = None
        self.uri: str | None = None

    def to(self, uri: str) -> Any:
        if self.proxy is None or uri != self.uri:
            self.close()
            self.proxy, self.uri = self.shell.transport.connect(uri, self.timeout), uri
        return self.proxy

    def close(self) -> None:
        if self.proxy is not None:
            try:
                self.shell.transport.release(self.proxy)
            except Exception as e:
                logger.trace("releasing a proxy to {} failed: {}", self.uri, e)
            self.proxy = None


class Link:
    def __init__(self, shell: Shell, name: str, window: int,
                 on_silent: Callable[[str], None]) -> None:
        self.shell, self.name, self.window = shell, name, window
        self.cond = threading.Condition(shell.lock)
        self.progress = shell.state.secondaries[name]   # served while this one is known
        self._on_silent = on_silent
        self._armed = 0            # senders waiting for the pipeline's delay (see wake)
        self._looking: set[Conn] = set()   # senders back from a call, not yet looking again

    def start(self) -> None:
        for k in range(self.window):
            self.shell.spawn(f"sender-{self.name}-{k}", self._send_loop)
        self.shell.spawn(f"heartbeat-{self.name}", self._heartbeat_loop)

    def alive(self) -> bool:
        """Under the lock: whether this link still serves its secondary."""
        return (not self.shell.stopping.is_set()
                and self.shell.state.secondaries.get(self.name) is self.progress)

    # -- sending ------------------------------------------------------------------------
    def _send_loop(self) -> None:
        conn = Conn(self.shell, self.shell.timing.rpc_timeout)
        try:
            while self._send_one(conn):
                pass
        finally:
            with self.cond:
                self._looking.discard(conn)     # else wake() would wait for it for ever
            conn.close()

    def _next(self, conn: Conn) -> tuple[Any, str, str, int] | None:
        """Wait for something to send: (batch or sync, uri, log id, epoch); None: done."""
        state, clock = self.shell.state, self.shell.clock
        with self.cond:
            self._looking.discard(conn)
            while True:
                if not self.alive():
                    return None
                now = clock()
                batch = state.next_batch(self.name, now)
                if batch is not None:
                    return batch, self.progress.uri, state.log_id, state.epoch
                wake = state.wake_at(self.name)
                armed = bool(self.progress.calls)    # waiting to pipeline behind a call
                if wake is None or (armed and self._armed):
                    # One sender at most waits to pipeline (see wake); the others would
                    # each wake on a timer of their own, for nothing.
                    self.cond.wait()
                    continue
                self._armed += armed
                try:
                    self.cond.wait(max(0.001, wake - now))
                finally:
                    self._armed -= armed

    def _send_one(self, conn: Conn) -> bool:
        # Let requests that are ready run first, so they join this batch, not the next.
        time.sleep(0)
        batch = None
        try:
            taken = self._next(conn)
            if taken is None:
                return False
            batch, uri, log_id, epoch = taken
            fence = self.shell.fence
            kw = {} if fence is None else {"leader": fence.leader()}
            if isinstance(batch, Sync):
                reply = conn.to(uri).sync(batch.log_id, batch.history, batch.last_seq,
                                          self.shell.new_log, **kw)
                self.answered(reply, "sync", call=batch.call, sender=conn)
                return True
            first, count = batch.first_seq, len(batch.messages)
            if fence is not None:      # a secondary that becomes master must know the keys
                with self.cond:
                    keys = self.shell.state.log.keys_between(first, first + count - 1)
                if keys:
                    kw["keys"] = {str(i): k for i, k in keys.items()}   # marshal: str keys
            started = time.perf_counter()
            try:
                reply = conn.to(uri).replicate(log_id, epoch, first, batch.messages, **kw)
            except Exception:
                self.shell.stats.replicate_failed(self.name)
                raise
            took = time.perf_counter() - started
            self.shell.stats.replicate_ok(self.name, count, took)
            self.answered(reply, "replicate", call=batch.call, sent=count, sender=conn)
            logger.debug("replicate to {} seq={}..{} count={} ack={} in {:.1f} ms", self.name,
                         first, first + count - 1, count, reply["ack"], took * 1000)
        except Exception as e:   # refused, timed out, remote error, a bad answer: all retried
            conn.close()
            self._failed(batch, e, conn)
        return True

    def _failed(self, batch: Any, e: Exception, sender: Conn) -> None:
        shell = self.shell
        with self.cond:
            self._looking.add(sender)
            wait = shell.state.on_failure(self.name, shell.clock(), shell.rand,
                                          None if batch is None else batch.call)
            failures = self.progress.failures
        if batch is None:
            what = f"sending to {self.name}"
        elif isinstance(batch, Sync):
            what = f"sync of {self.name}"
        else:
            what = (f"replicate to {self.name} seq={batch.first_seq}.."
                    f"{batch.first_seq + len(batch.messages) - 1}")
        if not isinstance(e, (OSError, ValueError, PermissionError, RuntimeError)) \
                and type(e).__module__.split(".")[0] != "Pyro5":
            # not a failure of the call itself: a defect; say so loudly, and go on
            logger.opt(exception=e).error("{} failed unexpectedly; retry #{} in {:.2f} s",
                                          what, failures, wait)
            return
        quiet = failures > 3 and failures % 20 != 0
        (logger.debug if quiet else logger.warning)(
            "{} failed ({}: {}); retry #{} in {:.2f} s", what, type(e).__name__, e, failures,
            wait)

    def answered(self, reply: dict, how: str, call: int | None = None, sent: int = 0,
                 sender: Conn | None = None) -> None:
        """A call to this secondary answered: tell the state machine, carry out what it says.
        sender: the Conn of the sender that made the call (it looks for more next)."""
        shell = self.shell
        with self.cond:
            if sender is not None:
                self._looking.add(sender)
            restarted = shell.state.on_answer(
                self.name, reply["incarnation"], reply["ack"], shell.clock(),
                reply.get("log_id", SAME), reply.get("epoch", SAME), sent, call, how)
            if restarted or how == "sync":
                self.cond.notify_all()      # the other senders may send now
            ready = shell.take()
        shell.carry_out(ready)

    def wake(self, everyone: bool = False) -> None:
        """Under the lock: something new to send. For an append one idle sender is enough,
        and none while calls are out and either a sender already waits to pipeline behind
        them or the window is full: the sender of a call loops back for what is new when
        it is answered, so an append then costs no wake-up at all. Nor while a sender is
        back from a call and about to look (it yields once first, so that the requests
        ready then join its batch): waking another one then made that one send at once,
        with the first one or two messages (measured at w=3: 2.5 messages per call instead
        of 8, and about a third more of the master's CPU per append). One sender at most
        waits to pipeline, on a timer; the rest wait until woken."""
        if everyone:
            self.cond.notify_all()
            return
        if self._looking:
            return
        calls = self.progress.calls
        if calls and (self._armed or len(calls) >= self.window):
            return
        self.cond.notify()

    # -- heartbeats -----------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        shell = self.shell
        conn = Conn(shell, shell.timing.heartbeat_timeout)
        try:
            while True:
                with self.cond:
                    if not self.alive():
                        return
                    uri, log_id, epoch = self.progress.uri, shell.state.log_id, shell.state.epoch
                if uri is not None:
                    self._beat(conn, uri, log_id, epoch)
                shell.stopping.wait(shell.timing.heartbeat_interval)
        finally:
            conn.close()

    def _beat(self, conn: Conn, uri: str, log_id: str, epoch: int) -> None:
        fence = self.shell.fence
        stamp = self.shell.clock()             # the lease counts from when it was sent
        try:
            if fence is None:
                reply = conn.to(uri).heartbeat(log_id, epoch)
            else:
                reply = conn.to(uri).heartbeat(log_id, epoch, leader=fence.leader())
                fence.answered(self.name, reply, stamp)
        except Exception as e:
            logger.trace("heartbeat to {} failed: {}", self.name, e)
            conn.close()
            self._on_silent(self.name)
            return
        try:
            self.answered(reply, "heartbeat")
        except Exception:     # a malformed answer: a defect somewhere, never silent
            logger.exception("the heartbeat answer of {} could not be taken: {!r}", self.name,
                             reply)
