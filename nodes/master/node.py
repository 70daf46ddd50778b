"""The running master: wires its parts around the state machine and serves the clients.

    recovery.py    at start: find the log (own disk, the secondaries' copies)
    commit.py      group commit to the master's own disk (with a data directory)
    link.py        per secondary: the senders (pipelined) and the heartbeat loop
    membership.py  discovery in the name server, TLS vetting, health and mode transitions
    report.py      the log lines and dashboard events for what the state machine reports
Client threads (HTTP or Pyro5) append under the shell's lock and wait on an Event until
their write concern is met, they time out, or the master's disk fails."""
from __future__ import annotations

import random
import time
from typing import Callable

from loguru import logger

from ..core import history as hist
from ..core import recovery as plan
from ..core import report
from ..core.calls import Appended, Pipeline
from ..core.concern import WriteConcernTimeout
from ..core.health import HealthPolicy
from ..core.master import MasterState, ReadOnly
from ..core.progress import Backoff
from ..follow import Notifier
from ..storage.store import Store
from .commit import GroupCommit
from .link import Link
from .membership import Membership
from .recovery import Recovery
from .shell import Shell, Timing, Wait
from .transport import Transport


class Master:
    def __init__(self, named: list[str], policy: HealthPolicy, backoff: Backoff,
                 timing: Timing, transport: Transport,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random, max_batch: int = 10_000,
                 store: Store | None = None, new_log: bool = False,
                 max_keys: int = 100_000, pipeline: Pipeline | None = None) -> None:
        self.state = MasterState(policy, backoff, named, max_batch=max_batch,
                                 volatile=store is None, max_keys=max_keys, now=clock(),
                                 pipeline=pipeline)
        self.shell = Shell(self.state, timing, transport, clock, rand, new_log)
        self.lock = self.shell.lock
        self.stats = self.shell.stats         # read by GET /metrics (nodes/metrics.py)
        self.store = store
        self.membership = Membership(self.shell, self._serve)
        self.recovery = Recovery(self.shell, store, new_log, self.membership.discover_once)
        self.commit: GroupCommit | None = None
        self.links: dict[str, Link] = {}
        self._replicating = False
        self.follow = Notifier()    # GET /messages?wait= and /messages/stream wait on it
        self.shell.on_shown = self.follow.advance

    @property
    def log_id(self) -> str:
        return self.state.log_id

    @property
    def cluster_size(self) -> int:
        return self.state.cluster_size

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the log, then start replicating. Returns once the log is known, or, for a
        master with nothing on disk still waiting for its secondaries, after
        timing.startup_wait: recovery then goes on in the background, read-only."""
        own = self.recovery.load_own()
        with self.lock:
            self.state.recovering = "recovering: the master is still finding its log"
        if self.recovery.run(own, self.shell.timing.startup_wait) is None:
            self.shell.spawn("recovery", self._recover_in_background, own)
        else:
            self._start_replication()

    def start_elected(self, log_id: str, history: list[list[int]], messages: list[str],
                      commit: int, keys: dict[str, int]) -> None:
        """Failover: this node won an election and serves its own log (already on its disk)
        in the epoch that begins in `history`; no recovery (the election chose the log).
        Readers see only committed entries: `commit` (known committed already) at first."""
        with self.lock:
            self.state.log.load(messages, keys)
            self.state.begin(log_id, history, durable=len(messages))
            self.state.commit_rule, self.state.commit = True, commit
        if self.store is not None:
            self.store.save_meta(log_id, history)
        self._start_replication()

    def hand_over(self, why: str) -> tuple[str, list[list[int]], list[str], int,
                                             dict[str, int]]:
        """Failover: this master is deposed. Fail every waiting append with `why`, stop, and
        return what its disk holds (log id, history, entries, commit, keys) for the
        Secondary it becomes; the store stays open for it."""
        with self.lock:
            self.state.depose(why)
            ready = self.shell.take()
        self.shell.carry_out(ready)
        self.stop(close_store=False)
        with self.lock:
            st = self.state
            return (st.log_id, hist.cut(st.history, st.durable), st.log.messages(st.durable),
                    st.commit, st.log.keys_upto(st.durable))

    def _recover_in_background(self, own: plan.Copy) -> None:
        while not self.shell.stopping.is_set():
            if self.recovery.run(own, self.shell.timing.heartbeat_interval) is not None:
                self._start_replication()
                return

    def _start_replication(self) -> None:
        with self.lock:
            self._replicating = True
            names = list(self.state.secondaries)
            if self.store is not None:
                self.commit = GroupCommit(self.shell, self.store,
                                          lambda _: self.follow.advance(self.state.shown))
            self.follow.advance(self.state.shown)      # the log found by recovery
        if self.commit is not None:
            self.shell.spawn("flush", self.commit.loop)
        for name in names:
            self._serve(name)
        self.shell.spawn("tick", self.membership.tick_loop)

    def _serve(self, name: str) -> None:
        """Secondary `name` is new, moved or gone: start its link, or wake the one it has
        (a link whose secondary is gone ends when woken)."""
        with self.lock:
            if not self._replicating:
                return
            sec = self.state.secondaries.get(name)
            link = self.links.get(name)
            if link is not None:
                link.wake(everyone=True)
                if link.progress is sec:
                    return
                del self.links[name]
            if sec is None:
                return
            link = self.links[name] = Link(self.shell, name, self.state.pipeline.window,
                                           self.membership.look_up_again)
        link.start()

    def stop(self, close_store: bool = True) -> None:
        """Stop every loop. Handing the store over (close_store False: failover), wait only
        for the flusher, the one loop that writes to it: the senders may be blocked in
        calls for up to --rpc-timeout, and a deposed master must step down at once (while
        it waits it hears no master, and would stand and depose the new one)."""
        self.shell.stopping.set()
        with self.lock:
            for link in self.links.values():
                link.wake(everyone=True)
            if self.commit is not None:
                self.commit.cond.notify_all()
        self.shell.join(self.shell.timing.rpc_timeout + 1,
                        only=None if close_store else ("flush",))
        self.follow.close()
        if self.store is not None and close_store:
            self.store.close()

    # -- client operations --------------------------------------------------------------
    def append(self, message: str, w: int, timeout: float | None = None,
               key: str | None = None) -> dict:
        """Append and wait until w nodes hold the message (raises ReadOnly or
        WriteConcernTimeout). A repeated key appends nothing and waits on the first seq."""
        self._check_fence()
        wait = Wait() if w > 1 or self.store is not None else None
        with self.lock:
            a = self.state.append(message, w, self.shell.clock(), key, wait)
            if a.created:
                self._wake_writers()
                self.follow.advance(self.state.shown)  # in memory: shown at once
        if not a.created:
            logger.info("append with id {!r} repeated: seq={}", key, a.seq)
        return self._await(a, wait, w, timeout)

    def append_many(self, messages: list[str], w: int, timeout: float | None = None,
                    key: str | None = None) -> dict:
        self._check_fence()
        wait = Wait() if w > 1 or self.store is not None else None
        with self.lock:
            a = self.state.append_many(messages, w, self.shell.clock(), wait, key)
            if a.created:
                self._wake_writers()
                self.follow.advance(self.state.shown)
        if not a.created:
            logger.info("batch with id {!r} repeated: seq={}", key, a.seq)
        return {"first_seq": a.seq - len(messages) + 1, **self._await(a, wait, w, timeout)}

    def _check_fence(self) -> None:
        """With failover: only the master of the current epoch, within its lease, writes."""
        fence = self.shell.fence
        if fence is not None:
            why = fence.writable()
            if why is not None:
                raise ReadOnly(why)

    def _wake_writers(self) -> None:
        """Under the lock: new entries for one idle sender per secondary and the flusher."""
        for link in self.links.values():
            link.wake()
        if self.commit is not None:
            self.commit.cond.notify()

    def _await(self, a: Appended, wait: Wait | None, w: int, timeout: float | None) -> dict:
        if a.wait_id is None or wait is None:          # met already
            return {"seq": a.seq, "acks": a.acks, "w": w}
        if not wait.event.wait(timeout):
            with self.lock:
                if self.state.cancel_wait(a.wait_id):
                    raise WriteConcernTimeout(a.seq, self.state.acks(a.seq), w, timeout or 0)
            wait.event.wait()       # released at the very last moment: it is being set
        if wait.error is not None:
            raise ReadOnly(wait.error)
        return {"seq": a.seq, "acks": wait.acks, "w": w}

    def messages(self) -> list[str]:
        """What the master's disk holds (an entry not yet synced may still be lost)."""
        with self.lock:
            return self.state.log.messages(self.state.shown)

    def snapshot(self) -> tuple[list[str], int]:
        """(entry list, count) to read without the lock: entries 1..count stay as they are."""
        with self.lock:
            return self.state.log.snapshot(), self.state.shown

    def secondary_uris(self) -> dict[str, str | None]:
        """Where each known secondary is registered (the dashboard reads their tails)."""
        with self.lock:
            return {name: sec.uri for name, sec in self.state.secondaries.items()}

    def health(self) -> dict:
        with self.lock:
            out = report.health(self.state, self.shell.clock())
        out["name"] = "master"
        out["log_id"] = self.log_id
        out["durable"] = None if self.store is None else {
            "data_dir": str(self.store.path), "fsync": self.store.mode, "syncs": self.store.syncs}
        out["recovery"] = self.recovery.report
        if self.shell.fence is not None:
            out["name"] = self.shell.me
            out["failover"] = self.shell.fence.report()
            why = self.shell.fence.writable()
            if why is not None and not out["read_only"]:
                out["read_only"], out["reason"] = True, why    # e.g. its lease ran out
            out["commit_seq"] = self.state.commit
        return out

    def discover(self, registered: dict[str, str]) -> None:
        """Serve these secondaries (name -> Pyro5 URI), as if found in the name server."""
        self.membership.discover(registered)



