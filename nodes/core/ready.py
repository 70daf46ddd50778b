"""What the master's state machine says happened, for the shell to carry out and log.

As etcd raft's Ready: the core decides, records the outcome here, and the shell takes it
(under the lock) and acts on it (outside the lock): wake the waits released, fail the waits
that can no longer succeed, write the log lines and dashboard events."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One thing worth a log line. kind is one of KINDS; the fields depend on it."""
    kind: str
    name: str | None = None          # the secondary it concerns, if any
    fields: dict[str, Any] = field(default_factory=dict)


# kind -> the fields it carries
KINDS = {
    "restart": ("acked_seq",),                          # a new incarnation answered
    "catchup": ("from_seq", "count"),                   # it lacks count entries
    "caught_up": ("acked_seq", "sent", "lacked", "seconds"),   # lacked/seconds may be None
    "health": ("old", "new", "lag"),                    # a status transition
    "mode": ("ok", "available", "size", "reason"),      # read-only on or off
    "discovered": ("uri", "size"),
    "moved": ("uri",),
    "left": ("size",),
    "disk_failed": ("reason", "failed_waits"),
    "deposed": ("reason", "failed_waits"),              # failover: a later epoch began
}


@dataclass
class Ready:
    released: list[tuple[Any, int]] = field(default_factory=list)   # (token, acks)
    failed: list[tuple[Any, str]] = field(default_factory=list)     # (token, why)
    events: list[Event] = field(default_factory=list)
    shown: int = 0          # the shown prefix grew to this seq (0: unchanged)

    def __bool__(self) -> bool:
        return bool(self.released or self.failed or self.events or self.shown)
