"""What the master knows of one secondary: what it acknowledged, what is out to it, and
when to try again."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .health import Status


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


RETIRED_KEPT = 4   # earlier incarnations remembered, so that their late answers are ignored


@dataclass
class Progress:
    """One secondary's replication progress.

    acked is the highest seq the secondary holds with no gap (its ACK). It belongs to one
    incarnation of the secondary: when another incarnation answers (a restart with an empty
    log) acked starts again from what that one says, so retries and catch-up are one path:
    always send from acked + 1. Several replicate calls may be out at once (pipelining):
    `calls` maps each call out to when it was sent, and sent_upto is the last seq they carry.
    """
    acked: int = 0
    incarnation: str | None = None
    retired: tuple[str, ...] = ()      # earlier incarnations
    known_since: float | None = None   # when the master learned of it
    log_id: str | None = None          # the log and epoch it last said it follows
    epoch: int = 0
    sent: int = 0                      # messages sent to this incarnation
    failures: int = 0
    retry_at: float = 0.0
    last_answer: float | None = None
    uri: str | None = None
    calls: dict[int, float] = field(default_factory=dict)   # call id -> sent at
    sent_upto: int = 0
    resend_after: float = 0.0          # a restart learned with calls out: no call before this
    catchup_since: float | None = None  # a catch-up being reported: since when,
    catchup_from: int | None = None     # and the ack it started from (None: unknown)
    reported: Status | None = None      # the health status last reported

    def on_answer(self, incarnation: str, ack: int, now: float,
                  grace: float = 0.0) -> bool | None:
        """Record an ACK (from a replicate or a heartbeat); True when it was a new
        incarnation, None when it came from an earlier one (ignored). A new incarnation
        learned with calls out: no call before `grace` has passed (Pipeline.grace)."""
        if incarnation in self.retired:
            return None
        restarted = self.incarnation is not None and incarnation != self.incarnation
        if incarnation != self.incarnation:
            if self.incarnation is not None:
                self.retired = (self.retired + (self.incarnation,))[-RETIRED_KEPT:]
            self.incarnation = incarnation
            self.acked = ack
            self.sent = 0
            self.sent_upto = ack
            if self.calls:
                self.resend_after = now + grace
        else:
            # ACKs of one incarnation only grow; a late heartbeat may carry an older one
            self.acked = max(self.acked, ack)
        self.last_answer = now
        self.failures = 0
        self.retry_at = 0.0
        return restarted

    @property
    def next_seq(self) -> int:
        """The first seq not yet out to this secondary."""
        return max(self.acked, self.sent_upto) + 1

    def call_ended(self, call: int | None, failed: bool) -> None:
        if call is not None:
            self.calls.pop(call, None)
        if failed or not self.calls:
            # Nothing out (or a call lost): send again from the ACK; what was in the other
            # calls arrives twice at worst, and the secondary drops duplicates.
            self.sent_upto = self.acked

    @property
    def seen(self) -> float | None:
        """The last answer, or (never answered) when it became known: the health clock."""
        return self.last_answer if self.last_answer is not None else self.known_since

    def on_failure(self, now: float, backoff: Backoff, rand: Callable[[], float]) -> float:
        self.failures += 1
        wait = backoff.delay(self.failures, rand)
        self.retry_at = now + wait
        return wait
