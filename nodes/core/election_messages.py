"""What the election cores of two nodes send each other (nodes/core/election.py), and what
a core asks its caller to do: persist, send, heartbeat, change roles (Out)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stored:
    """What must survive a crash: the highest epoch seen and the vote given in it."""
    epoch: int = 0
    voted_for: str | None = None


@dataclass(frozen=True)
class VoteRequest:
    epoch: int
    candidate: str
    rank: tuple[int, int]            # (epoch of the last entry, length): Copy.rank


@dataclass(frozen=True)
class VoteAnswer:
    epoch: int
    voter: str
    granted: bool


@dataclass(frozen=True)
class PreVoteRequest:
    epoch: int                       # the epoch the candidate would stand for: its own + 1
    candidate: str
    rank: tuple[int, int]


@dataclass(frozen=True)
class PreVoteAnswer:
    epoch: int                       # the epoch asked about (the request's)
    voter: str
    granted: bool
    current: int                     # the voter's own epoch


@dataclass
class Out:
    """persist: write and sync this before sending anything in `send`. send: (node, message).
    heartbeat: a master must send a call (stamped `now`) to every other node now."""
    persist: Stored | None = None
    send: list[tuple[str, object]] = field(default_factory=list)
    heartbeat: bool = False
    became_master: bool = False
    stepped_down: bool = False       # was master or candidate, is a secondary now
