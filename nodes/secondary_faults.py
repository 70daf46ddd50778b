"""Parts of the secondary (nodes/secondary_node.py): its injected faults (a delay before a
replicate call stores, an error rate after it stores)."""
from __future__ import annotations

import random
import threading
import time
from typing import Callable


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
