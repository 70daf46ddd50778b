"""Epoch histories and the starting master's choice of log, on hand-made inputs."""
import pytest

from nodes.core import history as h
from nodes.core.health import HealthPolicy, Status
from nodes.core.master import MasterState, ReadOnly, Sync
from nodes.core.recovery import Copy, plan


def test_epoch_at_and_common_prefix():
    a = [[1, 1], [2, 11], [4, 21]]
    assert [h.epoch_at(a, s) for s in (1, 10, 11, 20, 21, 99)] == [1, 1, 2, 2, 4, 4]
    assert h.epoch_at([], 5) == 0
    # b diverged from a at seq 15: epoch 3 wrote 15.. in b, epoch 2 in a
    b = [[1, 1], [2, 11], [3, 15]]
    assert h.common_prefix(a, 30, b, 30) == 14
    assert h.common_prefix(a, 12, b, 30) == 12      # a shorter copy is all shared
    assert h.common_prefix(a, 30, a, 25) == 25
    assert h.common_prefix([[1, 1]], 10, [[2, 1]], 10) == 0
    assert h.common_prefix(a, 0, b, 30) == 0


def test_begin_epoch_cuts_epochs_that_wrote_nothing():
    assert h.begin_epoch([[1, 1], [2, 11]], 10, 3) == [[1, 1], [3, 11]]
    assert h.begin_epoch([[1, 1]], 0, 2) == [[2, 1]]
    with pytest.raises(ValueError):
        h.begin_epoch([[5, 1]], 3, 5)


def test_valid_history():
    assert h.valid([[1, 1], [2, 1], [5, 40]])
    for bad in ([[2, 1], [1, 5]], [[1, 5], [2, 3]], [[1, True]], "x", [[1]]):
        assert not h.valid(bad)


def test_master_with_its_disk_serves_it_and_takes_a_longer_secondary_copy():
    own = Copy("master", "L", [[1, 1]], 100)
    p = plan(own, [Copy("s1", "L", [[1, 1]], 90)], known=2, waited=False, new_log=False)
    assert (p.action, p.source.name, p.keep, p.epoch) == ("serve", "master", 100, 2)
    p = plan(own, [Copy("s1", "L", [[1, 1]], 105)], known=1, waited=False, new_log=False)
    assert (p.action, p.source.name, p.keep) == ("serve", "s1", 100)
    # a secondary of another log is ignored (it will be refused, not followed)
    p = plan(own, [Copy("s1", "X", [[7, 1]], 500)], known=1, waited=False, new_log=False)
    assert p.source.name == "master"


def test_empty_master_waits_for_every_secondary_then_adopts_the_longest():
    own = Copy("master", None, [], 0)
    s1 = Copy("s1", "L", [[1, 1], [2, 40]], 60)
    s2 = Copy("s2", "L", [[1, 1]], 80)       # longer, but an older epoch at its end
    assert plan(own, [s1], known=2, waited=False, new_log=False).action == "wait"
    p = plan(own, [s1, s2], known=2, waited=False, new_log=False)
    assert (p.action, p.source.name, p.keep, p.epoch) == ("serve", "s1", 0, 3)
    # after the wait, a quorum will do: 1 of 2 secondaries with the master is 2 of 3 nodes
    assert plan(own, [s2], known=2, waited=True, new_log=False).source.name == "s2"
    assert plan(own, [], known=2, waited=True, new_log=False).action == "wait"


def test_empty_master_starts_a_new_log_only_when_nobody_holds_one_or_when_told():
    own = Copy("master", None, [], 0)
    empty = [Copy("s1", None, [], 0), Copy("s2", None, [], 0)]
    assert plan(own, empty, known=2, waited=False, new_log=False).action == "new"
    assert plan(own, [], known=0, waited=False, new_log=False).action == "new"
    full = [Copy("s1", "L", [[1, 1]], 5)]
    assert plan(own, full, known=1, waited=False, new_log=True).action == "new"
    two = [Copy("s1", "L", [[1, 1]], 5), Copy("s2", "M", [[1, 1]], 5)]
    assert plan(own, two, known=2, waited=False, new_log=False).action == "wait"


def test_unknown_secondary_is_suspected_until_unhealthy_after_since_it_became_known():
    p = HealthPolicy(1.0, 3.0)
    assert p.status(None, 10.0, known_since=8.0) is Status.SUSPECTED
    assert p.status(None, 11.0, known_since=8.0) is Status.UNHEALTHY
    assert p.status(None, 11.0) is Status.UNHEALTHY


def test_master_is_writable_at_start_and_read_only_once_nobody_answered():
    st = MasterState(HealthPolicy(1.0, 3.0), named=("s1", "s2"), now=0.0)
    st.begin("L", [[1, 1]], 0)
    assert st.append("m", 1, now=0.5).seq == 1            # nobody heard from yet: unknown
    with pytest.raises(ReadOnly):
        st.append("m", 1, now=3.5)                          # nobody answered in 3 s
    st.on_answer("s1", "i1", 0, now=3.6)
    assert st.append("m", 1, now=3.7).seq == 2


def test_recovering_master_refuses_appends_with_the_reason():
    st = MasterState(named=(), now=0.0)
    st.recovering = "recovering: waiting"
    with pytest.raises(ReadOnly, match="recovering"):
        st.append("m", 1, now=0.0)


def test_durable_master_counts_itself_only_once_synced():
    st = MasterState(HealthPolicy(1.0, 3.0), named=("s1", "s2"), volatile=False, now=0.0)
    st.begin("L", [[1, 1]], 0)
    for n in ("s1", "s2"):
        st.set_uri(n, "PYRO:" + n, 0.0)
        st.on_answer(n, "i-" + n, 0, now=0.0)
    a = st.append("m1", 1, now=0.1, token="w1")
    assert a.acks == 0 and a.wait_id is not None           # not on disk yet
    b = st.append("m2", 2, now=0.1, token="w2")
    # the secondaries are sent the entries while the master's disk syncs
    assert st.next_batch("s1", 0.1).messages == ["m1", "m2"]
    st.on_answer("s1", "i-s1", 2, now=0.2)
    assert st.take_ready().released == []           # w=2 needs the master too
    st.on_durable(2)
    assert sorted(t for t, _ in st.take_ready().released) == ["w1", "w2"]
    assert b.seq == 2 and st.acks(2) == 2


def test_unsynced_secondary_is_synced_first_and_counts_nothing_until_then():
    st = MasterState(named=("s1",), now=0.0)
    st.begin("L", [[1, 1], [2, 4]], 0)
    st.set_uri("s1", "PYRO:s1", 0.0)
    st.append("a", 1, now=0.0)
    st.on_answer("s1", "i", 9, now=0.0, log_id="L", epoch=1)   # an older epoch's copy
    assert st.acks(1) == 1 and not st.synced("s1")
    action = st.next_batch("s1", 0.0)
    assert isinstance(action, Sync) and action.history == [[1, 1], [2, 4]]
    st.on_answer("s1", "i", 1, now=0.1, log_id="L", epoch=2)
    assert st.synced("s1") and st.acks(1) == 2


def test_a_discovered_secondary_that_unregistered_and_is_unhealthy_is_forgotten():
    st = MasterState(HealthPolicy(1.0, 3.0), named=("s1",), now=0.0)
    for n in ("s1", "s2", "s3"):
        st.set_uri(n, "PYRO:" + n, 0.0)
        st.on_answer(n, "i-" + n, 0, now=0.0)
    assert st.cluster_size == 4
    assert st.departed({"s3"}, now=1.0) == []            # s2 unregistered, but still Healthy
    assert st.departed({"s3"}, now=5.0) == ["s2"]         # named s1 stays; registered s3 stays
    assert sorted(st.secondaries) == ["s1", "s3"] and st.cluster_size == 3
