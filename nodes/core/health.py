"""Health of each secondary from the age of its last answer, and the quorum rule."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(str, Enum):
    HEALTHY = "Healthy"
    SUSPECTED = "Suspected"
    UNHEALTHY = "Unhealthy"


@dataclass(frozen=True)
class HealthPolicy:
    suspect_after: float = 1.5     # seconds without an answer before Suspected
    unhealthy_after: float = 5.0   # seconds without an answer before Unhealthy

    def __post_init__(self) -> None:
        if not 0 < self.suspect_after <= self.unhealthy_after:
            raise ValueError("need 0 < suspect_after <= unhealthy_after")

    def answering(self, seen: float | None, now: float) -> bool:
        """Counts toward the quorum: heard from (or learned of) within unhealthy_after."""
        return seen is not None and now - seen < self.unhealthy_after

    def status(self, last_answer: float | None, now: float,
               known_since: float | None = None) -> Status:
        """Healthy while answering, Suspected after missed heartbeats, then Unhealthy.

        A secondary the master has not heard from yet is unknown, not unreachable: it is
        Suspected until unhealthy_after has passed since the master learned of it (so a
        master that starts before its secondaries answer is not read-only for that moment,
        and one whose secondaries are all down still turns read-only in unhealthy_after)."""
        if last_answer is None:
            if known_since is not None and now - known_since < self.unhealthy_after:
                return Status.SUSPECTED
            return Status.UNHEALTHY
        age = now - last_answer
        if age < self.suspect_after:
            return Status.HEALTHY
        if age < self.unhealthy_after:
            return Status.SUSPECTED
        return Status.UNHEALTHY


@dataclass(frozen=True)
class Quorum:
    size: int       # nodes in the cluster, the master included
    needed: int     # a majority of them
    available: int  # the master plus the secondaries that are Healthy or Suspected

    @property
    def ok(self) -> bool:
        return self.available >= self.needed

    def reason(self) -> str | None:
        if self.ok:
            return None
        return (f"no quorum: {self.available} of {self.size} nodes reachable, "
                f"{self.needed} needed")


def majority(size: int) -> int:
    return size // 2 + 1


def quorum(statuses: list[Status]) -> Quorum:
    """The master counts; a Suspected secondary still counts (it may just be slow)."""
    size = 1 + len(statuses)
    available = 1 + sum(1 for s in statuses if s is not Status.UNHEALTHY)
    return Quorum(size=size, needed=majority(size), available=available)
