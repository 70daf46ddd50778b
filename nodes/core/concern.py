"""Write concern: w counts the nodes that hold a message, the master included.

The master is always one of the w: it counts once the message is durable on its own disk
(at once when it keeps its log in memory), so every acknowledged write is on the master's
disk, and a master restarting from its disk has lost none."""
from __future__ import annotations

import heapq
from typing import Any, Iterable


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

    def release(self, acked: list[int], durable: int | float = float("inf")) -> list[Any]:
        """Pop and return the tokens of every wait whose w is now met."""
        released: list[Any] = []
        for w, heap in self._heaps.items():
            limit = satisfied_up_to(w, acked, durable)
            while heap and heap[0][0] <= limit:
                _, wait_id, token = heapq.heappop(heap)
                self._count -= 1
                if wait_id in self._cancelled:
                    self._cancelled.discard(wait_id)
                else:
                    released.append(token)
        return released
