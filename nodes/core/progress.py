"""What the master knows of one secondary: what it acknowledged, and when to try again."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: the n-th failure in a row waits about
    base * 2**(n-1), at most cap, scaled by a random factor in [0.5, 1)."""
    base: float = 0.05
    cap: float = 2.0

    def delay(self, failures: int, rand: Callable[[], float]) -> float:
        if failures <= 0:
            return 0.0
        raw = min(self.cap, self.base * 2 ** min(failures - 1, 30))
        return raw * (0.5 + rand() / 2)


@dataclass
class Progress:
    """One secondary's replication progress.

    acked is the highest seq the secondary holds with no gap (its ACK). It belongs to one
    incarnation of the secondary: when another incarnation answers (a restart with an empty
    log) acked starts again from what that one says, so retries and catch-up are one path:
    always send from acked + 1.
    """
    acked: int = 0
    instance: str | None = None
    known_since: float | None = None   # when the master learned of it
    log_id: str | None = None          # the log and epoch it last said it follows
    epoch: int = 0
    sent: int = 0                      # messages sent to this incarnation
    failures: int = 0
    retry_at: float = 0.0
    last_answer: float | None = None
    uri: str | None = None

    def on_answer(self, instance: str, ack: int, now: float) -> bool:
        """Record an ACK (from a replicate or a heartbeat); True when it was a new incarnation."""
        restarted = self.instance is not None and instance != self.instance
        if instance != self.instance:
            self.instance = instance
            self.acked = ack
            self.sent = 0
        else:
            # ACKs of one incarnation only grow; a late heartbeat may carry an older one
            self.acked = max(self.acked, ack)
        self.last_answer = now
        self.failures = 0
        self.retry_at = 0.0
        return restarted

    @property
    def seen(self) -> float | None:
        """The last answer, or (never answered) when it became known: the health clock."""
        return self.last_answer if self.last_answer is not None else self.known_since

    def on_failure(self, now: float, backoff: Backoff, rand: Callable[[], float]) -> float:
        self.failures += 1
        wait = backoff.delay(self.failures, rand)
        self.retry_at = now + wait
        return wait
