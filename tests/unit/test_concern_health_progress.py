import pytest

from nodes.core.concern import Waits, holders, satisfied_up_to
from nodes.core.health import HealthPolicy, Status, quorum
from nodes.core.progress import Backoff, Progress


def test_holders_counts_master_and_acked_secondaries():
    assert holders(5, []) == 1
    assert holders(5, [5, 4, 7]) == 3


def test_satisfied_up_to():
    assert satisfied_up_to(1, [0, 0]) == float("inf")
    assert satisfied_up_to(2, [3, 7]) == 7
    assert satisfied_up_to(3, [3, 7]) == 3
    assert satisfied_up_to(4, [3, 7]) == 0


def tokens(released):
    return [token for token, _seq in released]


def test_waits_release_per_w_in_seq_order():
    waits = Waits()
    waits.add(1, 2, "a")
    waits.add(2, 3, "b")
    waits.add(3, 2, "c")
    assert waits.release([0, 0]) == []
    assert waits.release([1, 0]) == [("a", 1)]
    assert waits.release([3, 1]) == [("c", 3)]
    assert waits.release([3, 2]) == [("b", 2)]
    assert len(waits) == 0


def test_waits_cancelled_are_not_released():
    waits = Waits()
    wid = waits.add(1, 2, "gone")
    waits.add(1, 2, "kept")
    assert waits.cancel(wid) is True
    assert len(waits) == 1                   # forgotten at once, not when its seq is met
    assert tokens(waits.release([1])) == ["kept"]
    assert len(waits) == 0
    assert waits.cancel(wid) is False


def test_cancelled_waits_behind_an_unmet_seq_do_not_pile_up():
    """A secondary stays down while clients with w=3 keep timing out: the waits they gave
    up must not stay in memory until the secondary comes back."""
    waits = Waits()
    kept = waits.add(5, 3, "kept")
    for i in range(100_000):
        waits.cancel(waits.add(10 + i, 3, i))
    assert len(waits) == 1
    assert sum(len(heap) for heap in waits._heaps.values()) <= 2 * Waits.COMPACT_AT + 2
    assert tokens(waits.release([10**6, 10**6])) == ["kept"] and kept


def test_drain_gives_every_live_wait():
    waits = Waits()
    waits.add(1, 2, "a")
    waits.cancel(waits.add(2, 2, "b"))
    waits.add(3, 3, "c")
    assert sorted(tokens(waits.drain())) == ["a", "c"] and len(waits) == 0


def test_waits_out_of_order_seqs_for_same_w():
    waits = Waits()
    waits.add(9, 2, "late")
    waits.add(2, 2, "retry")   # an idempotent retry waits on an older seq
    assert tokens(waits.release([2])) == ["retry"]
    assert tokens(waits.release([9])) == ["late"]


def test_health_states_by_answer_age():
    p = HealthPolicy(suspect_after=1.0, unhealthy_after=3.0)
    assert p.status(None, 100.0) is Status.UNHEALTHY
    assert p.status(100.0, 100.5) is Status.HEALTHY
    assert p.status(100.0, 101.0) is Status.SUSPECTED
    assert p.status(100.0, 102.9) is Status.SUSPECTED
    assert p.status(100.0, 103.0) is Status.UNHEALTHY
    with pytest.raises(ValueError):
        HealthPolicy(suspect_after=3, unhealthy_after=1)


@pytest.mark.parametrize("statuses,ok", [
    ([], True),
    ([Status.UNHEALTHY], False),          # two nodes: the master alone is not a majority
    ([Status.HEALTHY, Status.UNHEALTHY], True),
    ([Status.SUSPECTED, Status.UNHEALTHY], True),
    ([Status.UNHEALTHY, Status.UNHEALTHY], False),
    ([Status.HEALTHY, Status.UNHEALTHY, Status.UNHEALTHY, Status.UNHEALTHY], False),
    ([Status.HEALTHY, Status.HEALTHY, Status.UNHEALTHY, Status.UNHEALTHY], True),
])
def test_quorum_majority_of_all_nodes(statuses, ok):
    q = quorum(statuses)
    assert q.size == 1 + len(statuses)
    assert q.needed == q.size // 2 + 1
    assert q.ok is ok
    assert (q.reason() is None) is ok


def test_backoff_grows_caps_and_jitters():
    b = Backoff(base=0.1, cap=1.0)
    assert b.delay(0, lambda: 0.5) == 0
    assert b.delay(1, lambda: 0.0) == pytest.approx(0.05)
    assert b.delay(1, lambda: 0.999) == pytest.approx(0.09995)
    assert b.delay(3, lambda: 0.0) == pytest.approx(0.2)
    assert b.delay(50, lambda: 0.0) == pytest.approx(0.5)   # capped at 1.0, times 0.5


def test_progress_restart_resets_ack_same_instance_only_grows():
    p = Progress()
    assert p.on_answer("i1", 5, now=1.0) is False
    assert p.on_answer("i1", 3, now=2.0) is False   # a stale heartbeat
    assert p.acked == 5
    assert p.on_answer("i2", 0, now=3.0) is True     # restarted empty
    assert p.acked == 0


def test_progress_failure_schedules_retry_and_answer_clears_it():
    p = Progress()
    wait = p.on_failure(10.0, Backoff(base=1.0, cap=8.0), lambda: 0.0)
    assert wait == 0.5 and p.retry_at == 10.5 and p.failures == 1
    p.on_failure(10.5, Backoff(base=1.0, cap=8.0), lambda: 0.0)
    assert p.failures == 2 and p.retry_at == 11.5
    p.on_answer("i", 0, now=12.0)
    assert p.failures == 0 and p.retry_at == 0.0
