"""The checker must pass a clean history and catch each kind of anomaly in hand-made ones."""

from __future__ import annotations


import pytest

from .checker import check, format_anomaly
from .history import (
    ERROR,
    INDETERMINATE,
    MASTER,
    OK,
    READ_ONLY,
    TIMEOUT,
    FaultEvent,
    History,
    Op,
    ReplicaSample,
)

SECS = ["s1", "s2", "s3"]
HEALTHY = {"status": "Healthy", "acked_seq": 6, "lag": 0}


def mk_op(i, msg, outcome, t0, t1, seq=None, w=1, key=None, status=None, acks=None):
    if status is None:
        status = {OK: 201, READ_ONLY: 503, TIMEOUT: 504}.get(outcome)
    if acks is None and outcome == OK:
        acks = w
    return Op(id=i, client=msg.split("-")[0], message=msg, w=w, timeout=None, invoke=t0,
              key=key, complete=t1, outcome=outcome, status=status, seq=seq, acks=acks,
              resp_w=w if outcome == OK else None)


def clean() -> History:
    """A small history with every kind of outcome, a kill/restart and a retry; it is correct."""
    h = History(seed=1, secondaries=SECS)
    h.ops = [
        mk_op(0, "c1-1", OK, 0.0, 0.1, seq=1, w=1),
        mk_op(1, "c1-2", OK, 0.2, 0.3, seq=2, w=3),
        mk_op(2, "c2-1", READ_ONLY, 2.0, 2.1),
        mk_op(3, "c2-2", TIMEOUT, 2.2, 3.2, seq=3, w=4, acks=2),
        mk_op(4, "c2-3", INDETERMINATE, 3.3, 7.3, w=4),  # appended as seq 4
        mk_op(5, "c1-3", INDETERMINATE, 3.4, 7.4, w=2),  # never appended
        mk_op(6, "c1-4", OK, 8.0, 8.1, seq=5, w=4),
        mk_op(7, "c3-1", INDETERMINATE, 8.2, 9.0, w=2, key="k3-1"),  # unanswered, appended...
        mk_op(8, "c3-1", OK, 9.1, 9.2, seq=6, w=2, key="k3-1"),  # ...and the retry says so
    ]
    h.replica_samples = [
        ReplicaSample(1, "s1", 0.31, 2), ReplicaSample(1, "s2", 0.32, 2),
        ReplicaSample(1, "s3", 0.33, 1),
        ReplicaSample(6, "s1", 8.11, 5), ReplicaSample(6, "s2", 8.12, 5),
        ReplicaSample(6, "s3", 8.13, 5),
        ReplicaSample(8, "s1", 9.21, 6), ReplicaSample(8, "s2", 9.22, None),
        ReplicaSample(8, "s3", 9.23, 4),
    ]
    h.faults = [
        FaultEvent(1.0, "kill", "s1"), FaultEvent(1.2, "kill", "s2"),
        FaultEvent(4.0, "restart", "s1", took=0.5), FaultEvent(4.5, "restart", "s2", took=0.5),
        FaultEvent(8.5, "faults", "s2", {"delay": 0.6}),
        FaultEvent(9.5, "faults", "s2", {"delay": 0.0}),
    ]
    final = ["c1-1", "c1-2", "c2-2", "c2-3", "c1-4", "c3-1"]
    # during the run: prefixes; s1 and s2 restart empty and catch up
    h.list_sample("s1", ["c1-1"], t=0.15)
    h.list_sample("s1", ["c1-1", "c1-2"], t=0.5)
    h.list_sample("s1", [], t=4.6)
    h.list_sample("s1", final[:4], t=7.5)
    h.list_sample("s2", final[:2], t=0.5)
    h.list_sample("s2", final[:3], t=5.0)
    h.list_sample(MASTER, final[:3], t=3.0)
    h.list_sample(MASTER, final[:5], t=8.2)
    h.final.converged = True
    h.final.converge_time = 1.0
    h.final.lists = {MASTER: list(final), "s1": list(final), "s2": list(final),
                     "s3": list(final)}
    h.final.health = {"role": "master", "read_only": False, "reason": None, "last_seq": 6,
                      "secondaries": {n: dict(HEALTHY) for n in SECS}}
    h.meta.update(down_grace=2.0, up_grace=3.0)
    return h


def kinds(h: History) -> list[str]:
    return sorted({a.kind for a in check(h)})


def test_clean_history_passes():
    h = clean()
    assert check(h) == []


def test_clean_history_survives_json(tmp_path):
    h = clean()
    p = tmp_path / "history.json"
    h.save(p)
    h2 = History.load(p)
    assert check(h2) == []
    assert [op.describe() for op in h2.ops] == [op.describe() for op in h.ops]
    assert list(h2.iter_list_samples()) == list(h.iter_list_samples())


def test_list_samples_are_stored_as_deltas_and_rebuilt():
    h = History(secondaries=SECS)
    seqs = [["a"], ["a", "b", "c"], [], ["a"], ["a", "x"], ["a", "x", "y"]]
    for i, lst in enumerate(seqs):
        h.list_sample("s1", lst, t=float(i))
    assert [lst for _, _, lst in h.iter_list_samples()] == seqs
    assert [r.tail for r in h.list_samples] == [["a"], ["b", "c"], [], ["a"], ["x"], ["y"]]


# -- each anomaly ---------------------------------------------------------------------------

def test_lost_ack_on_a_secondary():
    h = clean()
    h.final.lists["s2"].remove("c1-4")
    found = check(h)
    lost = [a for a in found if a.kind == "lost_ack"]
    assert len(lost) == 1 and lost[0].ops == [6] and lost[0].nodes == ["s2"]
    assert "divergence" in kinds(h)


def test_lost_ack_on_every_node():
    h = clean()
    for lst in h.final.lists.values():
        lst.remove("c1-2")
    h.final.health["last_seq"] = 5
    lost = [a for a in check(h) if a.kind == "lost_ack"]
    assert lost and lost[0].nodes == [MASTER, "s1", "s2", "s3"]


def test_duplicate_on_master():
    h = clean()
    for n in h.final.lists:
        h.final.lists[n].append("c1-3")
        h.final.lists[n].append("c1-3")
    h.final.health["last_seq"] = 8
    dup = [a for a in check(h) if a.kind == "duplicate"]
    assert {a.nodes[0] for a in dup} == {MASTER, "s1", "s2", "s3"}
    assert all(a.ops == [5] for a in dup)


def test_duplicate_on_one_secondary_only():
    h = clean()
    h.final.lists["s3"].append("c1-1")
    assert {"duplicate", "divergence"} <= set(kinds(h))


def test_idempotent_retry_appended_twice_is_a_duplicate():
    h = clean()
    for n in h.final.lists:
        h.final.lists[n].append("c3-1")
    h.final.health["last_seq"] = 7
    assert "duplicate" in kinds(h)


def test_reorder_on_a_secondary():
    h = clean()
    s = h.final.lists["s1"]
    s[1], s[2] = s[2], s[1]
    found = [a for a in check(h) if a.kind == "reorder"]
    assert len(found) == 1 and found[0].nodes == ["s1"]
    assert "position 2" in found[0].evidence[0]


def test_realtime_order_violation():
    h = clean()
    # c1-4 finished at 8.1 with seq 5; an op started afterwards must get a higher seq
    h.ops.append(mk_op(9, "c4-1", OK, 8.15, 8.3, seq=5, w=1))
    h.ops[6] = mk_op(6, "c1-4", OK, 8.0, 8.1, seq=6, w=4)
    for n in h.final.lists:
        h.final.lists[n][4:] = ["c4-1", "c1-4", "c3-1"]
    h.ops[8] = mk_op(8, "c3-1", OK, 9.1, 9.2, seq=7, w=2, key="k3-1")
    h.final.health["last_seq"] = 7
    h.replica_samples = []
    found = [a for a in check(h) if a.kind == "realtime_order"]
    assert len(found) == 1 and found[0].ops == [6, 9]


def test_wrong_seq_for_an_ok_message():
    h = clean()
    h.ops[6].seq = 4
    found = [a for a in check(h) if a.kind == "wrong_seq"]
    assert len(found) == 1 and found[0].ops == [6]


def test_wrong_seq_for_a_504():
    h = clean()
    h.ops[3].seq = 4  # the master has c2-3 at seq 4
    assert "wrong_seq" in kinds(h)


def test_retries_answered_with_different_seqs():
    h = clean()
    h.ops[7] = mk_op(7, "c3-1", TIMEOUT, 8.2, 9.0, seq=4, w=2, key="k3-1", acks=1)
    assert "wrong_seq" in kinds(h)


def test_message_from_a_503_appears():
    h = clean()
    for n in h.final.lists:
        h.final.lists[n].append("c2-1")
    h.final.health["last_seq"] = 7
    found = [a for a in check(h) if a.kind == "read_only_appended"]
    assert len(found) == 1 and found[0].ops == [2]
    assert set(found[0].nodes) == {MASTER, "s1", "s2", "s3"}


def test_message_from_a_503_seen_only_during_the_run():
    h = clean()
    h.list_sample("s3", ["c1-1", "c1-2", "c2-1"], t=2.5)
    assert {"read_only_appended", "not_prefix"} <= set(kinds(h))


def test_message_from_a_400_appears():
    h = clean()
    h.ops[5] = mk_op(5, "c1-3", ERROR, 3.4, 3.5, w=2, status=400)
    for n in h.final.lists:
        h.final.lists[n].append("c1-3")
    h.final.health["last_seq"] = 7
    assert {"read_only_appended", "unexpected_status"} <= set(kinds(h))


def test_503_then_successful_retry_is_fine():
    h = clean()
    h.ops[7] = mk_op(7, "c3-1", READ_ONLY, 8.2, 9.0, w=2, key="k3-1")
    assert check(h) == []


def test_secondary_sample_not_a_prefix_gap():
    h = clean()
    h.list_sample("s3", ["c1-1", "c2-2"], t=5.5)  # c1-2 missing: showed past a gap
    found = [a for a in check(h) if a.kind == "not_prefix"]
    assert len(found) == 1 and found[0].nodes == ["s3"]
    assert "position 2" in found[0].detail and found[0].ops == [3]


def test_secondary_sample_with_a_message_that_later_vanished():
    h = clean()
    h.list_sample("s2", ["c1-1", "c1-2", "c2-2", "c1-3"], t=6.0)
    assert "not_prefix" in kinds(h)


def test_master_sample_not_a_prefix():
    h = clean()
    h.list_sample(MASTER, ["c1-2"], t=0.4)
    assert [a.nodes for a in check(h) if a.kind == "not_prefix"] == [[MASTER]]


def test_unhealthy_at_end():
    h = clean()
    h.final.health["secondaries"]["s2"]["status"] = "Suspected"
    found = [a for a in check(h) if a.kind == "unhealthy_at_end"]
    assert len(found) == 1 and found[0].nodes == ["s2"]


def test_read_only_at_end_and_missing_secondary():
    h = clean()
    h.final.health["read_only"] = True
    del h.final.health["secondaries"]["s3"]
    assert len([a for a in check(h) if a.kind == "unhealthy_at_end"]) == 2


def test_last_seq_differs_from_the_list():
    h = clean()
    h.final.health["last_seq"] = 9
    assert kinds(h) == ["unhealthy_at_end"]


def test_under_replicated_write_concern():
    h = clean()
    # c1-2 (seq 2) acked for w=3: s1 holds it, s2 and s3 do not
    h.replica_samples[1] = ReplicaSample(1, "s2", 0.32, 1)
    found = [a for a in check(h) if a.kind == "under_replicated"]
    assert len(found) == 1 and found[0].ops == [1] and found[0].nodes == ["s2", "s3"]
    text = format_anomaly(h, found[0])
    assert "sample after op#1: s2 messages=1" in text and "op#1" in text


def test_under_replicated_w4_with_one_lagging():
    h = clean()
    h.replica_samples[3] = ReplicaSample(6, "s1", 8.11, 4)
    assert kinds(h) == ["under_replicated"]


def test_no_answer_or_kill_after_ack_is_not_blamed():
    h = clean()
    h.replica_samples[1] = ReplicaSample(1, "s2", 0.32, None)  # paused: no answer
    h.replica_samples[2] = ReplicaSample(1, "s3", 0.45, 0)  # restarted empty...
    h.faults.append(FaultEvent(0.35, "kill", "s3"))  # ...after a kill right after the ack
    h.faults.append(FaultEvent(0.40, "restart", "s3"))
    h.faults.sort(key=lambda f: f.t)
    assert "under_replicated" not in kinds(h)
    # but a kill of another node does not excuse s3 (s2 answered and lacks it)
    h.replica_samples[1] = ReplicaSample(1, "s2", 0.32, 1)
    h.faults = [f for f in h.faults if f.t not in (0.35, 0.40)]
    h.faults.insert(0, FaultEvent(0.35, "kill", "s1"))
    h.faults.insert(1, FaultEvent(0.40, "restart", "s1"))
    assert "under_replicated" in kinds(h)


def test_kill_since_the_first_attempt_excuses_a_retry():
    h = clean()
    # the retry op#8 (seq 6, w=2) came back at once; s1 had been killed after the first attempt
    h.replica_samples[6:9] = [ReplicaSample(8, "s1", 9.21, 0), ReplicaSample(8, "s2", 9.22, 4),
                              ReplicaSample(8, "s3", 9.23, 4)]
    assert kinds(h) == ["under_replicated"]
    h.faults.append(FaultEvent(8.5, "kill", "s1"))
    h.faults.sort(key=lambda f: f.t)
    assert "under_replicated" not in kinds(h)


def test_phantom_message():
    h = clean()
    h.final.lists["s1"].append("zz-1")
    assert {"phantom", "divergence"} <= set(kinds(h))


def test_bad_ack_body():
    h = clean()
    h.ops[6].acks = 3  # w=4
    assert kinds(h) == ["bad_ack"]


def test_no_convergence():
    h = clean()
    h.final.converged = False
    h.final.errors.append("not converged within 30s")
    h.final.lists["s3"] = None
    found = [a for a in check(h) if a.kind == "no_convergence"]
    assert len(found) == 2


def test_unfinished_op():
    h = clean()
    h.ops[5].outcome = None
    h.ops[5].complete = None
    assert kinds(h) == ["unfinished_op"]


def test_write_accepted_without_quorum():
    h = clean()
    # s1 and s2 are down from 1.0/1.2 to 4.0/4.5; with down_grace 2 the master must be read-only
    # from 3.2 until 4.0; a write accepted entirely within that window is an anomaly
    h.ops.append(mk_op(9, "c4-1", TIMEOUT, 3.3, 3.9, seq=7, w=1, acks=1))
    for n in h.final.lists:
        h.final.lists[n].append("c4-1")
    h.final.health["last_seq"] = 7
    found = [a for a in check(h) if a.kind == "write_without_quorum"]
    assert len(found) == 1 and found[0].ops == [9] and found[0].nodes == ["s1", "s2"]
    # ... but not one that started before the master could know
    h.ops[9].invoke = 2.5
    assert "write_without_quorum" not in kinds(h)


def test_spurious_read_only():
    h = clean()
    h.ops.append(mk_op(9, "c4-1", READ_ONLY, 20.0, 20.1))
    found = [a for a in check(h) if a.kind == "spurious_read_only"]
    assert len(found) == 1 and found[0].ops == [9]
    # a 503 soon after a fault ended is fine
    h.ops[9].invoke, h.ops[9].complete = 11.0, 11.1
    assert check(h) == []


def test_quorum_checks_off_without_thresholds():
    h = clean()
    h.meta.clear()
    h.ops.append(mk_op(9, "c4-1", READ_ONLY, 20.0, 20.1))
    assert check(h) == []


@pytest.mark.parametrize("n", [1, 7])
def test_many_anomalies_of_one_kind_are_capped(n):
    h = clean()
    for i in range(n):
        msg = f"c9-{i}"
        h.ops.append(mk_op(len(h.ops), msg, OK, 20.0 + i, 20.5 + i, seq=7 + i))
        h.final.lists[MASTER].append(msg)
    h.final.health["last_seq"] = 6 + n
    found = check(h)
    lost = [a for a in found if a.kind == "lost_ack"]
    assert len(lost) == min(n, 5) + (1 if n > 5 else 0)


def test_format_anomaly_shows_ops_faults_and_evidence():
    h = clean()
    h.ops.append(mk_op(9, "c4-1", TIMEOUT, 3.3, 3.9, seq=7, w=1, acks=1))
    for n in h.final.lists:
        h.final.lists[n].append("c4-1")
    h.final.health["last_seq"] = 7
    a = next(a for a in check(h) if a.kind == "write_without_quorum")
    text = format_anomaly(h, a)
    assert "op#9" in text and "kill    s1" in text and "kill    s2" in text
    h2 = clean()
    h2.final.lists["s1"][1], h2.final.lists["s1"][2] = "c2-2", "c1-2"
    a = next(a for a in check(h2) if a.kind == "reorder")
    assert "master: 1:c1-1, 2:c1-2" in format_anomaly(h2, a)
