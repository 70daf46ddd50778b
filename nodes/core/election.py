"""Election and fencing: who is master of which epoch, and when a master may accept writes.

A clock-free state machine per node, as etcd raft's: the caller passes `now` (its own
monotonic clock) and a `rand` in, hands it every message that carries an epoch, and carries
out what each call returns (an `Out`): first write `Out.persist` to disk and sync it, then
send `Out.send`. Nothing here sleeps, talks or stores.

The cluster: the voters named at start (`Cluster.nodes`), fixed for the life of the log; a
majority is size // 2 + 1 of them, down or not (docs/failover.md, "The cluster").

The rules (Raft's, in replog's words; docs/failover.md has the safety argument):

* Epoch. Every message between nodes carries the sender's epoch. A node that sees a higher
  epoch takes it (forgetting its vote) and, if it was master or candidate, is a secondary
  at once. A message with a lower epoch is refused; the answer carries the higher epoch so
  that the stale sender steps down.
* Election. A secondary that has heard nothing from a master of its epoch for its election
  timeout (drawn anew per node and per try from [election_min, election_max)) first asks
  every node whether it WOULD vote for it in epoch + 1 (a pre-vote, Raft thesis 9.6: no
  epoch taken, nothing persisted). With a majority of yes (itself counted) it stands: takes
  epoch + 1, votes for itself and asks every node for its vote with the rank of its log
  (epoch of its last entry, length). Not won by its next timeout: it asks again (randomized
  retries end split votes). So a node that cannot win (restarted and not yet reached by a
  live master, or cut off one way) never raises its epoch, which would depose that master.
* Pre-vote. Ignored (like a vote request) while the node heard a master within
  election_min; else yes when the proposed epoch is above its own and the candidate's log
  is at least as up to date.
* Vote. A node grants at most one vote per epoch (the vote is persisted before the answer
  is sent), and only to a candidate whose log is at least as up to date as its own: the
  higher epoch at the last entry wins, then the longer log (recovery.Copy.rank's order).
  A node that heard from a master within election_min (or started less than election_min
  ago) ignores vote requests altogether: that is what makes the lease safe.
* Master. Votes of a majority (itself counted) make the candidate master of that epoch.
* Lease. A master stamps each heartbeat (any call to a secondary) with its clock when it
  SENDS it; an answer accepting it proves that secondary will not vote until election_min
  (its clock) after it received the call, which was after the stamp. With a majority's
  answers the master may accept writes until stamp + lease, where the stamp is the oldest
  among the newest stamps a majority answered. lease * (1 + drift) / (1 - drift) <
  election_min (checked at construction), so with clock rates off by at most `drift` the
  lease ends before any voter of that majority can vote, and no two masters accept writes
  at overlapping times.
* Shown entries: nodes/core/commit.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

from .election_messages import (Out, PreVoteAnswer, PreVoteRequest, Stored, VoteAnswer,
                                VoteRequest)

__all__ = ["Broken", "Cluster", "Election", "Out", "PreVoteAnswer", "PreVoteRequest", "Role",
           "Stored", "Timing", "VoteAnswer", "VoteRequest", "up_to_date"]


class Role(str, Enum):
    SECONDARY = "secondary"
    CANDIDATE = "candidate"
    MASTER = "master"


@dataclass(frozen=True)
class Cluster:
    me: str
    nodes: frozenset[str]           # every voter, me included

    def __post_init__(self) -> None:
        if self.me not in self.nodes:
            raise ValueError(f"{self.me} is not one of the cluster's nodes {sorted(self.nodes)}")

    @property
    def majority(self) -> int:
        return len(self.nodes) // 2 + 1

    @property
    def others(self) -> list[str]:
        return sorted(self.nodes - {self.me})


@dataclass(frozen=True)
class Timing:
    """In seconds of each node's own clock. drift: how far any node's clock rate may be off
    real time (0.01: within 1 % of it); offsets are free: no synchronized wall time."""
    election_min: float = 1.0
    election_max: float = 2.0
    heartbeat: float = 0.1
    lease: float = 0.8
    drift: float = 0.01

    def check(self) -> None:
        if not 0 < self.heartbeat < self.lease:
            raise ValueError("need 0 < heartbeat < lease")
        if not 0 < self.election_min < self.election_max:
            raise ValueError("need 0 < election_min < election_max")
        if not 0 <= self.drift < 1:
            raise ValueError("need 0 <= drift < 1")
        if not self.lease * (1 + self.drift) / (1 - self.drift) < self.election_min:
            raise ValueError(f"the lease ({self.lease}) must end before the smallest election "
                             f"timeout ({self.election_min}) even with clock rates {self.drift} "
                             "apart: lease * (1 + drift) / (1 - drift) < election_min")


@dataclass(frozen=True)
class Broken:
    """Rules deliberately broken, for the simulation's mutation tests (tests/sim). Every one
    is False in a real node; each must make the simulation fail."""
    second_vote: bool = False            # grant a vote in an epoch already voted in
    vote_less_up_to_date: bool = False   # grant without the up-to-date check
    deposed_stays_master: bool = False   # take a higher epoch but stay master (and writable)
    long_lease: bool = False             # skip the lease < election_min check
    vote_despite_master: bool = False    # vote although a live master was heard from


def up_to_date(candidate: tuple[int, int], mine: tuple[int, int]) -> bool:
    """Raft's rule, ordered as recovery.Copy.rank: (epoch of the last entry, length)."""
    return candidate >= mine


class Election:
    def __init__(self, cluster: Cluster, timing: Timing, stored: Stored, now: float,
                 rand: Callable[[], float], broken: Broken = Broken(),
                 first_timeout: float | None = None, never_heard: bool = False) -> None:
        """first_timeout: the first try's timeout instead of a random one (the node meant to
        be master first stands first). never_heard: the stored state proves that this node
        never answered a master (epoch 0 on disk), so it need not wait out a lease it
        cannot have granted before it votes."""
        if not broken.long_lease:
            timing.check()
        self.cluster, self.timing, self.rand, self.broken = cluster, timing, rand, broken
        self.epoch, self.voted_for = stored.epoch, stored.voted_for
        self.role = Role.SECONDARY
        self.master: str | None = None           # the master of self.epoch, once heard from
        # A (re)started node may have answered a master's heartbeat just before it crashed:
        # it acts as if it had just heard from a master (no vote, no standing) for a while.
        self.heard_at = float("-inf") if never_heard and stored.epoch == 0 else now
        self.deadline = now + (self._timeout() if first_timeout is None else first_timeout)
        self.votes: set[str] = set()
        self.prevotes: set[str] | None = None   # a pre-vote round under way: who said yes
        self.prevote_round = 0                  # counts the rounds (a caller's retries end
                                                # with theirs)
        self.stamps: dict[str, float] = {}      # secondary -> newest stamp it accepted
        self.next_heartbeat = now

    # -- what the caller reads ------------------------------------------------------------
    def stored(self) -> Stored:
        return Stored(self.epoch, self.voted_for)

    def lease_until(self) -> float:
        """A master may accept writes before this (its clock); -inf without a majority."""
        if self.role is not Role.MASTER:
            return float("-inf")
        stamps = sorted(self.stamps.values(), reverse=True)
        need = self.cluster.majority - 1         # answers needed besides the master itself
        if need == 0:
            return float("inf")
        if len(stamps) < need:
            return float("-inf")
        return stamps[need - 1] + self.timing.lease

    def writable(self, now: float) -> bool:
        return self.role is Role.MASTER and now < self.lease_until()

    def wake_at(self) -> float:
        """When tick() next has something to do (the caller's clock)."""
        return self.next_heartbeat if self.role is Role.MASTER else self.deadline

    # -- time -----------------------------------------------------------------------------
    def tick(self, now: float, rank: tuple[int, int]) -> Out:
        """rank: this node's log, (epoch of the last entry, length), for a vote request."""
        out = Out()
        if self.role is Role.MASTER:
            if now >= self.next_heartbeat:
                out.heartbeat = True
                self.next_heartbeat = now + self.timing.heartbeat
        elif now >= self.deadline:
            self._prevote(now, rank, out)
        return out

    def _timeout(self) -> float:
        t = self.timing
        return t.election_min + self.rand() * (t.election_max - t.election_min)

    def _prevote(self, now: float, rank: tuple[int, int], out: Out) -> None:
        """Ask whether the others would vote for this node in epoch + 1 (a candidate whose
        election timed out asks again too); no state that the others see changes."""
        if self.role is Role.CANDIDATE:          # a split vote: ask first again
            self.role, self.votes = Role.SECONDARY, set()
        self.prevotes, self.prevote_round = {self.cluster.me}, self.prevote_round + 1
        self.deadline = now + self._timeout()
        if len(self.prevotes) >= self.cluster.majority:
            self._stand(now, rank, out)          # a cluster of one
            return
        out.send += [(n, PreVoteRequest(self.epoch + 1, self.cluster.me, rank))
                     for n in self.cluster.others]

    def _stand(self, now: float, rank: tuple[int, int], out: Out) -> None:
        """Stand for the next epoch, with a new random timeout."""
        self.prevotes = None
        self.epoch += 1
        self.voted_for, self.role, self.master = self.cluster.me, Role.CANDIDATE, None
        self.votes = {self.cluster.me}
        self.deadline = now + self._timeout()
        out.persist = self.stored()
        if not self._won(now, out):
            out.send += [(n, VoteRequest(self.epoch, self.cluster.me, rank))
                         for n in self.cluster.others]

    def _won(self, now: float, out: Out) -> bool:
        if len(self.votes) < self.cluster.majority:
            return False
        self.role, self.master, self.stamps = Role.MASTER, self.cluster.me, {}
        out.became_master = out.heartbeat = True       # assert mastership at once
        self.next_heartbeat = now + self.timing.heartbeat
        return True

    # -- epochs ---------------------------------------------------------------------------
    def _observe(self, epoch: int, now: float, out: Out) -> None:
        """A message carries `epoch`: a higher one is taken, and ends any candidacy or
        mastership (unless broken.deposed_stays_master)."""
        if epoch <= self.epoch:
            return
        self.epoch, self.voted_for, self.master = epoch, None, None
        self.prevotes = None                     # it asked about an epoch now past
        out.persist = self.stored()
        if self.role is Role.MASTER and self.broken.deposed_stays_master:
            return
        if self.role is not Role.SECONDARY:
            out.stepped_down = True
            self.deadline = now + self._timeout()
        self.role, self.votes, self.stamps = Role.SECONDARY, set(), {}

    def _sticky(self, now: float) -> bool:
        """Heard from a live master within election_min (or is one that holds its lease):
        votes must wait, or the master's lease could overlap the next master's."""
        if self.role is Role.MASTER:
            return self.writable(now)
        return now - self.heard_at < self.timing.election_min

    # -- pre-votes ------------------------------------------------------------------------
    def on_prevote_request(self, req: PreVoteRequest, my_rank: tuple[int, int],
                           now: float) -> Out:
        """Would this node vote for the candidate in req.epoch? Nothing here changes: not
        the epoch (the request's is only proposed), not the vote, not the deadline. Like a
        vote request, it is ignored (no answer: the caller may ask again) while this node
        hears a master, which may be over in a moment: the last heartbeats of a dead master
        reach the nodes at slightly different times."""
        out = Out()
        if self._sticky(now) and not self.broken.vote_despite_master:
            return out
        grant = (req.epoch > self.epoch
                 and (up_to_date(req.rank, my_rank) or self.broken.vote_less_up_to_date))
        out.send.append((req.candidate, PreVoteAnswer(req.epoch, self.cluster.me, grant,
                                                      self.epoch)))
        return out

    def on_prevote_answer(self, ans: PreVoteAnswer, rank: tuple[int, int], now: float) -> Out:
        """rank: this node's log now, for the vote requests if it stands."""
        out = Out()
        self._observe(ans.current, now, out)     # a real epoch: taking it is always safe
        if (self.prevotes is not None and self.role is Role.SECONDARY and ans.granted
                and ans.epoch == self.epoch + 1):
            self.prevotes.add(ans.voter)
            if len(self.prevotes) >= self.cluster.majority:
                self._stand(now, rank, out)
        return out

    # -- votes ----------------------------------------------------------------------------
    def on_vote_request(self, req: VoteRequest, my_rank: tuple[int, int], now: float) -> Out:
        out = Out()
        if self._sticky(now) and not self.broken.vote_despite_master:
            return out                           # ignored: no epoch taken, no answer
        self._observe(req.epoch, now, out)
        b = self.broken
        grant = (req.epoch == self.epoch
                 and (self.voted_for in (None, req.candidate) or b.second_vote)
                 and (up_to_date(req.rank, my_rank) or b.vote_less_up_to_date))
        if grant:
            if self.voted_for != req.candidate:
                self.voted_for = req.candidate
                out.persist = self.stored()
            self.deadline = now + self._timeout()   # a vote given: let that candidate win
        out.send.append((req.candidate, VoteAnswer(self.epoch, self.cluster.me, grant)))
        return out

    def on_vote_answer(self, ans: VoteAnswer, now: float) -> Out:
        out = Out()
        self._observe(ans.epoch, now, out)
        if self.role is Role.CANDIDATE and ans.epoch == self.epoch and ans.granted:
            self.votes.add(ans.voter)
            self._won(now, out)
        return out

    # -- calls from a master, and their answers -------------------------------------------
    def on_master_call(self, epoch: int, master: str, now: float) -> tuple[bool, Out]:
        """A replicate or heartbeat call of the master of `epoch`. Returns (accepted, out);
        refused (a lower epoch): the answer must carry self.epoch."""
        out = Out()
        if epoch < self.epoch:
            return False, out
        self._observe(epoch, now, out)
        if self.role is Role.MASTER and master != self.cluster.me:
            # Two masters in one epoch: impossible unless a rule is broken; never obey it.
            return False, out
        if self.role is Role.CANDIDATE:          # another won this epoch
            self.role, self.votes = Role.SECONDARY, set()
            out.stepped_down = True
        self.prevotes = None                     # a master lives: no election to ask about
        self.master, self.heard_at = master, now
        self.deadline = now + self._timeout()
        return True, out

    def on_master_answer(self, node: str, epoch: int, accepted: bool, stamp: float,
                         now: float) -> Out:
        """A secondary answered a call stamped `stamp` (this master's clock when sent)."""
        out = Out()
        self._observe(epoch, now, out)
        if self.role is Role.MASTER and accepted and epoch == self.epoch:
            self.stamps[node] = max(stamp, self.stamps.get(node, stamp))
        return out
