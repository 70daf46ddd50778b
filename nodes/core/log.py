"""The two logs: the master's (assigns the total order) and a replica's (dedup + gap hold-back)."""
from __future__ import annotations

from dataclasses import dataclass


class MasterLog:
    """Messages in the order the master accepted them; seq is the 1-based position.

    An optional client key makes an append idempotent: the same key returns the first seq.
    """

    def __init__(self) -> None:
        self._entries: list[str] = []
        self._by_key: dict[str, int] = {}

    @property
    def last_seq(self) -> int:
        return len(self._entries)

    def seq_of(self, key: str) -> int | None:
        return self._by_key.get(key)

    def append(self, message: str, key: str | None = None) -> tuple[int, bool]:
        """Append one message; returns (seq, created). created is False for a repeated key."""
        if key is not None:
            seq = self._by_key.get(key)
            if seq is not None:
                return seq, False
        self._entries.append(message)
        seq = len(self._entries)
        if key is not None:
            self._by_key[key] = seq
        return seq, True

    def extend(self, messages: list[str]) -> tuple[int, int]:
        """Append many messages; returns (first_seq, last_seq)."""
        first = len(self._entries) + 1
        self._entries.extend(messages)
        return first, len(self._entries)

    def entries(self, first_seq: int, max_count: int, max_bytes: int) -> list[str]:
        """Up to max_count entries from first_seq on, stopping once max_bytes (of text) is
        reached; always at least one entry when any exists at first_seq."""
        start = first_seq - 1
        batch = self._entries[start:start + max_count]
        total = 0
        for i, message in enumerate(batch):
            total += len(message)
            if total > max_bytes and i > 0:
                return batch[:i]
        return batch

    def messages(self) -> list[str]:
        return list(self._entries)


@dataclass(frozen=True)
class StoreResult:
    ack: int          # highest seq held with no gap before it
    stored: int       # new messages taken (shown now or held back)
    duplicates: int   # messages already held, dropped


class ReplicaLog:
    """A secondary's copy. Stores by seq, drops duplicates, shows only the gap-free prefix.

    Holding 1, 2 and 4 it shows [1, 2] and holds 4 back until 3 arrives. A log id names the
    master's log: a message from a log with another id (a restarted master) starts the
    replica afresh, so seqs of two different logs are never mixed.
    """

    def __init__(self) -> None:
        self.log_id: str | None = None
        self._shown: list[str] = []
        self._held: dict[int, str] = {}

    @property
    def ack(self) -> int:
        return len(self._shown)

    @property
    def held_back(self) -> int:
        return len(self._held)

    def adopt(self, log_id: str) -> bool:
        """Follow the master's log with this id; True when that meant starting afresh."""
        if log_id == self.log_id:
            return False
        reset = self.log_id is not None
        self.log_id = log_id
        self._shown = []
        self._held = {}
        return reset

    def store(self, first_seq: int, messages: list[str]) -> StoreResult:
        """Store messages[i] at seq first_seq + i."""
        shown = self._shown
        duplicates = 0
        # Drop the part of the batch that is already shown (a retry or a late duplicate).
        skip = len(shown) - first_seq + 1
        if skip > 0:
            duplicates = min(skip, len(messages))
            messages = messages[skip:]
            first_seq += skip
        stored = 0
        if messages and first_seq == len(shown) + 1 and not self._held:
            shown.extend(messages)  # the common case: the next run, in order
            stored = len(messages)
        else:
            for offset, message in enumerate(messages):
                seq = first_seq + offset
                if seq in self._held:
                    duplicates += 1
                else:
                    self._held[seq] = message
                    stored += 1
            self._release_held()
        return StoreResult(ack=len(shown), stored=stored, duplicates=duplicates)

    def _release_held(self) -> None:
        held, shown = self._held, self._shown
        while held:
            message = held.pop(len(shown) + 1, None)
            if message is None:
                break
            shown.append(message)

    def messages(self) -> list[str]:
        return list(self._shown)
