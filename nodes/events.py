"""The event feed a node keeps for its dashboard: health changes, read-only on and off,
discoveries, restarts, catch-ups, recoveries, fault changes.

Anyone in a node process publishes with one call, next to the log line that says the same:

    from nodes.events import add_event
    add_event("health", "secondary2 is Suspected (was Healthy)")

The feed keeps the newest `size` events in memory (nothing on disk: it is a view, the log
lines are the record). Each event has an increasing id, so a reader asks for what came after
the last id it saw: GET /cluster?after=ID on the master.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class Feed:
    def __init__(self, size: int = 200, clock: Callable[[], float] = time.time) -> None:
        self._events: deque[dict] = deque(maxlen=size)
        self._last_id = 0
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, kind: str, text: str) -> dict:
        with self._lock:
            self._last_id += 1
            event = {"id": self._last_id, "time": round(self._clock(), 3), "kind": kind,
                     "text": text}
            self._events.append(event)
        return event

    def since(self, after: int = 0) -> list[dict]:
        """Events with an id above `after`, oldest first (at most the feed's size)."""
        with self._lock:
            if after >= self._last_id:
                return []
            return [e for e in self._events if e["id"] > after]

    @property
    def last_id(self) -> int:
        return self._last_id


FEED = Feed()


def add_event(kind: str, text: str) -> dict:
    """Publish an event to this process's feed (cheap: a lock and a deque append)."""
    return FEED.add(kind, text)
