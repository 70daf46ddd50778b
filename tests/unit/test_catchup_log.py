"""The master's catch-up log line, whichever answer of a restarted secondary comes first.

A secondary killed while writes go on and started again gets the missing tail in one
replicate call. Its heartbeat can reach the new process right after that call was stored
there and before the call's own answer is back: the heartbeat then shows the new
incarnation with everything acknowledged and nothing sent yet. The line that tells the
operator how many messages were sent must still come, from the replicate answer."""
from __future__ import annotations

import pytest
from loguru import logger

from nodes.core.health import HealthPolicy
from nodes.core.progress import Backoff
from nodes.replicator import Master, Timing


@pytest.fixture
def lines():
    out: list[str] = []
    sink = logger.add(lambda m: out.append(m.record["message"]), level="INFO")
    yield out
    logger.remove(sink)


def restarted_behind(held: int = 53, missed: int = 20) -> Master:
    """A master whose s1 (incarnation "a") held `held`, then `missed` more were written."""
    m = Master(["s1"], HealthPolicy(), Backoff(), Timing(), ns_factory=None)
    m.state.log.extend([f"m{i}" for i in range(held)])
    m.state.begin("L", [[1, 1]], durable=held)
    m.state.set_uri("s1", "PYRO:replog.secondary.s1@127.0.0.1:1", 0.0)
    m._answered("s1", {"instance": "a", "ack": held, "log_id": "L", "epoch": 1}, "heartbeat")
    m.state.log.extend([f"t{i}" for i in range(missed)])
    m.state.on_durable(held + missed)
    return m


def caught_up(lines: list[str]) -> list[str]:
    return [line for line in lines if "caught up at" in line]


def test_replicate_answer_first(lines):
    m = restarted_behind()
    m._answered("s1", {"instance": "b", "ack": 73}, "replicate", sent=20)
    assert caught_up(lines) == ["s1 caught up at seq=73: sent 20 messages"]


def test_heartbeat_first_while_the_tail_is_in_flight(lines):
    m = restarted_behind()
    m._in_flight.add("s1")        # the sender's call with seq 54..73 is out
    m._answered("s1", {"instance": "b", "ack": 73, "log_id": "L", "epoch": 1}, "heartbeat")
    assert any("new incarnation with ack=73" in line for line in lines)
    assert caught_up(lines) == []                   # not yet: nothing counted as sent
    m._answered("s1", {"instance": "b", "ack": 73, "log_id": "L", "epoch": 1}, "heartbeat")
    assert caught_up(lines) == []                   # a second heartbeat does not say it
    m._answered("s1", {"instance": "b", "ack": 73}, "replicate", sent=20)
    m._in_flight.discard("s1")
    [line] = caught_up(lines)
    assert line.startswith("s1 caught up at seq=73: sent 20 messages in ")
    assert m.state.peers["s1"].sent == 20


def test_heartbeat_first_with_nothing_in_flight_logs_no_catch_up(lines):
    m = restarted_behind(held=73, missed=0)          # it missed nothing
    m._answered("s1", {"instance": "b", "ack": 73, "log_id": "L", "epoch": 1}, "heartbeat")
    m._answered("s1", {"instance": "b", "ack": 73}, "replicate", sent=0)
    assert caught_up(lines) == [] and not m._catching_up
