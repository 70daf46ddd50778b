"""Parts of the secondary (nodes/secondary_node.py): its injected faults (a delay before a
replicate call stores, an error rate after it stores), the reply it publishes for heartbeats,
and what it logs about a sync."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from loguru import logger

from .core.log import SyncResult


class Faults:
    """The injected delay and error rate, changeable while calls are waiting.

    hold() waits until start + the *current* delay: lowering the delay (to 0, say) releases
    calls already waiting at once, instead of leaving them asleep for the old delay. The wait
    is a Condition, so it works on OS threads and, monkey-patched, on greenlets; many calls
    wait at the same time (the lock is released while waiting)."""

    def __init__(self, delay: float = 0.0, error_rate: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.delay = float(delay)
        self.error_rate = float(error_rate)
        self._clock = clock
        self._rand = rand
        self._changed = threading.Condition(threading.Lock())

    def set(self, delay: float | None = None, error_rate: float | None = None) -> None:
        with self._changed:
            if delay is not None:
                self.delay = float(delay)
            if error_rate is not None:
                self.error_rate = float(error_rate)
            self._changed.notify_all()   # waiting calls re-check against the new delay

    def hold(self) -> None:
        """Wait out the injected delay, measured from now (as it is when the wait ends)."""
        start = self._clock()
        with self._changed:
            while True:
                left = start + self.delay - self._clock()
                if left <= 0:
                    return
                self._changed.wait(left)

    def fail_now(self) -> bool:
        """Whether this call should answer with an injected error."""
        return self.error_rate > 0 and self._rand() < self.error_rate


@dataclass(frozen=True)
class Reply:
    """What the secondary holds durably, as heartbeat() and history() report it. A new Reply
    is swapped in (one attribute assignment) after each commit or sync, so readers take it
    without a lock and never wait for a disk sync in progress."""
    incarnation: str
    ack: int          # with a store: only entries already on disk (and synced per --fsync)
    log_id: str | None
    epoch: int
    history: tuple[tuple[int, ...], ...]

    def wire(self) -> dict:
        return {"incarnation": self.incarnation, "ack": self.ack, "log_id": self.log_id,
                "epoch": self.epoch}


def log_sync(log_id: str, old_log_id: str | None, result: SyncResult) -> None:
    """Say what a sync with the master's log threw away, if anything."""
    if result.new_log:
        logger.warning("started over on the master's new log {} (explicit new log): dropped {} "
                       "messages of log {}", log_id, len(result.dropped), old_log_id)
    elif result.dropped:
        logger.warning("cut back to the master's log: dropped seq={}..{} ({} messages the "
                       "master's log does not have; first: {!r})", result.keep + 1,
                       result.keep + len(result.dropped), len(result.dropped),
                       result.dropped[0][:80])
