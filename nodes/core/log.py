"""The two logs: the master's (assigns the total order) and a secondary's (dedup + gap hold-back)."""
from __future__ import annotations

from dataclasses import dataclass

from . import history


class MasterLog:
    """Messages in the order the master accepted them; seq is the 1-based position.

    An optional client key makes an append idempotent: the same key returns the first seq.
    Keys are kept for the newest max_keys appends that carried one (older ones are forgotten,
    so memory stays bounded under a client that sends a new key with every write). With
    track_keys, the keys of appends not yet written to disk are kept for take_keys().
    """

    def __init__(self, max_keys: int = 100_000, track_keys: bool = False) -> None:
        self._entries: list[str] = []
        self._by_key: dict[str, int] = {}
        self.max_keys = max_keys
        self._track = track_keys
        self._unwritten_keys: dict[int, str] = {}
        self._key_at: dict[int, str] = {}     # seq -> key of the keys kept (keys_between)

    def load(self, messages: list[str], keys: dict[str, int]) -> None:
        """Start from a stored log (keys: key -> seq, oldest first)."""
        self._entries = list(messages)
        self._by_key = dict(keys)
        self._key_at = {seq: key for key, seq in self._by_key.items()}
        self._forget_old_keys()

    def truncate(self, keep: int) -> None:
        """Keep the first `keep` entries (recovery only, before anything is served)."""
        self._entries = self._entries[:keep]
        self._by_key = {k: s for k, s in self._by_key.items() if s <= keep}
        self._key_at = {s: k for k, s in self._by_key.items()}
        self._unwritten_keys = {s: k for s, k in self._unwritten_keys.items() if s <= keep}

    def _forget_old_keys(self) -> None:
        by_key, key_at = self._by_key, self._key_at
        while len(by_key) > self.max_keys:
            key = next(iter(by_key))
            key_at.pop(by_key.pop(key), None)

    def take_keys(self, first_seq: int, last_seq: int) -> dict[int, str]:
        """Keys of the appends first_seq..last_seq, by index from first_seq, to write them."""
        if not self._unwritten_keys:
            return {}
        out = {}
        for seq in range(first_seq, last_seq + 1):
            key = self._unwritten_keys.pop(seq, None)
            if key is not None:
                out[seq - first_seq] = key
        return out

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
            self._remember(key, seq)
        return seq, True

    def extend(self, messages: list[str], key: str | None = None) -> tuple[int, int]:
        """Append many messages; returns (first_seq, last_seq). A key names the whole batch
        by its last seq (check seq_of() first: extend appends whatever it is given)."""
        first = len(self._entries) + 1
        self._entries.extend(messages)
        last = len(self._entries)
        if key is not None:
            self._remember(key, last)
        return first, last

    def keys_between(self, first_seq: int, last_seq: int) -> dict[int, str]:
        """The keys kept of the appends first_seq..last_seq, by index from first_seq (to
        replicate them with the entries: with failover, a new master must know them)."""
        key_at = self._key_at
        if not key_at:
            return {}
        return {seq - first_seq: key_at[seq] for seq in range(first_seq, last_seq + 1)
                if seq in key_at}

    def keys_upto(self, seq: int) -> dict[str, int]:
        """key -> seq of the keys kept for entries 1..seq, oldest first."""
        return {k: s for k, s in self._by_key.items() if s <= seq}

    def _remember(self, key: str, seq: int) -> None:
        self._by_key[key] = seq
        self._key_at[seq] = key
        if len(self._by_key) > self.max_keys:
            self._forget_old_keys()
        if self._track:
            self._unwritten_keys[seq] = key

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

    def messages(self, upto: int | None = None) -> list[str]:
        return self._entries[:upto] if upto is not None else list(self._entries)

    def snapshot(self) -> list[str]:
        """The entry list itself, for a reader that copies slices of it without the lock:
        entries are only appended (truncate makes a new list)."""
        return self._entries


@dataclass(frozen=True)
class StoreResult:
    ack: int          # highest seq held with no gap before it
    stored: int       # new messages taken (shown now or held back)
    duplicates: int   # messages already held, dropped


class Refused(ValueError):
    """A call the secondary must not obey (another log, a stale epoch, too far ahead)."""


@dataclass(frozen=True)
class SyncResult:
    keep: int                 # entries kept (the ACK after the sync)
    dropped: list[str]        # entries cut off the end: they are not in the master's log
    new_log: bool             # the secondary started over on another log (explicitly asked)


class SecondaryLog:
    """A secondary's copy. Stores by seq, drops duplicates, shows only the gap-free prefix.

    Holding 1, 2 and 4 it shows [1, 2] and holds 4 back until 3 arrives.

    It follows one log (log_id) and knows the epoch history of what it holds. The master
    calls sync() before it replicates: the secondary keeps what it shares with the master's
    log and cuts the rest. A log with another id is adopted only by an empty secondary or on
    the master's explicit new_log; replicate calls must carry the log id and epoch synced.
    """

    def __init__(self, max_ahead: int = 10_000) -> None:
        self.log_id: str | None = None
        self.history: list[list[int]] = []
        self.max_ahead = max_ahead
        self._shown: list[str] = []
        self._held: dict[int, str] = {}

    @property
    def ack(self) -> int:
        return len(self._shown)

    @property
    def epoch(self) -> int:
        return history.last_epoch(self.history)

    @property
    def held_back(self) -> int:
        return len(self._held)

    def load(self, log_id: str | None, hist: list[list[int]], messages: list[str]) -> None:
        self.log_id, self.history, self._shown, self._held = log_id, hist, list(messages), {}

    def sync(self, log_id: str, master_history: list[list[int]], master_len: int,
             new_log: bool = False) -> SyncResult:
        """Agree with the master's log: keep the common prefix, cut what differs, take the
        master's history. Raises Refused for another log without new_log."""
        if not history.valid(master_history) or not master_history:
            raise Refused("malformed epoch history")
        started_over = False
        if log_id != self.log_id and self._shown and not new_log:
            raise Refused(f"this secondary holds log {self.log_id} ({len(self._shown)} messages); "
                          f"refusing log {log_id} without an explicit new log")
        if log_id != self.log_id:
            keep, started_over = 0, self.log_id is not None
        else:
            keep = history.common_prefix(self.history, len(self._shown), master_history,
                                         master_len)
        dropped = self._shown[keep:]
        self._shown = self._shown[:keep]      # a new list: readers of the old one are safe
        self._held = {}
        self.log_id, self.history = log_id, [list(p) for p in master_history]
        return SyncResult(keep, dropped, started_over)

    def check(self, log_id: object, epoch: object, first_seq: int) -> None:
        """Refuse a replicate call that is not for the log and epoch synced, or too far ahead
        (the hold-back map must stay bounded)."""
        if log_id != self.log_id or epoch != self.epoch:
            raise Refused(f"not synced with log {log_id} epoch {epoch} (this secondary follows "
                          f"log {self.log_id} epoch {self.epoch}); the master must sync first")
        if first_seq > len(self._shown) + 1 + self.max_ahead:
            raise Refused(f"first_seq {first_seq} is more than {self.max_ahead} past the ack "
                          f"{len(self._shown)}")

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

    def shown_since(self, first_seq: int) -> list[str]:
        return self._shown[first_seq - 1:]

    def snapshot(self) -> list[str]:
        """The shown list itself (see MasterLog.snapshot)."""
        return self._shown


class KeyBook:
    """A secondary's copy of the master's idempotency keys (failover: the node that becomes
    master must answer a retried key with its first seq, not append it again). by_key: key
    -> seq of the newest max_keys keys written to disk; pending: seq -> key received with
    entries not yet written."""

    def __init__(self, max_keys: int, keys: dict[str, int] | None = None) -> None:
        self.max_keys = max_keys
        self.by_key: dict[str, int] = dict(keys or {})
        self.pending: dict[int, str] = {}

    def received(self, first_seq: int, keys: object, floor: int) -> None:
        """Keys by index (as text) from first_seq, as a replicate call carries them; those
        of entries already written (seq <= floor) are dropped. Raises ValueError."""
        if not keys:
            return
        if not isinstance(keys, dict):
            raise ValueError("keys must map an index to a key")
        for index, key in keys.items():
            seq = first_seq + int(index)
            if not isinstance(key, str) or int(index) < 0:
                raise ValueError(f"bad key {key!r} at index {index!r}")
            if seq > floor:
                self.pending[seq] = key

    def take(self, first_seq: int, last_seq: int) -> dict[int, str]:
        """Entries first_seq..last_seq are being written: their keys (by index from
        first_seq), now counted as held."""
        if not self.pending:
            return {}
        out = {}
        for seq in range(first_seq, last_seq + 1):
            key = self.pending.pop(seq, None)
            if key is not None:
                out[seq - first_seq] = key
                self.by_key.pop(key, None)
                self.by_key[key] = seq
        while len(self.by_key) > self.max_keys:
            del self.by_key[next(iter(self.by_key))]
        return out

    def cut(self, keep: int) -> None:
        self.by_key = {k: s for k, s in self.by_key.items() if s <= keep}
        self.pending = {s: k for s, k in self.pending.items() if s <= keep}
