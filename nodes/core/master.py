"""The master's state machine: the log, every secondary's progress, write-concern waits,
health and quorum. Single-threaded and clock-free: the shell calls it under one lock and
passes `now` in. What it decides is returned (what to send, how long to wait) or recorded
in a Ready (waits released or failed, events to log) that the shell takes with
take_ready() and carries out."""
from __future__ import annotations

import itertools
from typing import Any, Callable

from . import history as hist
from .concern import Waits, holders
from .commit import commit_index
from .health import HealthPolicy, Quorum, Status, majority, quorum
from .log import MasterLog
from .progress import Backoff, Progress
from .ready import Event, Ready
from .calls import Appended, Batch, Pipeline, Sync  # noqa: F401 (re-exported)


class ReadOnly(Exception):
    """The master refuses appends: no quorum, its log not known yet, or its disk failed."""

SAME = object()   # on_answer(): "the secondary follows the master's own log and epoch"


class MasterState:
    """durable: the highest seq on the master's own disk; with a volatile (in-memory) log it
    follows every append. recovering: why appends wait for the log to be found; failed: why
    the master's disk refuses them for good."""

    def __init__(self, policy: HealthPolicy | None = None, backoff: Backoff | None = None,
                 named: tuple[str, ...] | list[str] = (), max_batch: int = 10_000,
                 max_batch_bytes: int = 4 << 20, volatile: bool = True,
                 max_keys: int = 100_000, now: float = 0.0,
                 pipeline: Pipeline | None = None) -> None:
        self.policy = policy or HealthPolicy()
        self.backoff = backoff or Backoff()
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.pipeline = pipeline or Pipeline(max_messages=max_batch)
        self.volatile = volatile
        self.log = MasterLog(max_keys, track_keys=not volatile)
        self.log_id: str = ""
        self.history: list[list[int]] = [[1, 1]]
        self.durable = 0
        self.recovering: str | None = None
        self.failed: str | None = None
        self.secondaries: dict[str, Progress] = {}
        self.waits = Waits()
        self.read_only = False
        self.named = frozenset(named)
        # Failover (commit_rule): readers see only the first `commit` entries, those a
        # majority holds (commit.commit_index); otherwise they see the durable prefix.
        self.commit_rule = False
        self.commit = 0
        self._ready = Ready()
        self._calls = itertools.count(1)
        for name in named:
            self.add_secondary(name, now)

    @property
    def epoch(self) -> int:
        return hist.last_epoch(self.history)

    @property
    def shown(self) -> int:
        """How many entries readers see."""
        return self.commit if self.commit_rule else self.durable

    def take_ready(self) -> Ready:
        ready, self._ready = self._ready, Ready()
        return ready

    def _event(self, kind: str, name: str | None = None, **fields: Any) -> None:
        self._ready.events.append(Event(kind, name, fields))

    def begin(self, log_id: str, history: list[list[int]], durable: int) -> None:
        """Serve log_id from now on, with this epoch history, its first `durable` entries
        already on disk."""
        self.log_id, self.history, self.durable = log_id, history, durable
        self.recovering = None

    def fail_disk(self, reason: str) -> None:
        """The master's disk failed: nothing more can be acknowledged, so every waiting
        append fails now (with the reason) instead of waiting forever."""
        self.failed = reason
        waits = self.waits.drain()
        self._ready.failed.extend((token, reason) for token, _ in waits)
        self._event("disk_failed", reason=reason, failed_waits=len(waits))

    def depose(self, reason: str) -> None:
        """Failover: a later epoch began elsewhere. No more appends, and every waiting one
        fails now with the reason (it may or may not survive: a client must check)."""
        self.failed = reason
        waits = self.waits.drain()
        self._ready.failed.extend((token, reason) for token, _ in waits)
        self._event("deposed", reason=reason, failed_waits=len(waits))

    # -- membership -------------------------------------------------------------------
    @property
    def cluster_size(self) -> int:
        return 1 + len(self.secondaries)

    def add_secondary(self, name: str, now: float) -> bool:
        if name in self.secondaries:
            return False
        self.secondaries[name] = Progress(known_since=now)
        return True

    def departed(self, registered: set[str] | frozenset[str], now: float) -> list[str]:
        """Forget the secondaries that left on purpose: found by discovery (not named at
        start), no longer registered (a node that stops cleanly unregisters; one killed stays
        registered) and Unhealthy. They no longer count in the cluster size or the quorum."""
        gone = [name for name in self.secondaries
                if name not in self.named and name not in registered
                and self.status(name, now) is Status.UNHEALTHY]
        for name in gone:
            del self.secondaries[name]
            self._event("left", name, size=self.cluster_size)
        return gone

    def set_uri(self, name: str, uri: str, now: float) -> str:
        """Record where a secondary is registered; 'new', 'moved' or 'same'."""
        added = self.add_secondary(name, now)
        sec = self.secondaries[name]
        old, sec.uri = sec.uri, uri
        if old != uri:
            # A new address is most likely a new process: stop waiting out the old one's
            # backoff, and ask what it follows (a Sync) before sending it entries, which it
            # would refuse until synced (and the refusal would cost a backoff).
            sec.retry_at = 0.0
            if old is not None:
                sec.log_id, sec.epoch = None, 0
        if added or old is None:
            self._event("discovered", name, uri=uri, size=self.cluster_size)
            return "new"
        if old == uri:
            return "same"
        self._event("moved", name, uri=uri)
        return "moved"

    # -- appends and write concern ----------------------------------------------------
    def acks(self, seq: int) -> int:
        return holders(seq, [s.acked for s in self.secondaries.values()], self.durable)

    def append(self, message: str, w: int, now: float, key: str | None = None,
               token: Any = None) -> Appended:
        """Append (or find, by key) a message; register a wait when w is not met yet.
        A repeated key is answered even without quorum: it appends nothing."""
        if key is None or self.log.seq_of(key) is None:
            self._check_writable(now)
        seq, created = self.log.append(message, key)
        if created and self.volatile:
            self.durable = seq
        return self._wait_for(seq, created, w, token)

    def append_many(self, messages: list[str], w: int, now: float, token: Any = None,
                    key: str | None = None) -> Appended:
        """One wait, on the batch's last seq; a key names the batch by it (see append)."""
        last = None if key is None else self.log.seq_of(key)
        if created := last is None:
            self._check_writable(now)
            last = self.log.extend(messages, key)[1]
            if self.volatile:
                self.durable = last
        return self._wait_for(last, created, w, token)

    def _check_writable(self, now: float) -> None:
        if self.failed is not None or self.recovering is not None:
            raise ReadOnly(self.failed or self.recovering)
        # the hot path of every append: count what quorum() counts (HealthPolicy.answering,
        # Progress.seen), without its report, and inline (a generator and two calls per
        # secondary cost more than the rest of this check)
        limit = self.policy.unhealthy_after
        available = 1
        for sec in self.secondaries.values():
            seen = sec.last_answer if sec.last_answer is not None else sec.known_since
            if seen is not None and now - seen < limit:
                available += 1
        if available < majority(1 + len(self.secondaries)):
            raise ReadOnly(self.quorum(now).reason())

    def on_durable(self, seq: int) -> None:
        """The master's disk holds every entry up to seq."""
        self.durable = max(self.durable, seq)
        self._release()

    def _release(self) -> None:
        if self.commit_rule:
            self._advance_commit()
        if self.waits:
            for token, seq in self.waits.release([s.acked for s in self.secondaries.values()],
                                                 self.durable):
                self._ready.released.append((token, self.acks(seq)))

    def _advance_commit(self) -> None:
        acked = [s.acked for name, s in self.secondaries.items() if self.synced(name)]
        commit = commit_index(self.commit, self.cluster_size, self.durable, acked,
                              lambda seq: hist.epoch_at(self.history, seq), self.epoch)
        if commit > self.commit:
            self.commit = self._ready.shown = commit

    def _wait_for(self, seq: int, created: bool, w: int, token: Any) -> Appended:
        acks = self.acks(seq)
        wait_id = None if acks >= w else self.waits.add(seq, w, token)
        return Appended(seq=seq, created=created, acks=acks, wait_id=wait_id)

    def cancel_wait(self, wait_id: int) -> bool:
        """Give up a wait; False when it was released (or failed) already."""
        return self.waits.cancel(wait_id)

    # -- replication --------------------------------------------------------------------
    def synced(self, name: str) -> bool:
        sec = self.secondaries[name]
        return sec.log_id == self.log_id and sec.epoch == self.epoch

    def next_batch(self, name: str, now: float) -> Batch | Sync | None:
        """What to send to this secondary now: a Sync when it follows another log or epoch,
        else the entries after what is already out to it (see Pipeline)."""
        sec = self.secondaries.get(name)
        if sec is None or sec.uri is None or now < sec.retry_at or self.recovering is not None:
            return None
        if not self.synced(name):
            if sec.calls:
                return None              # let what is out end first
            call = next(self._calls)
            sec.calls[call] = now
            return Sync(self.log_id, self.history, self.log.last_seq, call)
        first = sec.next_seq
        if first > self.log.last_seq:
            return None
        room = self.max_batch
        if sec.calls:
            out = first - 1 - sec.acked
            p = self.pipeline
            if len(sec.calls) >= p.window or now - max(sec.calls.values()) < p.after \
                    or out >= p.max_messages or now < sec.resend_after:
                return None
            room = min(room, p.max_messages - out)
        # Sent while the master's own sync may still run: the two disks work at once. An
        # entry a master loses in a crash before its sync was never acknowledged; a restarted
        # master adopts it from a secondary that has it, or cuts it off the secondaries.
        messages = self.log.entries(first, room, self.max_batch_bytes)
        call = next(self._calls)
        sec.calls[call] = now
        sec.sent_upto = first + len(messages) - 1
        return Batch(first, messages, call)

    def wake_at(self, name: str) -> float | None:
        """When next_batch may have something for this secondary without new appends or
        answers (None: only then)."""
        sec = self.secondaries.get(name)
        if sec is None or sec.uri is None:
            return None
        if not self.synced(name):
            return None if sec.calls else sec.retry_at
        if sec.next_seq > self.log.last_seq:
            return None
        if not sec.calls:
            return sec.retry_at
        p = self.pipeline
        if len(sec.calls) >= p.window or sec.next_seq - 1 - sec.acked >= p.max_messages:
            return None                   # only an answer makes room
        return max(sec.retry_at, max(sec.calls.values()) + p.after, sec.resend_after)

    def on_answer(self, name: str, incarnation: str, ack: int, now: float,
                  log_id: Any = SAME, epoch: Any = SAME, sent: int = 0,
                  call: int | None = None, how: str = "heartbeat") -> bool:
        """A secondary answered (how: replicate, heartbeat or sync) with the log and epoch it
        follows; `sent` messages were in the call. Returns True when it is a new incarnation.
        Until it follows this master's log and epoch its entries may differ from the
        master's, so it holds nothing that counts."""
        sec = self.secondaries.get(name)
        if sec is None:                   # forgotten meanwhile (it left)
            return False
        was_synced = self.synced(name)
        if log_id is not SAME or epoch is not SAME or sec.incarnation != incarnation:
            sec.log_id = self.log_id if log_id is SAME else log_id
            sec.epoch = self.epoch if epoch is SAME else epoch
        counted = min(ack, self.log.last_seq) if self.synced(name) else 0
        restarted = sec.on_answer(incarnation, counted, now, self.pipeline.grace)
        sec.call_ended(call, failed=False)
        if restarted is None:             # a late answer of an earlier incarnation
            return False
        sec.sent += sent
        self._release()
        self._report_catchup(name, sec, restarted, self.synced(name) and not was_synced,
                             how, now)
        return restarted

    def _report_catchup(self, name: str, sec: Progress, restarted: bool, synced_now: bool,
                        how: str, now: float) -> None:
        """A restarted or newly synced secondary that lacks entries is being caught up: say
        so, and say when it has them all, with how many were sent and how long it took."""
        acked, durable = sec.acked, self.durable
        if restarted:
            self._event("restart", name, acked_seq=acked)
        if (restarted or synced_now) and acked < durable:
            sec.catchup_since, sec.catchup_from = now, acked
            self._event("catchup", name, from_seq=acked + 1, count=durable - acked)
        elif (restarted or synced_now) and sec.sent:
            self._event("caught_up", name, acked_seq=acked, sent=sec.sent, lacked=None,
                        seconds=None)
        elif restarted and sec.calls:
            # A heartbeat met the new incarnation after it had stored the replicate call that
            # is still out to it: that call's answer is the one that says what was sent.
            sec.catchup_since, sec.catchup_from = now, None
        elif sec.catchup_since is not None and acked >= durable and (
                how == "replicate" or sec.catchup_from is not None):
            start = sec.catchup_from
            self._event("caught_up", name, acked_seq=acked, sent=sec.sent,
                        lacked=None if start is None else acked - start,
                        seconds=now - sec.catchup_since)
            sec.catchup_since = sec.catchup_from = None

    def on_failure(self, name: str, now: float, rand: Callable[[], float],
                   call: int | None = None) -> float:
        """A call failed; returns how long to wait before trying again."""
        sec = self.secondaries.get(name)
        if sec is None:
            return 0.0
        sec.call_ended(call, failed=True)
        return sec.on_failure(now, self.backoff, rand)

    # -- health and quorum ------------------------------------------------------------
    def status(self, name: str, now: float) -> Status:
        sec = self.secondaries[name]
        return self.policy.status(sec.last_answer, now, sec.known_since)

    def quorum(self, now: float) -> Quorum:
        return quorum([self.status(name, now) for name in self.secondaries])

    def tick(self, now: float) -> None:
        """Report every health transition and a change of mode (read-only or not) as events.
        Appends check the quorum themselves, at their own `now`."""
        last = self.log.last_seq
        for name, sec in self.secondaries.items():
            status = self.status(name, now)
            old = sec.reported
            if old is not status and not (old is None and status is Status.UNHEALTHY):
                self._event("health", name, old=old and old.value, new=status.value,
                            lag=last - sec.acked)
            sec.reported = status
        q = self.quorum(now)
        if q.ok == self.read_only:
            self.read_only = not q.ok
            self._event("mode", ok=q.ok, available=q.available, size=q.size, reason=q.reason())
