"""The secondary's service (nodes.secondary_node.Secondary) on real OS threads: injected
delays that can be lifted, heartbeats that do not wait for the disk, read() bounds, and
replicate calls that arrive concurrently, out of order and repeated (a pipelining master)."""
import random
import threading
import time
from types import SimpleNamespace

import pytest

from nodes.launcher import wait_until
from nodes.secondary_node import Secondary
from nodes.storage.store import Store

LOG, HISTORY = "L1", [[1, 1]]


class Call:
    """fn(*args) on a daemon thread (a call stuck by a defect must not hang pytest's exit)."""

    def __init__(self, fn, *args):
        self.value = self.error = None
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(fn, args), daemon=True).start()

    def _run(self, fn, args):
        try:
            self.value = fn(*args)
        except BaseException as e:   # handed to the test by result()
            self.error = e
        finally:
            self.done.set()

    def result(self, timeout):
        if not self.done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value


class FakeStore:
    """Records writes; commit() blocks while `gate` is clear; write() can be made to fail."""

    def __init__(self):
        self.path, self.mode = "/fake", "always"
        self.records = []               # (first_seq, messages) per write
        self.committed = 0              # entries covered by a finished commit
        self.gate = threading.Event()
        self.gate.set()
        self.committing = threading.Event()
        self.fail_writes = 0
        self.meta = None

    def load(self, max_keys=0):
        return SimpleNamespace(log_id=None, history=[], messages=[], keys={})

    @property
    def written(self):
        return sum(len(m) for _, m in self.records)

    def write(self, first_seq, messages, keys=None):
        if self.fail_writes:
            self.fail_writes -= 1
            raise OSError(28, "No space left on device")
        assert first_seq == self.written + 1, f"gap or overlap: write at {first_seq}"
        self.records.append((first_seq, list(messages)))

    def commit(self):
        self.committing.set()
        assert self.gate.wait(30), "the test never opened the gate"
        self.committed = self.written

    def truncate(self, keep):
        flat = [m for _, ms in self.records for m in ms][:keep]
        self.records = [(1, flat)] if flat else []
        self.committed = min(self.committed, keep)

    def save_meta(self, log_id, history):
        self.meta = (log_id, history)


def synced(**kw):
    s = Secondary("s", allow_faults=True, **kw)
    s.sync(LOG, HISTORY, 0)
    return s


def msgs(first, last):
    return [f"m{i}" for i in range(first, last + 1)]


def replicate(s, first, last):
    return s.replicate(LOG, 1, first, msgs(first, last))


# 1. An injected delay is a wait that set_faults() cuts short.

def test_lowering_the_delay_to_zero_releases_a_waiting_replicate_at_once():
    s = synced(delay=600)
    call = Call(replicate, s, 1, 1)
    wait_until(lambda: s.stats.injected_delays == 1, 10, what="the call to start waiting")
    assert not call.done.wait(0.1)
    lowered = time.monotonic()
    s.set_faults(delay=0)
    assert call.result(10)["ack"] == 1
    assert time.monotonic() - lowered < 0.5      # not when the old 600 s run out
    assert s.messages() == ["m1"]


def test_a_changed_delay_counts_from_the_start_of_the_call():
    now = [100.0]
    s = synced(delay=10, clock=lambda: now[0])
    call = Call(replicate, s, 1, 1)
    wait_until(lambda: s.stats.injected_delays == 1, 10, what="the call to start waiting")
    now[0] = 107.0
    s.set_faults(delay=6)     # ends at 100 + 6, already past: no fresh 6 s from now
    assert call.result(5)["ack"] == 1


# 2. heartbeat() does not wait for a disk sync, and its ACK is only what is on disk.

def test_heartbeat_answers_while_a_commit_blocks_and_its_ack_excludes_unsynced_entries():
    store = FakeStore()
    s = synced(store=store)
    assert replicate(s, 1, 3)["ack"] == 3
    store.gate.clear()
    store.committing.clear()
    slow = Call(replicate, s, 4, 6)
    assert store.committing.wait(10), "the second call never reached commit()"
    beat = Call(s.heartbeat, LOG, 1)
    assert beat.result(2) == {"incarnation": s.incarnation, "ack": 3, "log_id": LOG, "epoch": 1}
    assert Call(s.history).result(2)["ack"] == 3
    assert Call(s.health).result(2)["messages"] == 3
    assert Call(s.tail, 10).result(2)["ack"] == 3
    entries, count = Call(s.snapshot).result(2)
    assert entries[:count] == msgs(1, 3)
    assert Call(s.read, LOG, 1, 100).result(2) == msgs(1, 3)
    assert not slow.done.is_set()
    store.gate.set()
    assert slow.result(10)["ack"] == 6
    assert s.heartbeat()["ack"] == 6 and store.committed == 6


def test_a_replicate_that_arrives_during_a_commit_is_not_acked_before_its_own_commit():
    store = FakeStore()
    s = synced(store=store)
    store.gate.clear()
    first = Call(replicate, s, 1, 3)
    assert store.committing.wait(10)
    second = Call(replicate, s, 4, 5)
    assert not second.done.wait(0.2)    # 4..5 are not on disk yet: no ACK for them
    store.gate.set()
    assert first.result(10)["ack"] >= 3 and second.result(10)["ack"] == 5
    assert store.committed == 5


def test_after_a_failed_disk_write_the_retry_writes_it_and_no_ack_covers_unwritten_entries():
    store = FakeStore()
    s = synced(store=store)
    store.fail_writes = 1
    with pytest.raises(OSError):
        replicate(s, 1, 3)
    assert s.heartbeat()["ack"] == 0
    assert replicate(s, 1, 3)["ack"] == 3          # the master's retry
    assert store.records == [(1, msgs(1, 3))] and store.committed == 3


def test_a_sync_waits_for_the_commit_in_progress_then_cuts_the_store():
    store = FakeStore()
    s = synced(store=store)
    replicate(s, 1, 3)
    store.gate.clear()
    store.committing.clear()
    slow = Call(replicate, s, 4, 6)
    assert store.committing.wait(10)
    new_epoch = Call(s.sync, LOG, [[1, 1], [2, 4]], 3)     # the master's 4.. differ
    assert not new_epoch.done.wait(0.2)                    # it must not cut under a write
    assert s.heartbeat()["ack"] == 3
    store.gate.set()
    assert new_epoch.result(10) == {"incarnation": s.incarnation, "ack": 3, "log_id": LOG,
                                    "epoch": 2}
    try:      # answered before the sync ran, or refused: its ACK is of the old epoch
        assert slow.result(10)["ack"] == 6
    except PermissionError as e:
        assert "re-synced" in str(e)
    assert s.heartbeat() == {"incarnation": s.incarnation, "ack": 3, "log_id": LOG, "epoch": 2}
    assert store.records == [(1, msgs(1, 3))] and s.messages() == msgs(1, 3)
    assert s.replicate(LOG, 2, 4, ["n4"])["ack"] == 4


# 3. read() bounds.

@pytest.mark.parametrize("first_seq", [0, -1, -5, True, 1.0, "1", None])
def test_read_refuses_a_first_seq_that_is_not_a_positive_int(first_seq):
    s = synced()
    replicate(s, 1, 5)
    with pytest.raises(ValueError, match="first_seq"):
        s.read(LOG, first_seq, 2)


@pytest.mark.parametrize("limit", [-1, True, 2.0, "2", None])
def test_read_refuses_a_limit_that_is_not_a_non_negative_int(limit):
    s = synced()
    replicate(s, 1, 5)
    with pytest.raises(ValueError, match="limit"):
        s.read(LOG, 1, limit)


def test_read_pages_from_first_seq():
    s = synced()
    replicate(s, 1, 5)
    assert s.read(LOG, 1, 2) == ["m1", "m2"]
    assert s.read(LOG, 4, 10) == ["m4", "m5"]
    assert s.read(LOG, 6, 10) == [] and s.read(LOG, 1, 0) == []


# 5. Pipelined replicate calls: concurrent, out of order, overlapping.

def test_two_delayed_calls_sent_at_once_wait_their_delays_together():
    s = synced(delay=1)
    started = time.monotonic()
    calls = [Call(replicate, s, 1, 10), Call(replicate, s, 11, 20)]
    acks = [c.result(10)["ack"] for c in calls]
    assert time.monotonic() - started < 1.8      # 2 s or more if the delays ran in turn
    assert max(acks) == 20 and s.messages() == msgs(1, 20)


def test_a_later_batch_that_arrives_first_is_held_back_and_the_disk_never_has_a_gap(tmp_path):
    store = Store(tmp_path / "d", "always", offload=False)
    writes = []
    real_write = store.write
    store.write = lambda first, messages, keys=None: (writes.append((first, len(messages))),
                                                      real_write(first, messages, keys))
    s = synced(store=store)
    assert replicate(s, 11, 20)["ack"] == 0
    assert s.heartbeat()["ack"] == 0 and writes == []     # held in memory only
    assert replicate(s, 1, 10)["ack"] == 20
    assert writes == [(1, 20)]
    store.close()
    again = Store(tmp_path / "d", "always", offload=False)
    try:
        assert again.load(max_keys=0).messages == msgs(1, 20)
    finally:
        again.close()


def test_a_repeated_or_overlapping_retry_answers_the_ack_and_stores_nothing_twice():
    store = FakeStore()
    s = synced(store=store)
    assert replicate(s, 1, 10)["ack"] == 10
    assert replicate(s, 1, 10)["ack"] == 10
    assert replicate(s, 5, 15)["ack"] == 15
    assert replicate(s, 12, 13)["ack"] == 15
    assert store.records == [(1, msgs(1, 10)), (11, msgs(11, 15))]
    assert s.messages() == msgs(1, 15)


def test_many_concurrent_shuffled_and_repeated_batches_end_as_one_gap_free_log(tmp_path):
    store = Store(tmp_path / "d", "always", offload=False)
    s = synced(store=store)
    batches = [(first, first + 4) for first in range(1, 200, 5)]
    batches += random.Random(7).sample(batches, 15)          # retries
    random.Random(8).shuffle(batches)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not batches:
                    return
                first, last = batches.pop()
            replicate(s, first, last)

    workers = [Call(worker) for _ in range(4)]     # a window of 4 calls in flight
    for w in workers:
        w.result(60)
    assert s.heartbeat()["ack"] == 200 and s.messages() == msgs(1, 200)
    store.close()
    again = Store(tmp_path / "d", "always", offload=False)
    try:
        assert again.load(max_keys=0).messages == msgs(1, 200)
    finally:
        again.close()
