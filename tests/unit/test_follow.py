"""The notifier that held long-polls and streams wait on (nodes/follow.py), on OS threads."""
import threading

import pytest

from nodes.follow import Notifier, events, stream, wait_for
from nodes.launcher import wait_until


class Node:
    """What a node offers a follower: a snapshot and a notifier advanced under its lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries, self.count = [], 0
        self.follow = Notifier()
        self.snapshots = 0

    def append(self, *messages):
        with self.lock:
            self.entries.extend(messages)
            self.count = len(self.entries)
            self.follow.advance(self.count)

    def snapshot(self):
        with self.lock:
            self.snapshots += 1
            return self.entries, self.count


class NoLock:
    def __enter__(self):
        raise AssertionError("advance() took the lock with nobody waiting for its seq")

    def __exit__(self, *exc):
        return False


def test_an_advance_nobody_waits_for_is_one_comparison():
    n = Notifier()
    n._lock = NoLock()
    for seq in range(1, 1000):
        n.advance(seq)                       # nobody waits: no lock, no event
    n._lock = threading.Lock()
    event = n.event(2000)
    n._lock = NoLock()
    n.advance(1500)                          # someone waits, but for a later seq
    assert not event.is_set()


def test_waiters_of_one_seq_share_an_event_set_once_by_the_advance_that_reaches_it():
    n = Notifier()
    a, b, later = n.event(3), n.event(3), n.event(5)
    assert a is b and a is not later and n.waiting == 3
    n.advance(2)
    assert not a.is_set()
    n.advance(4)
    assert a.is_set() and not later.is_set()
    assert list(n._wants) == [5]             # the woken seq is gone: no second wake
    n.advance(9)
    assert later.is_set() and n._wants == {} and n._heap == []


def test_done_forgets_seqs_nobody_waits_for():
    n = Notifier()
    for seq in range(10_000, 10_500):        # far-off seqs asked once, then given up
        n.done(seq, n.event(seq))
    assert n._wants == {} and len(n._heap) <= 64
    kept = n.event(7)
    n.done(7, n.event(7))                    # one of two waiters gives up: still waited for
    n.advance(7)
    assert kept.is_set()


def test_done_after_a_wake_leaves_a_new_waiter_of_the_same_seq_alone():
    n = Notifier()
    old = n.event(4)
    n.advance(4)
    new = n.event(4)
    n.done(4, old)
    assert n.waiting == 1
    n.advance(4)
    assert new.is_set()


def test_close_wakes_everyone_and_nobody_waits_after():
    n = Notifier()
    e = n.event(10)
    n.close()
    assert e.is_set() and n.event(11).is_set() and n.waiting == 0


def test_wait_for_answers_at_once_when_the_entries_are_there():
    node = Node()
    node.append("a", "b")
    assert wait_for(node, 2, 30) == (["a", "b"], 2)
    assert node.follow.waiting == 0


def test_wait_for_gives_up_after_its_timeout():
    node = Node()
    node.append("a")
    entries, count = wait_for(node, 2, 0.01)
    assert count == 1 and node.follow.waiting == 0


def test_wait_for_wakes_on_the_append_it_waits_for():
    node = Node()
    got = []
    t = threading.Thread(target=lambda: got.append(wait_for(node, 1, 60)[1]))
    t.start()
    wait_until(lambda: node.follow.waiting == 1, 10, what="the waiter to park")
    node.append("x")
    t.join(10)
    assert got == [1] and node.snapshots == 2   # one look before parking, one after the wake


def test_many_waiters_wake_once_per_advance_not_per_message():
    node = Node()
    got = []
    threads = [threading.Thread(target=lambda: got.append(wait_for(node, 1, 60)[1]))
               for _ in range(20)]
    for t in threads:
        t.start()
    wait_until(lambda: node.follow.waiting == 20, 10, what="20 waiters to park")
    looks = node.snapshots
    node.append(*[f"m{i}" for i in range(100)])   # one advance of 100 messages
    for t in threads:
        t.join(10)
    assert got == [100] * 20 and node.snapshots - looks == 20


def test_events_are_sse_with_the_seq_as_id_and_the_message_as_a_json_string():
    assert events(["a", 'say "hi"\nthere', "é"], 2, 3) == (
        'id: 2\ndata: "say \\"hi\\"\\nthere"\n\n' 'id: 3\ndata: "é"\n\n')


def test_stream_sends_backlog_in_chunks_then_follows_then_ends_on_close():
    node = Node()
    node.append(*[f"m{i}" for i in range(1, 6)])
    pauses = []
    out = stream(node, 2, keepalive=30, chunk=3, pause=pauses.append)
    assert next(out) == ": from seq 2\n\n"
    assert next(out) == events(node.entries, 2, 4)
    assert next(out) == events(node.entries, 5, 5) and pauses == [0.0]   # alone: no wait
    threading.Timer(0.01, node.append, args=("m6",)).start()
    assert next(out) == events(node.entries, 6, 6)
    threading.Timer(0.01, node.follow.close).start()
    assert list(out) == []                     # ends cleanly, no keep-alive on the way out


def test_stream_sends_a_keepalive_comment_in_silence():
    node = Node()
    out = stream(node, 1, keepalive=0.01)
    assert next(out).startswith(":")
    assert next(out) == ": keep-alive\n\n"
    node.append("a")
    assert next(out) == events(["a"], 1, 1)


def test_streams_wait_longer_between_writes_the_more_are_open():
    node = Node()
    node.append("a", "b")
    pauses = []
    many = [stream(node, 1, pause=pauses.append, cost=0.001) for _ in range(10)]
    for s in many:
        next(s)                                  # all ten open
    assert node.follow.streams == 10
    next(many[0])
    node.append("c")
    next(many[0])
    assert pauses == [pytest.approx(0.009)]      # 9 others x cost, after its first write
    for s in many:
        s.close()
    assert node.follow.streams == 0


def test_events_are_encoded_once_for_every_stream_and_never_across_a_cut():
    n = Notifier()
    entries = ["a", "b"]
    cache = n.encoded(entries)
    assert events(entries, 1, 2, cache) == events(["a", "b"], 1, 2)
    assert n.encoded(entries) is cache and set(cache) == {1, 2}
    cut = ["a", "B"]                     # a sync made a new list: seq 2 holds another message
    assert events(cut, 2, 2, n.encoded(cut)) == 'id: 2\ndata: "B"\n\n'
