"""Write concern: w counts the nodes that hold a message, the master included.

The master is always one of the w: it counts once the message is durable on its own disk
(at once when it keeps its log in memory), so every acknowledged write is on the master's
disk, and a master restarting from its disk has lost none."""
from __future__ import annotations

import heapq
from typing import Any, Iterable


class WriteConcernTimeout(Exception):
    """w nodes did not hold the message within the caller's timeout. The message stays in
    the log and keeps replicating; only the wait is given up."""

    def __init__(self, seq: int, acks: int, w: int, timeout: float) -> None:
        super().__init__(f"write concern w={w} not met in {timeout:g} s (acks={acks}); the "
                         "message stays in the log and keeps replicating")
        self.seq, self.acks, self.w = seq, acks, w


def holders(seq: int, acked: Iterable[int], durable: int | float = float("inf")) -> int:
    """How many nodes hold seq: the master (once durable), plus every secondary that
    acknowledged it."""
    return (1 if durable >= seq else 0) + sum(1 for ack in acked if ack >= seq)


def satisfied_up_to(w: int, acked: Iterable[int], durable: int | float = float("inf")
                    ) -> int | float:
    """The highest seq that w nodes hold, the master among them: the master's durable seq,
    capped by the (w-1)-th highest secondary ack."""
    if w <= 1:
        return durable
    ranked = sorted(acked, reverse=True)
    return min(durable, ranked[w - 2] if len(ranked) >= w - 1 else 0)


class Waits:
    """Appends waiting for their write concern, released in seq order per w.

    A token is anything the shell wants back (an event to set); a wait id lets it give up.
    A cancelled wait is forgotten at once (it no longer counts in len()), and its heap
    entry is dropped when it surfaces or, if many pile up behind an unmet seq (a secondary
    that stays down while clients keep timing out), when the heaps are compacted: memory is
    bounded by the live waits, not by every wait ever given up.
    """

    COMPACT_AT = 64   # dead heap entries tolerated before a compaction (and at least as many as live)

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, int]]] = {}
        self._tokens: dict[int, Any] = {}      # live waits: id -> token
        self._next_id = 0
        self._dead = 0                         # heap entries whose wait was cancelled

    def __len__(self) -> int:
        return len(self._tokens)

    def add(self, seq: int, w: int, token: Any) -> int:
        self._next_id += 1
        heapq.heappush(self._heaps.setdefault(w, []), (seq, self._next_id))
        self._tokens[self._next_id] = token
        return self._next_id

    def cancel(self, wait_id: int) -> bool:
        """Forget a wait (its client gave up); False when it was already released."""
        if self._tokens.pop(wait_id, _GONE) is _GONE:
            return False
        self._dead += 1
        if self._dead > max(self.COMPACT_AT, len(self._tokens)):
            for heap in self._heaps.values():
                heap[:] = [entry for entry in heap if entry[1] in self._tokens]
                heapq.heapify(heap)
            self._dead = 0
        return True

    def release(self, acked: list[int], durable: int | float = float("inf")
                ) -> list[tuple[Any, int]]:
        """Pop every wait whose w is now met: (token, seq) pairs."""
        released: list[tuple[Any, int]] = []
        for w, heap in self._heaps.items():
            limit = satisfied_up_to(w, acked, durable)
            while heap and heap[0][0] <= limit:
                seq, wait_id = heapq.heappop(heap)
                token = self._tokens.pop(wait_id, _GONE)
                if token is _GONE:
                    self._dead -= 1
                else:
                    released.append((token, seq))
        return released

    def drain(self) -> list[tuple[Any, int]]:
        """Pop every live wait (the master can no longer meet any write concern)."""
        out = [(self._tokens[i], seq) for heap in self._heaps.values() for seq, i in heap
               if i in self._tokens]
        self._heaps, self._tokens, self._dead = {}, {}, 0
        return out


_GONE = object()
