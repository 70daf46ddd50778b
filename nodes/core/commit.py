"""Which entries a node shows readers, for failover (nodes/core/election.py elects).

A node shows readers only the first `commit` entries: a master advances
commit to the highest seq a majority holds whose entry is of its own epoch (Raft's rule:
an older epoch's entry is committed only by a newer one above it); secondaries take the
master's commit, capped by what they have verified matches the master's log. Entries
beyond commit may be cut, and no seq ever shows two messages.
"""
from __future__ import annotations

from typing import Callable, Iterable


def commit_index(old: int, cluster: int, own_len: int, acked: Iterable[int],
                 epoch_at: Callable[[int], int], epoch: int) -> int:
    """The master's commit: the highest seq that a majority of the `cluster` nodes hold
    (own_len for itself, `acked` for the secondaries of this epoch that answered; the others
    hold nothing that counts), if its entry is of this master's own epoch. Never lower."""
    held = sorted([own_len, *acked], reverse=True) + [0] * cluster
    n = held[cluster // 2]            # the majority-th highest
    return n if n > old and epoch_at(n) == epoch else old


def shown_by_secondary(old: int, master_commit: int, verified: int) -> int:
    """A secondary's commit: the master's, but only over entries it has verified match the
    master's log (the consistency check passed up to `verified`). Never lower."""
    return max(old, min(master_commit, verified))
