"""Which log a starting master serves: its own, a longer one a secondary holds, or a new one.

A master starts by asking every secondary it knows what it holds. It then serves the most
recent copy (Raft's rule: the highest epoch at the last entry, then the longest) among its
own and those that answered, fetching what it lacks. A master with nothing on disk (a lost
disk, or a log kept in memory) must not start a new log while a secondary that did not
answer may hold the real one, so it waits for every known secondary, or, after a while, for
enough of them to form a quorum with itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import history as hist


@dataclass(frozen=True)
class Copy:
    """What one node holds: its log id (None: nothing), epoch history and length."""
    name: str
    log_id: str | None
    history: list[list[int]]
    length: int

    @property
    def empty(self) -> bool:
        return self.log_id is None or self.length == 0

    @property
    def rank(self) -> tuple[int, int]:
        """Raft's up-to-date rule: the higher epoch at the last entry wins, then the longer."""
        return hist.epoch_at(self.history, self.length), self.length


@dataclass(frozen=True)
class Plan:
    action: str                 # "serve", "new", "wait"
    source: Copy | None = None  # serve: the copy to serve (the master's own, or a secondary's)
    keep: int = 0               # serve: entries of the master's own log that stay
    epoch: int = 0              # serve/new: the epoch the master begins
    reason: str = ""            # wait: why; serve/new: a sentence for the log


def plan(own: Copy, answers: list[Copy], known: int, waited: bool, new_log: bool) -> Plan:
    """own: the master's disk. answers: the secondaries that answered, of `known` known.
    waited: the recovery wait is over (accept a quorum instead of every secondary)."""
    top_epoch = max([hist.last_epoch(c.history) for c in [own] + answers] + [0])
    if new_log:
        return Plan("new", epoch=1, reason="a new log, as asked (--new-log)")
    if own.empty:
        missing = known - len(answers)
        quorum_answers = (known + 1) // 2      # secondaries that make a majority with us
        if missing > 0 and not (waited and len(answers) >= quorum_answers):
            need = "every known secondary" if not waited else f"{quorum_answers} secondaries"
            return Plan("wait", reason=f"recovering: this master has no log on disk and waits "
                                       f"for {need} to answer ({len(answers)} of {known} have)")
        logs = {c.log_id for c in answers if not c.empty}
        if not logs:
            return Plan("new", epoch=1, reason=f"no node holds a log ({len(answers)} of {known} "
                                               "secondaries answered, all empty): a new log")
        if len(logs) > 1:
            return Plan("wait", reason=f"recovering: secondaries hold different logs "
                                       f"{sorted(logs)}; start the master with --new-log or "
                                       "empty the secondaries that are wrong")
        candidates = [c for c in answers if not c.empty]
    else:
        candidates = [own] + [c for c in answers if c.log_id == own.log_id and not c.empty]
    best = max(candidates, key=lambda c: c.rank)
    keep = hist.common_prefix(own.history, own.length, best.history, best.length) \
        if own.log_id == best.log_id else 0
    return Plan("serve", source=best, keep=keep, epoch=top_epoch + 1,
                reason=f"serving log {best.log_id} from {best.name} ({best.length} messages, "
                       f"epoch {top_epoch + 1} begins)")
