"""The values replog_client returns: plain frozen dataclasses."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Appended:
    """What an append answered: the batch took seqs ``first_seq``..``seq`` (one message:
    both the same), ``acks`` nodes held it when the answer left, ``w`` was asked for."""
    first_seq: int
    seq: int
    acks: int
    w: int


@dataclass(frozen=True)
class Entry:
    """One message of the log with its seq (its 1-based position in the total order)."""
    seq: int
    message: str


@dataclass(frozen=True)
class Page:
    """A page of ``GET /messages``: ``messages`` hold seqs ``from_seq`` .. ``next - 1``;
    read again from ``next`` for the rest."""
    messages: list[str]
    from_seq: int
    next: int

    def entries(self) -> list[Entry]:
        """The page's messages with their seqs."""
        return [Entry(self.from_seq + i, m) for i, m in enumerate(self.messages)]
