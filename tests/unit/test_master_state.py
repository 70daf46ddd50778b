import pytest

from nodes.core.health import HealthPolicy
from nodes.core.master import MasterState, ReadOnly, Sync
from nodes.core.progress import Backoff
from nodes.core.report import health


def released(st):
    """The tokens of the waits the last calls released."""
    return [token for token, _acks in st.take_ready().released]


def modes(st):
    return [e.fields for e in st.take_ready().events if e.kind == "mode"]


def make(named=("s1", "s2"), **kw):
    st = MasterState(HealthPolicy(1.0, 3.0), Backoff(0.1, 1.0), named=named, **kw)
    for n in named:
        st.set_uri(n, f"PYRO:x@{n}:1", 0.0)
        st.on_answer(n, "inst-" + n, 0, now=0.0)
    return st


def test_w1_needs_no_wait_and_w3_waits_for_both():
    st = make()
    a = st.append("m1", 1, now=0.1)
    assert a.seq == 1 and a.wait_id is None and a.acks == 1
    b = st.append("m2", 3, now=0.1, token="T")
    assert b.seq == 2 and b.wait_id is not None
    assert st.on_answer("s1", "inst-s1", 2, now=0.2) is False
    assert released(st) == []
    assert st.acks(2) == 2
    assert st.on_answer("s2", "inst-s2", 2, now=0.2) is False
    assert st.take_ready().released == [("T", 3)]
    assert st.acks(2) == 3


def test_next_batch_sends_everything_after_the_ack():
    st = make(max_batch=3)
    for i in range(5):
        st.append(f"m{i + 1}", 1, now=0.1)
    b = st.next_batch("s1", now=0.1)
    assert (b.first_seq, b.messages) == (1, ["m1", "m2", "m3"])
    st.on_answer("s1", "inst-s1", 3, now=0.2)
    b = st.next_batch("s1", now=0.2)
    assert (b.first_seq, b.messages) == (4, ["m4", "m5"])
    st.on_answer("s1", "inst-s1", 5, now=0.2)
    assert st.next_batch("s1", now=0.2) is None


def test_restarted_secondary_is_sent_the_whole_log_again():
    st = make()
    for i in range(3):
        st.append(f"m{i + 1}", 1, now=0.1)
    st.on_answer("s1", "inst-s1", 3, now=0.2)
    assert st.next_batch("s1", now=0.2) is None
    assert st.on_answer("s1", "new-incarnation", 0, now=0.3) is True
    assert st.next_batch("s1", now=0.3).messages == ["m1", "m2", "m3"]


def test_failure_backs_off_until_retry_time():
    st = make()
    st.append("m1", 1, now=0.1)
    wait = st.on_failure("s1", now=1.0, rand=lambda: 0.0)
    assert wait == pytest.approx(0.05)
    assert st.next_batch("s1", now=1.01) is None
    assert st.wake_at("s1") == pytest.approx(1.05)
    assert st.next_batch("s1", now=1.06) is not None


def test_unknown_uri_means_nothing_to_send():
    st = MasterState(named=["s1", "s2"])
    st.set_uri("s2", "PYRO:s2", 0.0)
    st.on_answer("s2", "i", 0, now=0.0)
    st.append("m", 1, now=0.0)
    assert st.next_batch("s1", now=0.0) is None      # not registered yet
    assert st.next_batch("s2", now=0.0).messages == ["m"]


def test_health_report_and_lag():
    st = make()
    st.append("a", 1, now=0.1)
    st.append("b", 1, now=0.1)
    st.on_answer("s1", "inst-s1", 2, now=0.5)
    h = health(st, now=1.4)
    assert h["last_seq"] == 2
    assert h["secondaries"]["s1"] == {"status": "Healthy", "acked_seq": 2, "lag": 0,
                                      "last_answer_age": 0.9, "uri": "PYRO:x@s1:1",
                                      "synced": True, "sent": 0, "in_flight": 0}
    assert h["secondaries"]["s2"]["status"] == "Suspected"
    assert h["secondaries"]["s2"]["lag"] == 2
    assert h["read_only"] is False


def test_read_only_without_quorum_and_back():
    st = make()
    st.append("a", 1, now=0.5)
    # nobody answered for 3 s: both Unhealthy, 1 of 3 nodes
    with pytest.raises(ReadOnly, match="no quorum"):
        st.append("b", 1, now=3.5)
    assert st.log.last_seq == 1
    st.tick(3.5)
    [mode] = modes(st)
    assert not mode["ok"] and mode["available"] == 1 and st.read_only
    st.tick(3.6)
    assert modes(st) == []
    st.on_answer("s2", "inst-s2", 1, now=3.7)
    st.tick(3.7)
    [mode] = modes(st)
    assert mode["ok"] and not st.read_only
    assert st.append("b", 1, now=3.8).seq == 2


def test_named_but_never_seen_secondary_counts_in_cluster_size():
    st = MasterState(named=["s1", "s2"])
    st.set_uri("s1", "PYRO:s1", 0.0)
    st.on_answer("s1", "i", 0, now=0.0)
    assert st.cluster_size == 3
    assert st.quorum(0.1).ok          # master + s1 of 3
    a = st.append("m3", 3, now=0.1, token="t")
    assert a.wait_id is not None


def test_discovered_secondary_joins_cluster():
    st = make()
    assert st.set_uri("s3", "PYRO:s3", 0.0) == "new"
    assert st.set_uri("s3", "PYRO:s3", 0.0) == "same"
    assert st.set_uri("s3", "PYRO:s3b", 0.0) == "moved"
    assert st.cluster_size == 4


def test_cancelled_wait_is_dropped():
    st = make()
    a = st.append("m", 2, now=0.1, token="t")
    assert st.cancel_wait(a.wait_id) is True
    assert len(st.waits) == 0
    st.on_answer("s1", "inst-s1", 1, now=0.2)
    assert released(st) == []


def test_idempotent_append_waits_on_first_seq():
    st = make()
    first = st.append("m", 1, now=0.1, key="k")
    again = st.append("m", 2, now=0.1, key="k", token="t")
    assert again.seq == first.seq and again.created is False and again.wait_id is not None
    assert st.log.last_seq == 1


def test_append_many_waits_on_last_seq():
    st = make()
    a = st.append_many(["a", "b", "c"], 2, now=0.1, token="t")
    assert a.seq == 3 and a.wait_id is not None
    st.on_answer("s1", "inst-s1", 2, now=0.2)
    assert released(st) == []
    st.on_answer("s1", "inst-s1", 3, now=0.2)
    assert released(st) == ["t"]


def test_repeated_key_is_answered_while_read_only():
    st = make()
    first = st.append("m", 1, now=0.1, key="k")
    with pytest.raises(ReadOnly):
        st.append("new", 1, now=10.0)
    again = st.append("m", 1, now=10.0, key="k")
    assert again.seq == first.seq and not again.created


def test_new_address_ends_the_backoff():
    st = make()
    st.append("m", 1, now=0.1)
    st.on_failure("s1", now=1.0, rand=lambda: 0.9)
    assert st.next_batch("s1", now=1.01) is None
    assert st.set_uri("s1", "PYRO:x@s1:2", 0.0) == "moved"
    sync = st.next_batch("s1", now=1.01)           # first: what does the new process follow?
    assert isinstance(sync, Sync) and sync.log_id == st.log_id
    st.on_answer("s1", "inst-s1-b", 0, now=1.02, log_id=st.log_id, epoch=st.epoch,
                 call=sync.call, how="sync")
    assert st.next_batch("s1", now=1.02).messages == ["m"]


def pipelined(window=4, after=0.002, max_batch=100):
    from nodes.core.calls import Pipeline
    st = make(max_batch=max_batch)
    st.pipeline = Pipeline(window=window, after=after, max_messages=max_batch)
    return st


def test_a_second_call_goes_out_only_after_the_first_has_been_out_a_while():
    st = pipelined()
    st.append("a", 1, now=0.0)
    first = st.next_batch("s1", now=0.0)
    assert (first.first_seq, first.messages) == (1, ["a"])
    st.append("b", 1, now=0.001)
    assert st.next_batch("s1", now=0.001) is None          # the first may answer soon
    assert st.wake_at("s1") == pytest.approx(0.002)
    second = st.next_batch("s1", now=0.002)
    assert (second.first_seq, second.messages) == (2, ["b"])
    assert st.next_batch("s1", now=0.003) is None          # nothing new
    st.on_answer("s1", "inst-s1", 2, now=0.004, call=second.call, how="replicate")
    assert st.secondaries["s1"].acked == 2                 # answers in any order
    st.on_answer("s1", "inst-s1", 1, now=0.005, call=first.call, how="replicate")
    sec = st.secondaries["s1"]
    assert sec.acked == 2 and not sec.calls and sec.sent_upto == 2


def test_the_window_and_the_entries_out_are_bounded():
    st = pipelined(window=2, max_batch=10)
    for i in range(30):
        st.append(f"m{i}", 1, now=0.0)
    first = st.next_batch("s1", now=0.0)
    assert len(first.messages) == 10
    assert st.next_batch("s1", now=1.0) is None            # 10 out: the secondary's limit
    assert st.wake_at("s1") is None                        # only an answer makes room
    st.on_answer("s1", "inst-s1", 5, now=1.0)              # a heartbeat: it stored 5 so far
    second = st.next_batch("s1", now=1.0)
    assert (second.first_seq, len(second.messages)) == (11, 5)
    assert st.next_batch("s1", now=2.0) is None and st.wake_at("s1") is None   # window full


def test_a_failed_call_sends_again_from_the_ack():
    st = pipelined()
    for i in range(3):
        st.append(f"m{i}", 1, now=0.0)
    first = st.next_batch("s1", now=0.0)
    st.append("m3", 1, now=0.01)
    second = st.next_batch("s1", now=0.01)
    assert second.first_seq == 4
    st.on_failure("s1", now=0.02, rand=lambda: 0.0, call=first.call)
    assert st.next_batch("s1", now=0.02) is None           # backing off
    again = st.next_batch("s1", now=1.0)
    assert (again.first_seq, again.messages) == (1, ["m0", "m1", "m2", "m3"])


def test_append_many_with_a_key_appends_once_and_waits_on_its_last_seq():
    st = make()
    first = st.append_many(["a", "b", "c"], 1, now=0.1, key="batch")
    assert (first.seq, first.created) == (3, True) and st.durable == 3
    again = st.append_many(["a", "b", "c"], 2, now=0.1, token="t", key="batch")
    assert (again.seq, again.created) == (3, False) and again.wait_id is not None
    assert st.log.last_seq == 3
    st.on_answer("s1", "inst-s1", 3, now=0.2)
    assert released(st) == ["t"]


def test_repeated_batch_key_is_answered_while_read_only_and_a_new_one_is_refused():
    st = make()
    st.append_many(["a", "b"], 1, now=0.1, key="k")
    again = st.append_many(["a", "b"], 1, now=10.0, key="k")
    assert again.seq == 2 and not again.created
    with pytest.raises(ReadOnly):
        st.append_many(["x"], 1, now=10.0, key="other")
    assert st.log.last_seq == 2 and st.log.seq_of("other") is None


def test_append_many_on_a_durable_log_waits_for_the_disk():
    st = make(volatile=False)
    a = st.append_many(["a", "b"], 1, now=0.1, token="t", key="k")
    assert a.wait_id is not None and st.durable == 0
    assert st.log.take_keys(1, 2) == {1: "k"}
    st.on_durable(2)
    assert released(st) == ["t"]
