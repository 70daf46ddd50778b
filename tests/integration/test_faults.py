"""Iteration 3 on real processes: kill -9, SIGSTOP/SIGCONT, restarts, errors, quorum."""
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import Pyro5.api
import pytest
import requests

from nodes.launcher import wait_until
from .conftest import FAST, Client, check_waiting_posts_block_nobody, start_cluster


def test_acceptance_iteration_3(cluster, http):
    """The assignment's test: M + S1 up, S2 named but not started."""
    s1 = cluster.start_secondary("s1")
    master = cluster.start_master(["s1", "s2"], **FAST)
    c = Client(http, master.url)
    assert c.post("Msg1", w=1).status_code == 201
    assert c.post("Msg2", w=2).status_code == 201
    msg3 = {}
    waiter = threading.Thread(target=lambda: msg3.update(r=c.post("Msg3", w=3, http_timeout=60)))
    waiter.start()
    wait_until(lambda: c.health()["waiting"] == 1, 10, what="Msg3 to wait")
    with requests.Session() as other:
        r = Client(other, master.url).post("Msg4", w=1)
    assert r.status_code == 201
    assert "r" not in msg3 and waiter.is_alive()     # Msg3 still waits, Msg4 did not
    s2 = cluster.start_secondary("s2")
    waiter.join(30)
    assert msg3["r"].status_code == 201 and msg3["r"].json()["seq"] == 3
    wait_until(lambda: c.messages(s2.url) == ["Msg1", "Msg2", "Msg3", "Msg4"], 10,
               what="S2 to hold all four")
    assert c.messages(s1.url) == ["Msg1", "Msg2", "Msg3", "Msg4"]


def _writer(url, prefix, stop, written, w=1):
    with requests.Session() as s:
        i = 0
        while not stop.is_set():
            r = s.post(url + "/messages", json={"message": f"{prefix}-{i}", "w": w}, timeout=30)
            if r.status_code == 201:
                written.append(f"{prefix}-{i}")
            i += 1


def test_kill_9_mid_stream_and_restart_empty_catches_up(cluster, http):
    master, (s1, s2) = start_cluster(cluster, master_flags=FAST)
    c = Client(http, master.url)
    stop, written = threading.Event(), []
    writers = [threading.Thread(target=_writer, args=(master.url, f"k{i}", stop, written))
               for i in range(3)]
    for t in writers:
        t.start()
    wait_until(lambda: len(written) > 300, 30, what="300 writes")
    s2.kill()                                              # kill -9 in the middle
    n_at_kill = len(written)
    wait_until(lambda: len(written) > n_at_kill + 300, 30, what="writes while s2 is dead")
    s2.restart()                                           # empty log, new Pyro port
    wait_until(lambda: c.messages(s2.url), 15, what="s2 to receive again")
    assert len(written) > n_at_kill                       # writes went on meanwhile
    stop.set()
    for t in writers:
        t.join()
    final = c.wait_converged([s1, s2])
    assert sorted(final) == sorted(written) and len(set(final)) == len(final)
    assert c.health()["secondaries"]["s2"]["status"] == "Healthy"
    # the master asked the new process what it follows before sending it entries
    assert "refused replicate" not in s2.log_path.read_text()


def test_pause_shows_suspected_then_unhealthy_and_recovers(cluster, http):
    master, (s1, s2) = start_cluster(cluster, master_flags=FAST)
    c = Client(http, master.url)
    assert c.post("before", w=3).status_code == 201
    s2.pause()                                                  # SIGSTOP
    try:
        wait_until(lambda: c.status("s2") == "Suspected", 10, what="s2 Suspected")
        wait_until(lambda: c.status("s2") == "Unhealthy", 10, what="s2 Unhealthy")
        for i in range(50):
            assert c.post(f"during-{i}", w=2).status_code == 201
        assert c.health()["secondaries"]["s2"]["lag"] == 50
    finally:
        s2.resume()                                             # SIGCONT
    wait_until(lambda: c.status("s2") == "Healthy", 10, what="s2 Healthy again")
    c.wait_converged([s1, s2])
    assert c.health()["secondaries"]["s2"]["lag"] == 0


def test_quorum_lost_read_only_then_back(cluster, http):
    master, (s1, s2) = start_cluster(cluster, master_flags=FAST)
    c = Client(http, master.url)
    assert c.post("one", w=3).status_code == 201
    s1.kill()
    s2.kill()
    wait_until(lambda: c.health()["read_only"], 10, what="read-only")
    h = c.health()
    assert "no quorum" in h["reason"] and h["quorum"] == {"size": 3, "needed": 2, "available": 1}
    r = c.post("refused", w=1)
    assert r.status_code == 503 and "read-only" in r.json()["error"]
    assert c.messages() == ["one"]                                 # GETs still work
    s1.restart()
    c.wait_writable()              # README: writable again once a quorum answers
    assert c.post("two", w=2).status_code == 201
    assert c.messages() == ["one", "two"]
    assert c.messages(s1.url) == ["one", "two"]
    # the tick thread logs mode changes on its own beat: /health may say writable first
    wait_until(lambda: "quorum back" in master.log_path.read_text(), 5, what="'quorum back' logged")
    assert "read-only: no quorum" in master.log_path.read_text()


def test_error_injection_exactly_once_in_order(cluster, http):
    master, secs = start_cluster(cluster, master_flags=FAST,
                                 secondary_flags={"s1": {"error_rate": 0.3},
                                                  "s2": {"error_rate": 0.3}})
    c = Client(http, master.url)
    clients, per_client = 10, 100

    def run(k):
        rng = random.Random(k)
        with requests.Session() as s:
            for i in range(per_client):
                r = s.post(master.url + "/messages",
                           json={"message": f"e{k}-{i}", "w": rng.randint(1, 3)}, timeout=60)
                assert r.status_code == 201, r.text

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))
    final = c.wait_converged(secs)
    assert len(final) == clients * per_client == len(set(final))
    for s in secs:
        assert c.messages(s.url) == final      # same list, same order, no duplicates
    retries = master.log_path.read_text().count("injected error")
    assert retries > 0                          # the errors really happened


def test_gap_is_held_back_until_filled(cluster):
    """Holding 1, 2 and 4 a secondary shows 1 and 2 until 3 arrives; duplicates dropped."""
    s = cluster.start_secondary("solo", error_rate=0.5)
    with Pyro5.api.Proxy(f"PYRONAME:replog.secondary.solo@127.0.0.1:{cluster.ns_port}") as p:
        p._pyroTimeout = 10
        assert p.sync("log-A", [[1, 1]], 0)["ack"] == 0     # as the master does first

        def deliver(first, msgs):
            for _ in range(50):        # the secondary fails half the calls after storing
                try:
                    return p.replicate("log-A", 1, first, msgs)["ack"]
                except RuntimeError:
                    continue
            raise AssertionError("never acknowledged")

        assert deliver(1, ["m1", "m2"]) == 2
        assert deliver(4, ["m4"]) == 2
        assert requests.get(s.url + "/messages", timeout=5).json()["messages"] == ["m1", "m2"]
        assert requests.get(s.url + "/health", timeout=5).json()["held_back"] == 1
        assert deliver(2, ["m2", "m3"]) == 4
        assert deliver(1, ["m1"]) == 4
        assert requests.get(s.url + "/messages", timeout=5).json()["messages"] == \
            ["m1", "m2", "m3", "m4"]
        with pytest.raises(ValueError):
            p.replicate("log-A", 1, 0, ["bad"])


def test_w_checked_against_cluster_size_not_live_nodes_and_timeout_504(cluster, http):
    cluster.start_secondary("s1")
    master = cluster.start_master(["s1", "s2"], **FAST)
    c = Client(http, master.url)
    assert c.post("x", w=4).status_code == 400            # larger than the cluster
    r = c.post("slow", w=3, timeout=0.5)
    assert r.status_code == 504
    body = r.json()
    assert body["seq"] == 1 and body["acks"] == 2 and "error" in body
    assert c.messages() == ["slow"]                        # it stays in the log ...
    s2 = cluster.start_secondary("s2")
    wait_until(lambda: c.messages(s2.url) == ["slow"], 15, what="... and keeps replicating")
    assert c.health()["waiting"] == 0


def test_idempotency_key(two_fast):
    c, master, secs = two_fast
    key = str(uuid.uuid4())
    r1 = c.post("once", w=2, id=key)
    r2 = c.post("once", w=3, id=key)
    assert r1.status_code == r2.status_code == 201
    assert r1.json()["seq"] == r2.json()["seq"] == 1
    assert c.post("other", w=1, id="k2").json()["seq"] == 2
    assert c.messages() == ["once", "other"]
    assert c.wait_converged(secs) == ["once", "other"]


@pytest.fixture
def two_fast(cluster, http):
    master, secs = start_cluster(cluster, master_flags=FAST)
    c = Client(http, master.url)
    return c, master, secs


def test_catch_up_uses_batches(cluster, http):
    master, (s1, s2) = start_cluster(cluster, master_flags=FAST,
                                     secondary_flags={"s2": {"log_level": "DEBUG"}})
    c = Client(http, master.url)
    s2.kill()
    total = 20_000
    with Pyro5.api.Proxy(f"PYRONAME:replog.master@127.0.0.1:{cluster.ns_port}") as m:
        m._pyroTimeout = 30
        for start in range(0, total, 5000):
            m.append_many([f"b{i}" for i in range(start, start + 5000)], 2)
    s2.restart()
    wait_until(lambda: c.health()["secondaries"]["s2"]["acked_seq"] == total, 30,
               what="s2 caught up")
    assert c.messages(s2.url) == [f"b{i}" for i in range(total)]
    calls = s2.log_path.read_text().count("replicate seq=")
    assert 1 <= calls <= 10, calls       # 20,000 messages in at most 10 calls


def test_200_waiting_posts_with_a_secondary_down(cluster, http):
    cluster.start_secondary("s1")
    master = cluster.start_master(["s1", "s2"], **FAST)
    c = Client(http, master.url)
    check_waiting_posts_block_nobody(c, 200, release=lambda: cluster.start_secondary("s2"))


def test_nodes_register_again_after_name_server_restart(cluster, http):
    master, (s1, s2) = start_cluster(cluster, master_flags=FAST)
    c = Client(http, master.url)
    ns = cluster.procs["nameserver"]
    ns.kill()
    ns.start()                                    # same port, empty registry

    def registered():
        with Pyro5.api.locate_ns("127.0.0.1", cluster.ns_port) as p:
            return set(p.list(prefix="replog."))
    wait_until(lambda: registered() == {"replog.master", "replog.secondary.s1",
                                        "replog.secondary.s2"}, 15,
               what="every node registered again")
    assert c.post("still fine", w=3).status_code == 201
    assert c.health()["name"] == "master"


def _port_open(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def test_post_the_instant_the_http_port_opens(cluster, http):
    """A client that writes as soon as the master's port answers is never refused, and a
    normal start logs no ERROR (the master asks its secondaries before it opens HTTP)."""
    secs = [cluster.start_secondary(n) for n in ("s1", "s2")]
    master = cluster.start_master(["s1", "s2"], wait=False, **FAST)
    wait_until(lambda: _port_open(master.http_port), 30, interval=0.001, what="the HTTP port")
    r = Client(http, master.url).post("first", w=3)
    assert r.status_code == 201, r.text
    assert Client(http, master.url).wait_converged(secs) == ["first"]
    assert "ERROR" not in master.log_path.read_text()


def test_append_through_pyro5_the_instant_the_master_is_registered(cluster):
    for n in ("s1", "s2"):
        cluster.start_secondary(n)
    cluster.start_master(["s1", "s2"], wait=False, **FAST)
    ns_uri = f"PYRONAME:replog.master@127.0.0.1:{cluster.ns_port}"

    def registered():
        with Pyro5.api.locate_ns("127.0.0.1", cluster.ns_port) as ns:
            return "replog.master" in ns.list(prefix="replog.master")
    wait_until(registered, 30, interval=0.005, what="replog.master in the name server")
    with Pyro5.api.Proxy(ns_uri) as m:
        m._pyroTimeout = 10
        assert m.append("first", 3)["seq"] == 1


def test_master_with_no_secondary_up_turns_read_only_within_unhealthy_after(cluster, http):
    master = cluster.start_master(["s1", "s2"], data_dir=cluster.workdir / "m", new_log=True,
                                  startup_wait=0.2, **FAST)
    c = Client(http, master.url)
    wait_until(lambda: c.health()["read_only"], FAST["unhealthy_after"] + 2, what="read-only")
    assert c.post("x", w=1).status_code == 503


def test_a_secondary_that_stops_cleanly_leaves_the_cluster_and_can_come_back(cluster, http):
    """Scaling down: a discovered secondary that unregistered (a clean stop) and is Unhealthy
    no longer counts in the cluster size; one killed -9 stays registered and counts."""
    master, (s1, s2) = start_cluster(cluster, master_flags=FAST)
    s3 = cluster.start_secondary("s3")
    c = Client(http, master.url)
    wait_until(lambda: c.health()["quorum"]["size"] == 4, 10, what="s3 discovered")
    assert c.post("four", w=4).status_code == 201
    s3.stop()                                            # SIGTERM: it unregisters
    wait_until(lambda: "s3" not in c.health()["secondaries"], 15, what="s3 forgotten")
    assert c.health()["quorum"]["size"] == 3
    assert c.post("x", w=4).status_code == 400           # w is checked against the new size
    s2.kill()                                            # a named one never leaves
    s1.kill()
    wait_until(lambda: c.health()["read_only"], 10, what="read-only without s1 and s2")
    assert c.health()["quorum"]["size"] == 3
    s1.restart()
    s3.restart()
    wait_until(lambda: c.health()["quorum"]["size"] == 4, 10, what="s3 back")
    c.wait_writable()
    assert c.post("back", w=3).status_code == 201
    wait_until(lambda: c.messages(s3.url) == ["four", "back"], 10, what="s3 caught up")
    assert "s3 left" in master.log_path.read_text()
