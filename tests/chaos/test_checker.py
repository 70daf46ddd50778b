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
    UNAVAILABLE,
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


# -- master kill -9 and restart with its data directory ---------------------------------------

def restarted(c2_2_survives: bool = True) -> History:
    """A correct history around a master kill at 1.5 and its restart (2.0, took 0.3).

    Before the kill: c1-1, c2-1 acknowledged; c2-2 (w=3) was appended and synced but its
    client lost the connection in the kill (indeterminate); c3-1 got a 504 with acks=0 (not on
    the master's disk yet) and c4-1 was sent just before the kill: both lost with the unsynced
    tail. While the master is down clients are refused (unavailable). After the restart the
    master goes on from its disk: c1-3 gets the seq c3-1 had been told, and c3-1's idempotent
    retry appends it again, further on."""
    h = History(seed=2, secondaries=SECS)
    at = 4 if c2_2_survives else 3
    h.ops = [
        mk_op(0, "c1-1", OK, 0.0, 0.1, seq=1, w=1),
        mk_op(1, "c2-1", OK, 0.2, 0.3, seq=2, w=2),
        mk_op(2, "c2-2", INDETERMINATE, 0.4, 1.5, w=3),
        mk_op(3, "c3-1", TIMEOUT, 1.0, 1.3, seq=at, w=4, key="k3-1", acks=0),
        mk_op(4, "c4-1", INDETERMINATE, 1.4, 1.5, w=1),
        mk_op(5, "c1-2", UNAVAILABLE, 1.6, 1.61, w=1),
        mk_op(6, "c4-2", UNAVAILABLE, 1.9, 1.91, w=2),
        mk_op(7, "c1-3", OK, 2.35, 2.4, seq=at, w=1),
        mk_op(8, "c3-1", OK, 2.45, 2.5, seq=at + 1, w=4, key="k3-1"),
        mk_op(9, "c1-4", OK, 2.6, 2.7, seq=at + 2, w=1),
    ]
    final = ["c1-1", "c2-1"] + (["c2-2"] if c2_2_survives else []) + ["c1-3", "c3-1", "c1-4"]
    n = len(final)
    h.replica_samples = [
        ReplicaSample(1, "s1", 0.31, 2), ReplicaSample(1, "s2", 0.32, 1),
        ReplicaSample(1, "s3", 0.33, 1),
        ReplicaSample(8, "s1", 2.51, at + 1), ReplicaSample(8, "s2", 2.52, at + 1),
        ReplicaSample(8, "s3", 2.53, at + 1),
    ]
    h.faults = [FaultEvent(1.5, "kill", MASTER), FaultEvent(2.0, "restart", MASTER, took=0.3)]
    h.list_sample(MASTER, final[:at - 1], t=1.2)  # the master only serves what it synced
    h.list_sample("s1", final[:at - 1], t=1.7)
    h.list_sample(MASTER, final[:at], t=2.45)
    h.final.converged = True
    h.final.converge_time = 0.5
    h.final.lists = {node: list(final) for node in [MASTER] + SECS}
    h.final.health = {"role": "master", "read_only": False, "reason": None, "last_seq": n,
                      "log_id": "L1", "epoch": 2,
                      "secondaries": {s: {"status": "Healthy", "acked_seq": n, "lag": 0}
                                      for s in SECS}}
    h.meta.update(down_grace=2.0, up_grace=3.0, data_dirs=True, log_id="L1")
    return h


def _final(h: History, lst: list[str]) -> None:
    h.final.lists = {node: list(lst) for node in h.final.lists}
    h.final.health["last_seq"] = len(lst)


@pytest.mark.parametrize("c2_2_survives", [True, False])
def test_master_restart_history_passes(c2_2_survives):
    # indeterminate ops (c2-2, c4-1) and a 504 with acks=0 lost across the restart are fine,
    # and so is the seq of that 504 going to another message, and its retry appending it
    assert check(restarted(c2_2_survives)) == []


def test_acknowledged_write_missing_after_master_restart():
    h = restarted()
    # c2-2 was acknowledged (201, seq 3), but the restarted master lacks it and gave seq 3 to
    # c1-3: it acknowledged a write that was not on its disk
    h.ops[2] = mk_op(2, "c2-2", OK, 0.4, 0.5, seq=3, w=1)
    h.ops[7].seq, h.ops[8].seq, h.ops[9].seq = 3, 4, 5
    _final(h, ["c1-1", "c2-1", "c1-3", "c3-1", "c1-4"])
    h.list_samples.clear()
    found = check(h)
    lost = [a for a in found if a.kind == "lost_ack"]
    assert len(lost) == 1 and lost[0].ops == [2] and lost[0].nodes == [MASTER] + SECS
    assert "master killed at 1.500" in lost[0].evidence[0]
    reused = [a for a in found if a.kind == "seq_reused"]
    assert len(reused) == 1 and reused[0].ops == [2, 7]
    assert "master killed at 1.500" in format_anomaly(h, reused[0])


def test_seq_reused_for_two_acknowledged_messages():
    h = restarted()
    h.ops[2] = mk_op(2, "c2-2", OK, 0.4, 0.5, seq=3, w=1)
    h.ops[7].seq = 3  # c1-3 is told seq 3 too, yet the log holds both
    found = check(h)
    reused = [a for a in found if a.kind == "seq_reused"]
    assert len(reused) == 1 and reused[0].ops == [2, 7] and "seq=3" in reused[0].detail
    assert {a.kind for a in found} == {"seq_reused", "wrong_seq"}


def test_seq_reused_even_without_final_positions_agreeing():
    # two 201s with one seq are wrong whatever the final list says
    h = restarted()
    h.ops[9].seq = 5  # c1-4 (at 6) told seq 5, the seq c3-1's retry got
    assert {"seq_reused", "wrong_seq"} <= set(kinds(h))


def test_504_with_holders_may_be_lost_in_a_master_kill():
    h = restarted()
    h.ops[3].acks = 2  # held by secondaries only: a master restarting without them cuts it
    assert check(h) == []


def test_504_without_acks_must_keep_its_seq_when_the_master_was_not_killed():
    h = restarted()
    h.faults = []
    assert "wrong_seq" in kinds(h)


def test_message_of_a_refused_connection_appears():
    h = restarted()
    _final(h, h.final.lists[MASTER] + ["c1-2"])
    found = [a for a in check(h) if a.kind == "read_only_appended"]
    assert len(found) == 1 and found[0].ops == [5]


def test_realtime_order_across_a_master_restart():
    h = restarted()
    # c2-2 (indeterminate) sits at position 3, before c1-3 (4); but it was sent at 2.45,
    # after c1-3's 201 came back (2.4): appended later, it must come later
    h.ops[2] = mk_op(2, "c2-2", INDETERMINATE, 2.45, 2.9, w=3)
    h.list_samples.clear()
    found = check(h)
    assert [a.kind for a in found] == ["realtime_order"]
    assert found[0].ops == [7, 2]


def test_kill_of_a_secondary_with_a_data_dir_excuses_nothing():
    h = clean()
    h.replica_samples[1] = ReplicaSample(1, "s2", 0.32, 1)
    h.replica_samples[2] = ReplicaSample(1, "s3", 0.45, 0)  # "restarted empty"
    h.faults += [FaultEvent(0.35, "kill", "s3"), FaultEvent(0.40, "restart", "s3")]
    h.faults.sort(key=lambda f: f.t)
    assert "under_replicated" not in kinds(h)  # in memory, a kill loses the log
    h.meta["data_dirs"] = True  # with its disk it must come back with what it acked
    assert "under_replicated" in kinds(h)


def test_master_restart_began_a_new_log():
    h = restarted()
    h.final.health["log_id"] = "L2"
    assert kinds(h) == ["new_log"]


def test_read_only_right_after_a_master_restart_is_not_spurious():
    h = restarted()
    h.ops.append(mk_op(10, "c2-3", READ_ONLY, 2.31, 2.33))
    assert check(h) == []
    h.ops[10].invoke, h.ops[10].complete = 9.0, 9.1
    assert kinds(h) == ["spurious_read_only"]
