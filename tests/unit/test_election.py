"""Every rule of nodes/core/election.py, one at a time, with fixed times and randomness."""
from __future__ import annotations

import pytest

from nodes.core.election import (Broken, Cluster, Election, Out, PreVoteAnswer,
                                 PreVoteRequest, Role, Stored, Timing, VoteAnswer, VoteRequest,
                                 up_to_date)
from nodes.core.commit import commit_index, shown_by_secondary
from nodes.core.recovery import Copy

T = Timing(election_min=1.0, election_max=2.0, heartbeat=0.1, lease=0.8, drift=0.01)
NODES = frozenset({"a", "b", "c"})


def node(me: str = "a", stored: Stored = Stored(), now: float = 0.0, r: float = 0.5,
         nodes: frozenset[str] = NODES, broken: Broken = Broken()) -> Election:
    return Election(Cluster(me, nodes), T, stored, now, lambda: r, broken)


def stand(e: Election, now: float, rank: tuple[int, int] = (0, 0)) -> Out:
    """e's timeout ends at `now`: it asks for pre-votes, and enough others say yes; the Out
    of its standing (its vote requests)."""
    asked = e.tick(now, rank)
    assert e.role is Role.SECONDARY and {m for _, m in asked.send} == {
        PreVoteRequest(e.epoch + 1, e.cluster.me, rank)}, asked
    for other in e.cluster.others[:e.cluster.majority - 1]:
        out = e.on_prevote_answer(PreVoteAnswer(e.epoch + 1, other, True, e.epoch), rank, now)
    assert e.role is Role.CANDIDATE
    return out


def master(now: float = 0.0) -> Election:
    """'a', master of epoch 1 (elected at `now` + 1.5 with b's vote)."""
    a = node("a", now=now)
    t = now + 1.5
    stand(a, t)
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
def test_after_its_randomized_timeout_a_secondary_asks_for_pre_votes_and_changes_nothing():
    a = node(r=0.25)                  # timeout 1.25
    assert a.wake_at() == 1.25
    assert not a.tick(1.2, (3, 7)).send
    out = a.tick(1.25, (3, 7))
    assert a.role is Role.SECONDARY and a.epoch == 0 and a.voted_for is None
    assert out.persist is None                 # nothing to persist: nothing changed
    assert sorted(out.send) == [("b", PreVoteRequest(1, "a", (3, 7))),
                                ("c", PreVoteRequest(1, "a", (3, 7)))]


def test_with_a_majority_of_pre_votes_it_stands() -> None:
    a = node(r=0.25)
    a.tick(1.25, (3, 7))
    out = a.on_prevote_answer(PreVoteAnswer(1, "b", False, 0), (3, 7), 1.3)
    assert a.role is Role.SECONDARY and not out.send             # a no changes nothing
    out = a.on_prevote_answer(PreVoteAnswer(1, "c", True, 0), (3, 8), 1.3)
    assert a.role is Role.CANDIDATE and a.epoch == 1 and a.voted_for == "a"
    assert out.persist == Stored(1, "a")       # persisted before the requests go out
    assert sorted(out.send) == [("b", VoteRequest(1, "a", (3, 8))),     # its log as it is now
                                ("c", VoteRequest(1, "a", (3, 8)))]
    assert not a.on_prevote_answer(PreVoteAnswer(1, "b", True, 0), (3, 8), 1.3).send   # late


def test_a_pre_vote_round_ends_with_a_master_heard_a_higher_epoch_or_the_next_round() -> None:
    a = node()
    a.tick(1.5, (0, 0))
    a.on_master_call(0, "b", 1.6)                                # a master of its epoch lives
    a.on_prevote_answer(PreVoteAnswer(1, "c", True, 0), (0, 0), 1.6)
    assert a.role is Role.SECONDARY and a.epoch == 0
    a = node()
    a.tick(1.5, (0, 0))
    out = a.on_prevote_answer(PreVoteAnswer(1, "c", False, 4), (0, 0), 1.6)   # c is in epoch 4
    assert a.epoch == 4 and out.persist == Stored(4, None) and a.prevotes is None
    assert not a.on_prevote_answer(PreVoteAnswer(1, "b", True, 0), (0, 0), 1.6).send
    a = node()
    a.tick(1.5, (0, 0))
    first = a.prevote_round
    a.tick(3.0, (0, 0))                                          # no majority by its timeout
    assert a.prevote_round == first + 1 and a.prevotes == {"a"} and a.epoch == 0


def test_a_node_says_yes_to_a_pre_vote_only_as_it_would_vote_and_changes_nothing() -> None:
    b = node("b", stored=Stored(2, "c"))
    assert b.on_prevote_request(PreVoteRequest(3, "a", (2, 5)), (2, 5), 1.5).send == [
        ("a", PreVoteAnswer(3, "b", True, 2))]
    assert (b.epoch, b.voted_for) == (2, "c")                   # its own epoch and vote kept
    for req in (PreVoteRequest(2, "a", (2, 5)),                  # not above its epoch
                PreVoteRequest(3, "a", (2, 4)),                  # a shorter log
                PreVoteRequest(3, "a", (1, 9))):                 # an older last epoch
        assert b.on_prevote_request(req, (2, 5), 1.5).send[0][1].granted is False, req
    b.on_master_call(2, "c", 1.6)                                # it hears a master: ignored
    assert b.on_prevote_request(PreVoteRequest(3, "a", (2, 5)), (2, 5),
                                1.6 + T.election_min - 0.01).send == []
    assert b.on_prevote_request(PreVoteRequest(3, "a", (2, 5)), (2, 5),
                                1.6 + T.election_min).send[0][1].granted
    assert (b.epoch, b.voted_for, b.master) == (2, "c", "c")


def test_a_restarted_node_not_yet_reached_by_a_live_master_cannot_depose_it() -> None:
    """The disruption that the pre-vote prevents: c restarts (epoch 1 on disk) and its
    timeout ends before the master reaches it; without a pre-vote it would stand for epoch 2
    and the master would step down at its next answer. The others hear the master: no yes."""
    m = master()                                  # a, epoch 1, b voted for it
    b = node("b", stored=Stored(1, "a"))
    b.on_master_call(1, "a", 3.4)                 # a's heartbeat, answered: a holds its lease
    m.on_master_answer("b", 1, True, 3.4, 3.41)
    c = node("c", stored=Stored(1, None), now=2.0)
    out = c.tick(3.5, (1, 3))
    assert out.send, "its timeout ended: it asks"
    for to, req in out.send:                      # both hear the master: no answer at all
        assert {"a": m, "b": b}[to].on_prevote_request(req, (1, 3), 3.5).send == []
    assert c.epoch == 1 and c.role is Role.SECONDARY
    assert c.on_master_call(1, "a", 3.6)[0] and m.role is Role.MASTER and m.writable(3.6)


def test_a_split_vote_asks_again_with_a_new_timeout() -> None:
    draws = iter([0.0, 0.9, 0.1, 0.5])
    a = Election(Cluster("a", NODES), T, Stored(), 0, lambda: next(draws))
    stand(a, 1.0)                             # pre-votes drew 0.9, standing draws anew
    assert a.epoch == 1 and a.deadline == pytest.approx(1.0 + 1.1)
    out = a.tick(2.1, (0, 0))                 # not won by then: ask again, for epoch 2
    assert a.role is Role.SECONDARY and a.epoch == 1 and a.deadline == pytest.approx(2.1 + 1.5)
    assert {m for _, m in out.send} == {PreVoteRequest(2, "a", (0, 0))}


def test_a_majority_of_votes_makes_a_master_and_it_heartbeats_at_once() -> None:
    a = node()
    stand(a, 1.5)
    out = a.on_vote_answer(VoteAnswer(1, "b", True), 1.6)
    assert out.became_master and out.heartbeat and a.role is Role.MASTER and a.master == "a"
    assert a.wake_at() == pytest.approx(1.7)


def test_refused_or_stale_votes_do_not_count() -> None:
    a = node(nodes=frozenset("abcde"))
    stand(a, 1.5)
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
    stand(a, 1.5)
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
    stand(a, 1.5)
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
