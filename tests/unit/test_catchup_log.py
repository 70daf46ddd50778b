"""The catch-up report, whichever answer of a restarted secondary comes first.

A secondary killed while writes go on and started again gets the missing tail in one
replicate call. Its heartbeat can reach the new process right after that call was stored
there and before the call's own answer is back: the heartbeat then shows the new
incarnation with everything acknowledged and nothing sent yet. The event that tells the
operator how many messages were sent must still come, from the replicate answer."""
from __future__ import annotations

from nodes.core.master import MasterState


def restarted_behind(held: int = 53, missed: int = 20) -> MasterState:
    """A state whose s1 (incarnation "a") held `held`, then `missed` more were written."""
    st = MasterState(named=["s1"])
    st.log.extend([f"m{i}" for i in range(held)])
    st.begin("L", [[1, 1]], durable=held)
    st.set_uri("s1", "PYRO:replog.secondary.s1@127.0.0.1:1", 0.0)
    st.on_answer("s1", "a", held, 0.0, "L", 1)
    st.log.extend([f"t{i}" for i in range(missed)])
    st.on_durable(held + missed)
    st.take_ready()
    return st


def events(st: MasterState, kind: str) -> list[dict]:
    return [e.fields for e in st.take_ready().events if e.kind == kind]


def test_replicate_answer_first():
    st = restarted_behind()
    st.on_answer("s1", "b", 73, 1.0, sent=20, how="replicate")
    assert events(st, "caught_up") == [dict(acked_seq=73, sent=20, lacked=None, seconds=None)]


def test_heartbeat_first_while_the_tail_is_in_flight():
    st = restarted_behind()
    batch = st.next_batch("s1", 1.0)                 # the sender's call with seq 54..73 is out
    assert (batch.first_seq, len(batch.messages)) == (54, 20)
    st.on_answer("s1", "b", 73, 1.1, "L", 1)
    ready = st.take_ready()
    assert [e.fields for e in ready.events if e.kind == "restart"] == [dict(acked_seq=73)]
    assert not [e for e in ready.events if e.kind == "caught_up"]   # nothing sent yet
    st.on_answer("s1", "b", 73, 1.2, "L", 1)
    assert events(st, "caught_up") == []             # a second heartbeat does not say it
    st.on_answer("s1", "b", 73, 1.5, sent=20, call=batch.call, how="replicate")
    [f] = events(st, "caught_up")
    assert (f["acked_seq"], f["sent"], f["lacked"]) == (73, 20, None)
    assert abs(f["seconds"] - 0.4) < 1e-9
    assert st.secondaries["s1"].sent == 20 and not st.secondaries["s1"].calls


def test_heartbeat_first_with_nothing_in_flight_reports_no_catch_up():
    st = restarted_behind(held=73, missed=0)          # it missed nothing
    st.on_answer("s1", "b", 73, 1.0, "L", 1)
    st.on_answer("s1", "b", 73, 1.1, sent=0, how="replicate")
    assert events(st, "caught_up") == []
    assert st.secondaries["s1"].catchup_since is None


def test_a_late_answer_of_an_earlier_incarnation_is_ignored():
    st = restarted_behind(held=73, missed=0)
    st.on_answer("s1", "b", 10, 1.0, "L", 1)        # restarted, holds 10
    assert st.secondaries["s1"].acked == 10
    st.on_answer("s1", "a", 73, 1.1, sent=5, how="replicate")   # the old process's answer
    assert st.secondaries["s1"].acked == 10 and st.secondaries["s1"].incarnation == "b"


def test_a_restart_learned_while_the_tail_is_out_does_not_send_it_twice():
    """The heartbeat shows the new incarnation (ack 53) while the call carrying 54..73 is
    still out, its answer slowed by the new connection's TLS handshake: the tail is not sent
    again while that call may still land (up to Pipeline.grace), and the call's answer ends
    the catch-up with the tail sent once."""
    st = restarted_behind()
    grace = st.pipeline.grace
    batch = st.next_batch("s1", 1.0)                 # out before the restart is known
    st.on_answer("s1", "b", 53, 1.06, "L", 1)        # the heartbeat: a new incarnation at 53
    assert st.next_batch("s1", 1.1) is None          # not 54..73 again
    assert st.wake_at("s1") == 1.06 + grace
    st.on_answer("s1", "b", 73, 1.2, sent=20, call=batch.call, how="replicate")
    assert st.next_batch("s1", 1.2) is None          # everything is acknowledged
    assert st.secondaries["s1"].sent == 20


def test_a_call_out_to_a_vanished_incarnation_delays_the_tail_by_the_grace_at_most():
    """The call went to the old incarnation's address and hangs (a black hole): after the
    grace the tail goes to the new incarnation without waiting for the call's time-out."""
    st = restarted_behind()
    grace = st.pipeline.grace
    st.next_batch("s1", 1.0)
    st.on_answer("s1", "b", 53, 1.06, "L", 1)
    assert st.next_batch("s1", 1.06 + grace - 0.01) is None
    again = st.next_batch("s1", 1.06 + grace)
    assert (again.first_seq, len(again.messages)) == (54, 20)
