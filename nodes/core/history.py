"""Epochs: which master incarnation wrote which part of the log, so two copies can be compared.

Every start of a master begins a new epoch. The history of a log is a list of
(epoch, start_seq) pairs, epochs increasing, start seqs non-decreasing: the entries from
start_seq on (up to the next pair's start) were written by the master of that epoch. Within
one epoch a master only appends, so two copies that agree on the epoch of seq s hold the same
entries 1..s (Kafka's leader-epoch checkpoints and Raft's log matching rest on the same fact).

All functions here are pure: a history is a list of [epoch, start_seq] pairs.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

History = list[list[int]]


def epoch_at(history: Sequence[Sequence[int]], seq: int) -> int:
    """The epoch that wrote seq (0 before the first pair: nothing wrote it)."""
    starts = [start for _, start in history]
    i = bisect_right(starts, seq) - 1
    return history[i][0] if i >= 0 else 0


def last_epoch(history: Sequence[Sequence[int]]) -> int:
    return history[-1][0] if history else 0


def common_prefix(a: Sequence[Sequence[int]], a_len: int,
                  b: Sequence[Sequence[int]], b_len: int) -> int:
    """How many leading entries two copies (history, length) certainly share.

    Seq s is the same in both when both say the same epoch wrote it; and then so is every
    seq before it. So the answer is the largest s <= min(a_len, b_len) with equal epochs.
    Only the seqs where either history changes epoch need checking.
    """
    top = min(a_len, b_len)
    if top <= 0:
        return 0
    if epoch_at(a, top) == epoch_at(b, top):
        return top
    # The answer lies just before some start point of either history: check each, highest first.
    points = sorted({start - 1 for _, start in list(a) + list(b) if 0 < start - 1 < top},
                    reverse=True)
    for s in points:
        if epoch_at(a, s) == epoch_at(b, s):
            return s
    return 0


def cut(history: Sequence[Sequence[int]], length: int) -> History:
    """The history of the first `length` entries: pairs of epochs that wrote none of them
    are dropped."""
    return [[e, s] for e, s in history if s <= length]


def begin_epoch(history: Sequence[Sequence[int]], length: int, epoch: int) -> History:
    """Epoch `epoch` (higher than any seen anywhere) starts writing at seq length + 1."""
    if epoch <= last_epoch(history):
        raise ValueError(f"epoch {epoch} is not above {last_epoch(history)}")
    return cut(history, length) + [[epoch, length + 1]]


def valid(history: object) -> bool:
    """A well-formed history: a list of [epoch, start] int pairs, both strictly/weakly rising."""
    if not isinstance(history, (list, tuple)):
        return False
    prev_e, prev_s = 0, 1
    for pair in history:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)):
            return False
        e, s = pair
        if e <= prev_e or s < prev_s:
            return False
        prev_e, prev_s = e, s
    return True
