"""What every part of the master's shell shares: the state machine and the one lock around
it, the clock, the transport, the timings, and how a Ready is carried out.

In a node process every thread is a gevent greenlet (the process is monkey-patched at
startup), but nothing here relies on that: every read and write of shared state is under
`lock`, so the same code is correct on OS threads, which is how the in-process harness
(tests/harness) runs it."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from loguru import logger

from ..core.master import MasterState
from ..core.ready import Ready
from ..metrics import MasterStats
from .report import report
from .transport import Transport


@dataclass(frozen=True)
class Timing:
    rpc_timeout: float = 10.0          # any replicate() call
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 1.0
    discovery_interval: float = 1.0
    startup_wait: float = 2.0          # how long start() waits for every known secondary


class Wait:
    """One append waiting for its write concern: set with the count of holders, or with the
    reason it can no longer be met."""
    __slots__ = ("event", "acks", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.acks = 0
        self.error: str | None = None


class Shell:
    def __init__(self, state: MasterState, timing: Timing, transport: Transport,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random, new_log: bool = False) -> None:
        self.state = state
        self.new_log = new_log     # sync asks secondaries to drop another log (--new-log)
        self.timing = timing
        self.transport = transport
        self.clock = clock
        self.rand = rand
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.stats = MasterStats()           # read by GET /metrics (nodes/metrics.py)
        # With failover, the node's election (nodes/failover/node.py): every call carries
        # fence.leader(), heartbeat answers go to fence.answered() (the lease), and an
        # append needs fence.writable() to be None.
        self.fence: Any = None
        self.me: str | None = None     # with failover, this node's name (never its own secondary)
        self._threads: list[threading.Thread] = []
        self.on_shown: Callable[[int], None] = lambda seq: None   # readers may see more

    def spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self.lock:
            self._threads.append(t)
        t.start()

    def join(self, timeout: float, only: tuple[str, ...] | None = None) -> None:
        """Wait for the threads spawned (only: those of these names) to end."""
        with self.lock:
            threads = [t for t in self._threads if only is None or t.name in only]
        for t in threads:
            t.join(timeout)

    def take(self) -> Ready:
        """Call under the lock, after changing the state; carry the result out after."""
        return self.state.take_ready()

    def carry_out(self, ready: Ready) -> None:
        """Outside the lock: wake the waits released or failed, log what happened."""
        for wait, acks in ready.released:
            wait.acks = acks
            wait.event.set()
        for wait, why in ready.failed:
            wait.error = why
            wait.event.set()
        if ready.shown:
            self.on_shown(ready.shown)
        for event in ready.events:
            try:
                report(event)
            except Exception:   # a log line must never take a sender or a waiter down
                logger.exception("could not report {}", event)
