"""A node of a failover cluster: the election core (nodes/core/election.py) around a role
that changes, a Secondary or a Master, over one durable store.

    election   a loop that ticks the core: a secondary that heard no master for its
               election timeout stands, asks every other node for its vote (one thread per
               node, each with its own proxy and a timeout), and becomes master on a
               majority
    fencing    every call from a master carries its `leader` (epoch, name, HTTP URL); a
               secondary admits it only from the current epoch or a higher one (taken at
               once, and a master or candidate that takes a higher epoch steps down); the
               answers carry this node's epoch, so a stale master learns that it is stale
    lease      the master stamps each heartbeat with its clock when sent; answers from a
               majority keep it writable until the oldest of their newest stamps + lease
    roles      winning: the Secondary's log (what is on disk) becomes a Master of the new
               epoch, which syncs every follower to its log before it counts their ACKs;
               deposed: the Master fails its waiting writes (naming the new master) and
               becomes a Secondary of its own log, which the new master cuts back
Votes and epochs are on disk (votes.py) before any answer that depends on them."""
from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any, Callable

from loguru import logger

from ..core import election as el
from ..core import history as hist
from ..events import add_event
from .votes import VoteFile


def _mastering(role: Any) -> bool:
    """Is this role a Master (it has the master's state machine), not a Secondary?"""
    return hasattr(role, "state")


class FailoverNode:
    def __init__(self, cluster: el.Cluster, timing: el.Timing, votes: VoteFile, url: str,
                 secondary: Any, make_master: Callable[[], Any],
                 make_secondary: Callable[[Any], Any], connect: Callable[[str, float], Any],
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random, first: bool = False) -> None:
        self.name, self.cluster, self.timing = cluster.me, cluster, timing
        self.url, self.votes, self.clock = url, votes, clock
        self.connect = connect                # (uri, timeout) -> proxy of a NodeAPI
        self._make_master, self._make_secondary = make_master, make_secondary
        self.lock = threading.Lock()          # the election core; never held across a call
        self._switch = threading.Lock()       # one role change at a time
        stored = votes.load()
        _, log_epoch, _ = self._log_of(secondary)
        if log_epoch > stored.epoch:          # the log's own epochs count as seen
            stored = el.Stored(log_epoch, None)
            votes.save(stored)
        # Who stands first. The node meant to be master (the master entry point) after a
        # quarter of the smallest timeout, at every start; on a cluster's first start (no
        # epoch on disk) the others give it twice the largest timeout first, so that a new
        # cluster's master is the node called master whatever the order they start in.
        first_timeout = timing.election_min / 4 if first else \
            2 * timing.election_max if stored.epoch == 0 and votes.path is not None else None
        self.election = el.Election(cluster, timing, stored, clock(), rand,
                                    first_timeout=first_timeout,
                                    never_heard=votes.path is not None)
        self.role: Any = secondary            # a Secondary or a Master
        secondary.fence = self
        self.master_url: str | None = None
        self.peers: dict[str, str] = {}      # node name -> its NodeAPI URI (cached)
        self.stopping = threading.Event()
        self.on_role_change: Callable[[], None] = lambda: None
        self.elections = self.won = self.stepped_down = 0

    # -- what the others read --------------------------------------------------------------
    @property
    def is_master(self) -> bool:
        return self.election.role is el.Role.MASTER

    def report(self) -> dict:
        """For GET /health on every node."""
        with self.lock:
            e = self.election
            return {"node": self.name, "role": e.role.value, "epoch": e.epoch,
                    "master": e.master, "master_url": self.master_url
                    if e.master != self.name else self.url,
                    "voted_for": e.voted_for, "cluster": sorted(self.cluster.nodes),
                    "writable": e.writable(self.clock()),
                    "prevote_rounds": e.prevote_round,
                    "elections_stood": self.elections, "elections_won": self.won,
                    "stepped_down": self.stepped_down, "cut": self.votes.cut}

    @staticmethod
    def _log_of(role: Any) -> tuple[str | None, int, int]:
        """(log id, epoch of the last entry, length) of what a role holds on its disk."""
        if _mastering(role):
            with role.lock:
                st = role.state
                return st.log_id, hist.epoch_at(st.history, st.durable), st.durable
        reply = role._durable                            # a Secondary: lock-free snapshot
        return reply.log_id, hist.epoch_at(reply.history, reply.ack), reply.ack

    def rank(self) -> tuple[int, int]:
        _, epoch, length = self._log_of(self.role)
        return epoch, length

    # -- stepping the core ----------------------------------------------------------------
    def _step(self, fn: Callable[[el.Election, float], Any]) -> Any:
        """Run fn on the core under the lock, persist what it says before anything is sent,
        and return (fn's result, out); the caller carries the rest of out out."""
        with self.lock:
            result = fn(self.election, self.clock())
            out = result[1] if isinstance(result, tuple) else result
            if out.persist is not None:
                self.votes.save(out.persist)
        return result

    def _carry(self, out: el.Out) -> None:
        if any(isinstance(msg, el.VoteRequest) for _, msg in out.send):     # stood
            self.elections += 1
            logger.warning("no master heard for an election timeout and a majority would "
                           "vote: standing for epoch {} (log epoch {} length {})",
                           self.election.epoch, *self.rank())
            add_event("election", f"{self.name} stands for epoch {self.election.epoch}")
        for node, msg in out.send:
            if isinstance(msg, el.VoteRequest):
                threading.Thread(target=self._ask_vote, args=(node, msg), daemon=True,
                                 name=f"vote-{node}").start()
            elif isinstance(msg, el.PreVoteRequest):
                threading.Thread(target=self._ask_prevote, daemon=True, name=f"prevote-{node}",
                                 args=(node, msg, self.election.prevote_round)).start()
        if out.became_master:
            threading.Thread(target=self._become_master, daemon=True, name="promote").start()
        if out.stepped_down:
            threading.Thread(target=self._become_secondary, daemon=True,
                             name="step-down").start()

    def loop(self) -> None:
        """The election loop: tick the core at its wake time (at least every 50 ms)."""
        while not self.stopping.is_set():
            rank = self.rank()
            out = self._step(lambda e, now: e.tick(now, rank))
            if out.send and not self.is_master and self.election.prevotes is not None:
                logger.debug("no master heard for an election timeout: would the others vote "
                             "for this node in epoch {}?", self.election.epoch + 1)
            self._carry(out)
            wait = self.election.wake_at() - self.clock()
            self.stopping.wait(min(0.05, max(0.005, wait)))

    # -- votes ----------------------------------------------------------------------------
    def _ask(self, node: str, method: str, req: Any, asking: Callable[[], bool],
             answered: Callable[[dict], Any]) -> None:
        """Ask `node` (its NodeAPI `method`: vote or prevote) until it answers or `asking()`
        turns false (Raft retries a vote request too): its address may not be known yet, a
        call may time out, and a node that still hears a master ignores the question for a
        while. `answered(answer)` steps the core with the answer."""
        while not self.stopping.is_set() and asking():
            uri = self.peers.get(node)
            a = None
            if uri is not None:
                try:
                    with self.connect(uri, self.timing.election_min / 2) as p:
                        a = getattr(p, method)(req.epoch, req.candidate, *req.rank)
                except Exception as ex:
                    logger.debug("{} request to {} for epoch {} failed: {}", method, node,
                                 req.epoch, ex)
            if a is not None and not a.get("ignored"):
                self._carry(self._step(answered(a)))
                return
            self.stopping.wait(0.05)

    def _ask_vote(self, node: str, req: el.VoteRequest) -> None:
        """Ask `node` for its vote for as long as this candidacy lasts (see _ask)."""
        e = self.election
        self._ask(node, "vote", req,
                  lambda: e.role is el.Role.CANDIDATE and e.epoch == req.epoch,
                  lambda a: lambda e, now: e.on_vote_answer(
                      el.VoteAnswer(int(a["epoch"]), node, bool(a["granted"])), now))

    def _ask_prevote(self, node: str, req: el.PreVoteRequest, round_: int) -> None:
        """Ask `node` for its pre-vote for as long as this round lasts (it ends with a master
        heard, a new epoch, the next round, or standing; see _ask)."""
        e = self.election
        self._ask(node, "prevote", req,
                  lambda: e.prevotes is not None and e.prevote_round == round_,
                  lambda a: self._prevote_answered(
                      el.PreVoteAnswer(req.epoch, node, bool(a["granted"]), int(a["epoch"]))))

    def _prevote_answered(self, answer: el.PreVoteAnswer) -> Callable[[el.Election, float], Any]:
        rank = self.rank()                    # (read outside the core's lock)
        return lambda e, now: e.on_prevote_answer(answer, rank, now)

    def prevote(self, epoch: int, candidate: str, last_epoch: int, length: int) -> dict:
        """Would this node vote for `candidate` in `epoch` (NodeAPI.prevote)? Changes
        nothing here; {"granted": ..., "epoch": this node's epoch}, or {"ignored": True}
        while it hears a master."""
        self._check_candidate(candidate)
        req = el.PreVoteRequest(int(epoch), candidate, (int(last_epoch), int(length)))
        rank = self.rank()
        out = self._step(lambda e, now: e.on_prevote_request(req, rank, now))
        if not out.send:                      # it hears a master: ask again in a moment
            return {"ignored": True, "epoch": self.election.epoch}
        answer = out.send[0][1]
        return {"granted": answer.granted, "epoch": answer.current}

    def _check_candidate(self, candidate: str) -> None:
        if candidate not in self.cluster.nodes or candidate == self.name:
            raise ValueError(f"{candidate!r} is not another node of this cluster "
                             f"{sorted(self.cluster.nodes)}")

    def vote(self, epoch: int, candidate: str, last_epoch: int, length: int) -> dict:
        """A candidate asks for this node's vote (NodeAPI.vote)."""
        self._check_candidate(candidate)
        req = el.VoteRequest(int(epoch), candidate, (int(last_epoch), int(length)))
        rank = self.rank()
        out = self._step(lambda e, now: e.on_vote_request(req, rank, now))
        self._carry(out)
        if not out.send:
            return {"ignored": True, "epoch": self.election.epoch}
        answer = out.send[0][1]
        if answer.granted:
            logger.info("voted for {} in epoch {} (its log: epoch {} length {}; mine: {} {})",
                        candidate, epoch, last_epoch, length, *rank)
        return {"epoch": answer.epoch, "granted": answer.granted}

    # -- fencing: calls from a master (secondary side) ------------------------------------
    def admit(self, leader: dict) -> int:
        """A replicate or sync call from the master `leader`; refused if it is not the
        master of this node's epoch or a later one (PermissionError). Returns this node's
        epoch."""
        ok, term = self.check(leader)
        if not ok:    # a builtin exception: Pyro5 carries those (and only those) back
            raise PermissionError(
                f"stale epoch {leader.get('epoch')}: {self.name} is in epoch {term}"
                + (f" (master {self.election.master})" if self.election.master else ""))
        return term

    def check(self, leader: dict) -> tuple[bool, int]:
        """(accepted, this node's epoch) for a call of the master `leader`."""
        epoch, master = int(leader["epoch"]), str(leader["name"])
        accepted, out = self._step(lambda e, now: e.on_master_call(epoch, master, now))
        if accepted:
            if _mastering(self.role):
                accepted = False              # still a master here: stepping down first
            elif self.master_url != leader.get("url"):
                self.master_url = leader.get("url")
                logger.info("following master {} of epoch {} ({})", master, epoch,
                            self.master_url)
        self._carry(out)
        return accepted, self.election.epoch

    def on_cut(self, count: int) -> None:
        """This node's log was cut back to an elected master's: count it for good."""
        with self.lock:
            self.votes.add_cut(count)

    # -- the master side ------------------------------------------------------------------
    def leader(self) -> dict:
        """What every call of this master carries: its epoch, name, URL and commit."""
        role = self.role
        commit = role.state.commit if _mastering(role) else 0
        return {"epoch": self.election.epoch, "name": self.name, "url": self.url,
                "commit": commit}

    def answered(self, node: str, reply: dict, stamp: float) -> None:
        """A secondary answered a call this master stamped `stamp` (its clock when sent)."""
        term = reply.get("term")
        if term is None:
            return
        accepted = bool(reply.get("accepted", True))
        self._carry(self._step(lambda e, now: e.on_master_answer(node, int(term), accepted,
                                                                 stamp, now)))

    def writable(self) -> str | None:
        """None when this master may accept a write now, else why not."""
        e = self.election
        if e.role is not el.Role.MASTER:
            return f"{self.name} is not the master (master: {e.master or 'being elected'})"
        if not e.writable(self.clock()):
            return (f"{self.name} has not heard from a majority of the cluster within its "
                    f"lease ({self.timing.lease:g} s): it accepts no writes until it does")
        return None

    # -- role changes ---------------------------------------------------------------------
    def _become_master(self) -> None:
        with self._switch:
            epoch = self.election.epoch
            if not self.is_master or _mastering(self.role):
                return
            secondary = self.role
            log_id, history, messages, commit, keys = secondary.hand_over()
            started = self.clock()
            master = self._make_master()
            master.shell.fence = self
            if log_id is None:
                log_id, history = uuid.uuid4().hex, []
            history = hist.begin_epoch(hist.cut(history, len(messages)), len(messages), epoch)
            master.start_elected(log_id, history, messages, commit, keys)
            self.role, self.master_url = master, self.url
            self.won += 1
        logger.warning("elected master of epoch {} with {} messages (log {}) in {:.0f} ms",
                       epoch, len(messages), log_id[:8], (self.clock() - started) * 1000)
        add_event("election", f"{self.name} is master of epoch {epoch}")
        self.on_role_change()
        seeds = {n: u.replace("replog.node.", "replog.secondary.")
                 for n, u in self.peers.items() if n != self.name}
        master.discover(seeds)

    def _become_secondary(self) -> None:
        with self._switch:
            if self.is_master or not _mastering(self.role):
                return
            master = self.role
            e = self.election
            why = (f"{self.name} is no longer the master: epoch {e.epoch} began"
                   + (f", its master is {e.master}" if e.master else ""))
            log_id, history, messages, commit, keys = master.hand_over(why)
            secondary = self._make_secondary((log_id, history, messages, keys), commit)
            secondary.fence = self
            self.role = secondary
            self.stepped_down += 1
        logger.warning("stepped down: {}; {} messages kept, a secondary now", why,
                       len(messages))
        add_event("election", f"{self.name} stepped down (epoch {e.epoch})")
        self.on_role_change()

    def stop(self) -> None:
        self.stopping.set()
