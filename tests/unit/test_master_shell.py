"""The master's shell in one process (tests/harness): the real Master on OS threads, the
real Secondary behind a fake transport. Each test takes milliseconds to a second."""
from __future__ import annotations

import threading
import time

import pytest
from loguru import logger

from nodes.core.calls import Pipeline
from nodes.core.concern import WriteConcernTimeout
from nodes.core.master import ReadOnly
from nodes.storage.store import Store
from tests.harness import Harness


@pytest.fixture
def lines():
    out: list[str] = []
    sink = logger.add(lambda m: out.append(m.record["message"]), level="DEBUG")
    yield out
    logger.remove(sink)


def test_replicates_to_every_secondary_in_order():
    with Harness(["s1", "s2"]) as h:
        for i in range(50):
            assert h.master.append(f"m{i}", 3, timeout=5)["acks"] == 3
        want = [f"m{i}" for i in range(50)]
        assert h.held("s1") == want and h.held("s2") == want


def test_restarted_secondary_is_caught_up(lines):
    with Harness(["s1", "s2"]) as h:
        for i in range(5):
            h.master.append(f"a{i}", 3, timeout=5)
        h.endpoints["s1"].down = True
        for i in range(20):
            h.master.append(f"b{i}", 2, timeout=5)
        h.start_secondary("s1")                       # new incarnation, empty, new address
        h.wait_for(lambda: len(h.held("s1")) == 25, what="s1 caught up")
        assert h.held("s1") == h.held("s2")
        h.wait_for(lambda: any(line.startswith("s1 caught up at seq=25") for line in lines))
        assert any("catching up s1 from seq=1: 25 messages to send" in line for line in lines)


def test_a_sender_survives_an_unexpected_exception(lines):
    """A malformed answer (a KeyError when it is read) used to end the sender for good,
    while the heartbeats kept the secondary Healthy: replication stopped in silence."""
    with Harness(["s1"]) as h:
        broken = {"left": 1}

        def malformed(method, reply):
            if method == "replicate" and broken["left"]:
                broken["left"] -= 1
                return {"incarnation": reply["incarnation"]}          # no "ack"
            return reply
        h.endpoints["s1"].after = malformed
        for i in range(3):
            h.master.append(f"m{i}", 2, timeout=5)
        assert h.held("s1") == ["m0", "m1", "m2"]
        h.wait_for(lambda: any("failed unexpectedly" in line for line in lines))
        assert h.master.append("after", 2, timeout=5)["acks"] == 2


def test_timed_out_waits_are_forgotten_at_once():
    """With a named secondary down, every w=3 POST times out; its wait must go with it."""
    with Harness(["s1", "s2"]) as h:
        h.endpoints["s2"].down = True
        for i in range(200):
            with pytest.raises(WriteConcernTimeout):
                h.master.append(f"m{i}", 3, timeout=0.001)
        assert h.master.health()["waiting"] == 0
        h.endpoints["s2"].down = False
        assert h.master.append("last", 3, timeout=5)["acks"] == 3


def test_pipelining_keeps_several_calls_out_to_a_slow_secondary():
    """One call in flight per secondary made a write wait for the call before it: about
    two delays for one. With the pipeline, the writes of 8 writers overlap."""
    with Harness(["s1"], delay=0.2, pipeline=Pipeline(window=8, after=0.002)) as h:
        endpoint = h.endpoints["s1"]
        errors: list[BaseException] = []

        def writer(k: int) -> None:
            try:
                for i in range(3):
                    h.master.append(f"w{k}-{i}", 2, timeout=10)
                    time.sleep(0.003 * k)   # stagger, so that writes arrive apart
            except BaseException as e:
                errors.append(e)
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert endpoint.most_active >= 2
        assert sorted(h.held("s1")) == sorted(f"w{k}-{i}" for k in range(8) for i in range(3))


def test_without_pipelining_one_call_at_a_time():
    """The same load with a window of 1: the check above can fail."""
    with Harness(["s1"], delay=0.05, pipeline=Pipeline(window=1)) as h:
        threads = [threading.Thread(target=h.master.append, args=(f"w{k}", 2, 10))
                   for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert h.endpoints["s1"].most_active == 1 and len(h.held("s1")) == 8


def test_a_failed_master_disk_fails_waiting_appends(tmp_path, monkeypatch):
    """After a failed fsync, appends with no timeout used to wait forever."""
    store = Store(tmp_path / "data", offload=False)
    gate = threading.Event()

    def commit():
        gate.wait(5)
        raise OSError(28, "No space left on device")
    with Harness(["s1"], store=store) as h:
        monkeypatch.setattr(store, "commit", commit)
        outcome: list[BaseException] = []

        def write() -> None:
            try:
                h.master.append("doomed", 1)           # no timeout
            except BaseException as e:
                outcome.append(e)
        t = threading.Thread(target=write)
        t.start()
        h.wait_for(lambda: h.master.health()["waiting"] == 1)
        gate.set()
        t.join(5)
        assert not t.is_alive(), "the append still waits after the disk failed"
        assert isinstance(outcome[0], ReadOnly) and "disk failed" in str(outcome[0])
        health = h.master.health()
        assert health["read_only"] and "No space left" in health["reason"]
        with pytest.raises(ReadOnly):
            h.master.append("refused", 1)


def test_a_slow_master_disk_does_not_stop_heartbeats(tmp_path, monkeypatch):
    store = Store(tmp_path / "data", offload=False)
    gate = threading.Event()
    real_commit = store.commit

    def slow_commit():
        gate.wait(5)
        real_commit()
    with Harness(["s1"], store=store) as h:
        monkeypatch.setattr(store, "commit", slow_commit)
        t = threading.Thread(target=h.master.append, args=("slow", 1, 10))
        t.start()
        beats = h.endpoints["s1"].calls.get("heartbeat", 0)
        h.wait_for(lambda: h.endpoints["s1"].calls.get("heartbeat", 0) >= beats + 10)
        assert h.master.health()["secondaries"]["s1"]["status"] == "Healthy"
        gate.set()
        t.join(5)
        assert h.master.health()["durable_seq"] == 1


def test_a_secondary_that_left_is_forgotten_and_its_link_ends():
    with Harness(["s1"], named=[]) as h:
        h.wait_for(lambda: "s1" in h.master.links)
        h.master.append("x", 2, timeout=5)
        link = h.master.links["s1"]
        h.endpoints["s1"].down = True
        del h.net.names["s1"]                          # unregistered
        h.wait_for(lambda: "s1" not in h.master.state.secondaries, what="s1 forgotten")
        h.wait_for(lambda: not link.alive())
        assert h.master.cluster_size == 1
