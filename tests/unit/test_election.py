"""Every rule of nodes/core/election.py, one at a time, with fixed times and randomness."""
from __future__ import annotations

import pytest

from nodes.core.election import (Broken, Cluster, Election, Role, Stored, Timing, VoteAnswer,
                                 VoteRequest, commit_index, shown_by_secondary, up_to_date)
from nodes.core.recovery import Copy

T = Timing(election_min=1.0, election_max=2.0, heartbeat=0.1, lease=0.8, drift=0.01)
NODES = frozenset({"a", "b", "c"})


def node(me: str = "a", stored: Stored = Stored(), now: float = 0.0, r: float = 0.5,
         nodes: frozenset[str] = NODES, broken: Broken = Broken()) -> Election:
    return Election(Cluster(me, nodes), T, stored, now, lambda: r, broken)


def master(now: float = 0.0) -> Election:
    """'a', master of epoch 1 (elected at `now` + 1.5 with b's vote)."""
    a = node("a", now=now)
    t = now + 1.5
    a.tick(t, (0, 0))
    a.on_vote_answer(VoteAnswer(1, "b", True), t)
    assert a.role is Role.MASTER
    return a


# -- the cluster and the timing -----------------------------------------------------------
def test_majority_of_the_named_nodes() -> None:
    assert Cluster("a", NODES).majority == 2
    assert Cluster("a", frozenset("abcde")).majority == 3
    assert Cluster("a", frozenset("abcd")).majority == 3
    with pytest.raises(ValueError):
        Cluster("z", NODES)


def test_a_lease_not_shorter_than_the_election_timeout_is_refused() -> None:
    for lease in (1.0, 0.995):     # 0.995 * 1.01 / 0.99 > 1: drift eats the margin
        with pytest.raises(ValueError, match="lease"):
            Election(Cluster("a", NODES), Timing(lease=lease, drift=0.01), Stored(), 0,
                     lambda: 0.5)
    Election(Cluster("a", NODES), Timing(lease=lease), Stored(), 0, lambda: 0.5,
             Broken(long_lease=True))   # only the mutation test's hook skips the check


# -- election -------------------------------------------------------------------------------
def test_a_secondary_stands_after_its_randomized_timeout() -> None:
    a = node(r=0.25)                  # timeout 1.25
    assert a.wake_at() == 1.25
    assert not a.tick(1.2, (3, 7)).send
    out = a.tick(1.25, (3, 7))
    assert a.role is Role.CANDIDATE and a.epoch == 1 and a.voted_for == "a"
    assert out.persist == Stored(1, "a")       # persisted before the requests go out
    assert sorted(out.send) == [("b", VoteRequest(1, "a", (3, 7))),
                                ("c", VoteRequest(1, "a", (3, 7)))]


def test_each_try_draws_a_new_timeout() -> None:
    draws = iter([0.0, 0.9, 0.1])
    a = Election(Cluster("a", NODES), T, Stored(), 0, lambda: next(draws))
    a.tick(1.0, (0, 0))
    assert a.deadline == pytest.approx(1.0 + 1.9)
    a.tick(2.9, (0, 0))                       # a split vote: stand again, epoch 2
    assert a.epoch == 2 and a.deadline == pytest.approx(2.9 + 1.1)


def test_a_majority_of_votes_makes_a_master_and_it_heartbeats_at_once() -> None:
    a = node()
    a.tick(1.5, (0, 0))
    out = a.on_vote_answer(VoteAnswer(1, "b", True), 1.6)
    assert out.became_master and out.heartbeat and a.role is Role.MASTER and a.master == "a"
    assert a.wake_at() == pytest.approx(1.7)


def test_refused_or_stale_votes_do_not_count() -> None:
    a = node(nodes=frozenset("abcde"))
    a.tick(1.5, (0, 0))
    a.on_vote_answer(VoteAnswer(1, "b", False), 1.6)
    a.on_vote_answer(VoteAnswer(0, "c", True), 1.6)
    a.on_vote_answer(VoteAnswer(1, "d", True), 1.6)
    assert a.role is Role.CANDIDATE
    a.on_vote_answer(VoteAnswer(1, "d", True), 1.7)       # a duplicate is one vote
    assert a.role is Role.CANDIDATE


def test_a_single_node_cluster_elects_itself() -> None:
    a = node(nodes=frozenset("a"))
    out = a.tick(1.5, (0, 0))
    assert out.became_master and not out.send and a.writable(1.5)


# -- the vote rule ----------------------------------------------------------------------------
def test_one_vote_per_epoch_persisted_before_the_answer() -> None:
    b = node("b")
    out = b.on_vote_request(VoteRequest(1, "a", (0, 0)), (0, 0), 1.5)
    assert out.persist == Stored(1, "a") and out.send == [("a", VoteAnswer(1, "b", True))]
    out = b.on_vote_request(VoteRequest(1, "c", (0, 0)), (0, 0), 1.6)
    assert out.send == [("c", VoteAnswer(1, "b", False))] and out.persist is None
    out = b.on_vote_request(VoteRequest(1, "a", (0, 0)), (0, 0), 1.7)   # asked again: yes
    assert out.send == [("a", VoteAnswer(1, "b", True))]


def test_the_vote_survives_a_restart() -> None:
    b = node("b", stored=Stored(1, "a"))
    out = b.on_vote_request(VoteRequest(1, "c", (0, 0)), (0, 0), 5.0)
    assert out.send == [("c", VoteAnswer(1, "b", False))]


def test_no_vote_for_a_less_up_to_date_log() -> None:
    for theirs, mine, granted in [((2, 5), (3, 1), False),    # older last epoch loses
                                  ((3, 4), (3, 5), False),    # same epoch, shorter loses
                                  ((3, 5), (3, 5), True),
                                  ((4, 1), (3, 9), True)]:
        b = node("b")
        out = b.on_vote_request(VoteRequest(1, "a", theirs), mine, 1.5)
        assert out.send[-1][1].granted is granted, (theirs, mine)
        assert b.epoch == 1                                   # the epoch is taken anyway


def test_up_to_date_orders_as_copy_rank() -> None:
    copies = [Copy("x", "L", [[1, 1]], 3), Copy("y", "L", [[1, 1], [2, 3]], 3),
              Copy("z", "L", [[1, 1], [2, 3]], 4), Copy("w", "L", [[1, 1], [3, 2]], 2)]
    for p in copies:
        for q in copies:
            rank_p, rank_q = (p.history[-1][0], p.length), (q.history[-1][0], q.length)
            assert up_to_date(rank_p, rank_q) == (p.rank >= q.rank)


def test_a_node_that_heard_from_a_master_ignores_vote_requests() -> None:
    b = node("b")
    b.on_master_call(1, "a", 2.0)
    out = b.on_vote_request(VoteRequest(2, "c", (9, 9)), (0, 0), 2.9)
    assert out.send == [] and b.epoch == 1                   # not even the epoch is taken
    out = b.on_vote_request(VoteRequest(2, "c", (9, 9)), (0, 0), 3.0)
    assert out.send == [("c", VoteAnswer(2, "b", True))]


def test_a_started_node_waits_before_voting() -> None:
    b = node("b", now=10.0)
    assert b.on_vote_request(VoteRequest(1, "a", (0, 0)), (0, 0), 10.5).send == []


# -- epochs and fencing -----------------------------------------------------------------------
def test_a_lower_epoch_is_refused_and_a_higher_one_taken() -> None:
    b = node("b", stored=Stored(5, None))
    accepted, _ = b.on_master_call(4, "a", 1.0)
    assert not accepted and b.epoch == 5
    accepted, out = b.on_master_call(6, "c", 1.0)
    assert accepted and b.epoch == 6 and b.master == "c" and out.persist == Stored(6, None)


def test_a_candidate_that_hears_the_winner_steps_down() -> None:
    a = node()
    a.tick(1.5, (0, 0))
    accepted, out = a.on_master_call(1, "c", 1.6)
    assert accepted and out.stepped_down and a.role is Role.SECONDARY and a.master == "c"


def test_a_master_that_learns_a_higher_epoch_stops_at_once() -> None:
    a = master()
    a.on_master_answer("b", 1, True, 1.5, 1.6)
    assert a.writable(1.6)
    out = a.on_master_answer("c", 2, False, 1.5, 1.7)
    assert out.stepped_down and a.role is Role.SECONDARY and not a.writable(1.7)
    assert out.persist == Stored(2, None)


def test_the_broken_hook_keeps_a_deposed_master() -> None:
    a = master()
    a.broken = Broken(deposed_stays_master=True)
    a.on_master_answer("c", 2, False, 1.5, 1.7)
    assert a.role is Role.MASTER and a.epoch == 2


def test_a_master_refuses_another_master_of_its_epoch() -> None:
    a = master()
    accepted, _ = a.on_master_call(1, "c", 1.6)
    assert not accepted and a.role is Role.MASTER


# -- the lease --------------------------------------------------------------------------------
def test_the_lease_counts_a_majority_from_the_stamp_of_sending() -> None:
    a = node(nodes=frozenset("abcde"))
    a.tick(1.5, (0, 0))
    a.on_vote_answer(VoteAnswer(1, "b", True), 1.5)
    a.on_vote_answer(VoteAnswer(1, "c", True), 1.5)
    assert not a.writable(1.6)                         # no heartbeat answered yet
    a.on_master_answer("b", 1, True, 2.0, 2.5)
    assert not a.writable(2.5)                         # one answer: 2 of 5
    a.on_master_answer("c", 1, True, 2.2, 2.6)
    assert a.lease_until() == pytest.approx(2.0 + 0.8)  # the older of the two stamps
    assert a.writable(2.79) and not a.writable(2.8)
    a.on_master_answer("c", 1, True, 1.0, 2.7)         # a late answer never moves it back
    assert a.lease_until() == pytest.approx(2.8)


def test_refusals_and_other_epochs_do_not_extend_the_lease() -> None:
    a = master()
    a.on_master_answer("b", 1, False, 2.0, 2.1)
    a.on_master_answer("c", 0, True, 2.0, 2.1)
    assert not a.writable(2.1)


def test_a_master_holding_its_lease_ignores_vote_requests() -> None:
    a = master()
    a.on_master_answer("b", 1, True, 2.0, 2.1)
    assert a.on_vote_request(VoteRequest(2, "c", (9, 9)), (0, 0), 2.5).send == []
    assert a.role is Role.MASTER
    out = a.on_vote_request(VoteRequest(2, "c", (9, 9)), (0, 0), 2.9)   # lease over
    assert out.stepped_down and out.send == [("c", VoteAnswer(2, "a", True))]


def test_a_master_heartbeats_every_interval() -> None:
    a = master()
    assert not a.tick(1.55, (1, 1)).heartbeat
    assert a.tick(1.6, (1, 1)).heartbeat and a.wake_at() == pytest.approx(1.7)


# -- what is shown ----------------------------------------------------------------------------
def test_commit_needs_a_majority_and_the_masters_own_epoch() -> None:
    epochs = {1: 1, 2: 1, 3: 2, 4: 2}.get
    assert commit_index(0, 3, 4, [2, 0], epochs, 2) == 0        # seq 2 is of epoch 1
    assert commit_index(0, 3, 4, [3, 0], epochs, 2) == 3
    assert commit_index(0, 5, 4, [4, 3], epochs, 2) == 3        # 3 of 5 hold seq 3
    assert commit_index(3, 5, 4, [4], epochs, 2) == 3           # never lower
    assert commit_index(0, 1, 2, [], epochs, 1) == 2


def test_a_secondary_shows_only_what_it_verified_of_the_masters_commit() -> None:
    assert shown_by_secondary(0, 10, 4) == 4
    assert shown_by_secondary(0, 3, 4) == 3
    assert shown_by_secondary(5, 3, 4) == 5
