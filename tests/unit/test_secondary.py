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
        return SimpleNamespace(log_id=None, history=[], messages=[])

    @property
    def written(self):
        return sum(len(m) for _, m in self.records)

    def write(self, first_seq, messages):
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
        raise AssertionError("nothing here should cut the log")

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
