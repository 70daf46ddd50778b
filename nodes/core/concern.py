"""Write concern: w counts the nodes that hold a message, the master included."""
from __future__ import annotations

import heapq
from typing import Any, Iterable


def holders(seq: int, acked: Iterable[int]) -> int:
    """How many nodes hold seq: the master, plus every secondary that acknowledged it."""
    return 1 + sum(1 for ack in acked if ack >= seq)


def satisfied_up_to(w: int, acked: Iterable[int]) -> int | float:
    """The highest seq that w nodes hold: the (w-1)-th highest secondary ack (w=1: all)."""
    if w <= 1:
        return float("inf")
    ranked = sorted(acked, reverse=True)
    return ranked[w - 2] if len(ranked) >= w - 1 else 0


class Waits:
    """Appends waiting for their write concern, released in seq order per w.

    A token is anything the shell wants back (an event to set); a wait id lets it give up.
    """

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, int, Any]]] = {}
        self._next_id = 0
        self._cancelled: set[int] = set()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, seq: int, w: int, token: Any) -> int:
        self._next_id += 1
        heapq.heappush(self._heaps.setdefault(w, []), (seq, self._next_id, token))
        self._count += 1
        return self._next_id

    def cancel(self, wait_id: int) -> None:
        """Forget a wait (its client gave up); it is dropped when it would be released."""
        self._cancelled.add(wait_id)

    def release(self, acked: list[int]) -> list[Any]:
        """Pop and return the tokens of every wait whose w is now met."""
        released: list[Any] = []
        for w, heap in self._heaps.items():
            limit = satisfied_up_to(w, acked)
            while heap and heap[0][0] <= limit:
                _, wait_id, token = heapq.heappop(heap)
                self._count -= 1
                if wait_id in self._cancelled:
                    self._cancelled.discard(wait_id)
                else:
                    released.append(token)
        return released
