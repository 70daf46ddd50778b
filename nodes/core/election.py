"""Election and fencing: who is master of which epoch, and when a master may accept writes.

A clock-free state machine per node, as etcd raft's: the caller passes `now` (its own
monotonic clock) and a `rand` in, hands it every message that carries an epoch, and carries
out what each call returns (an `Out`): first write `Out.persist` to disk and sync it, then
send `Out.send`. Nothing here sleeps, talks or stores.

The cluster. A node is started with the names of every node of the cluster, itself
included (`Cluster.nodes`). Those, and only those, vote, and a majority is a majority of
them: size // 2 + 1. A node found later by discovery is not a voter and does not change the
size; a node that departs (or is down, or unreachable) still counts in the size, so a
partition can never shrink its side's cluster and elect on both sides. Changing the set
(adding or removing voters) is out of scope: it needs Raft's one-at-a-time or joint
membership changes, and until then the set is fixed for the life of the log.

The rules (Raft's, in replog's words; docs/failover.md has the safety argument):

* Epoch. Every message between nodes carries the sender's epoch. A node that sees a higher
  epoch takes it (forgetting its vote) and, if it was master or candidate, is a secondary
  at once. A message with a lower epoch is refused; the answer carries the higher epoch so
  that the stale sender steps down.
* Election. A secondary that has heard nothing from a master of its epoch for its election
  timeout (drawn anew per node and per try from [election_min, election_max)) stands: it
  takes epoch + 1, votes for itself and asks every node for its vote with the rank of its
  log (the epoch of its last entry, its length). A candidate that has not won by its next
  timeout stands again (randomized retry ends split votes).
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
* Shown entries. A node shows readers only the first `commit` entries: a master advances
  commit to the highest seq a majority holds whose entry is of its own epoch (Raft's rule:
  an older epoch's entry is committed only by a newer one above it); secondaries take the
  master's commit, capped by what they have verified matches the master's log. Entries
  beyond commit may be cut, and no seq ever shows two messages.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable

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


@dataclass(frozen=True)
class Stored:
    """What must survive a crash: the highest epoch seen and the vote given in it."""
    epoch: int = 0
    voted_for: str | None = None


@dataclass(frozen=True)
class VoteRequest:
    epoch: int
    candidate: str
    rank: tuple[int, int]            # (epoch of the last entry, length): Copy.rank


@dataclass(frozen=True)
class VoteAnswer:
    epoch: int
    voter: str
    granted: bool


@dataclass
class Out:
    """persist: write and sync this before sending anything in `send`. send: (node, message).
    heartbeat: a master must send a call (stamped `now`) to every other node now."""
    persist: Stored | None = None
    send: list[tuple[str, object]] = field(default_factory=list)
    heartbeat: bool = False
    became_master: bool = False
    stepped_down: bool = False       # was master or candidate, is a secondary now


def up_to_date(candidate: tuple[int, int], mine: tuple[int, int]) -> bool:
    """Raft's rule, ordered as recovery.Copy.rank: (epoch of the last entry, length)."""
    return candidate >= mine


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
            self._stand(now, rank, out)
        return out

    def _timeout(self) -> float:
        t = self.timing
        return t.election_min + self.rand() * (t.election_max - t.election_min)

    def _stand(self, now: float, rank: tuple[int, int], out: Out) -> None:
        """Stand for the next epoch (again, after a split vote: a new random timeout)."""
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
