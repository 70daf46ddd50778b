"""A compose cluster (name server, master, secondary1, secondary2 with a 2 s delay) driven
through its published HTTP ports: write concerns, blocking replication, ports, logs, and a
third secondary that joins at run time."""
from __future__ import annotations

import json
import re
import time

import pytest

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.docker

DELAY = 2.0


@pytest.fixture(scope="module")
def cluster(make_cluster) -> Cluster:
    c = make_cluster(SECONDARY2_DELAY=str(DELAY))
    c.wait_statuses({"secondary1": "Healthy", "secondary2": "Healthy"})
    return c


def idle(c: Cluster) -> None:
    """Wait until every secondary has acknowledged everything (no replication in flight)."""
    def done() -> bool:
        h = c.health()
        return all(s["acked_seq"] == h["last_seq"] for s in h["secondaries"].values())
    wait_until(done, 30, what="every secondary to acknowledge the whole log")


def test_master_health_shape(cluster: Cluster) -> None:
    h = cluster.health()
    assert h["role"] == "master"
    assert h["read_only"] is False and h["reason"] is None
    assert h["quorum"] == {"size": 3, "needed": 2, "available": 3}
    assert set(h["secondaries"]) == {"secondary1", "secondary2"}
    for name, s in h["secondaries"].items():
        assert s["status"] == "Healthy"
        # advertised by service name on the compose network, not a container IP
        assert s["uri"].endswith(f"@{name}:9100"), s["uri"]
    s2 = cluster.health("secondary2")
    assert s2["role"] == "secondary" and s2["name"] == "secondary2" and s2["delay"] == DELAY


def test_only_http_ports_are_published_on_loopback(cluster: Cluster) -> None:
    expected = {"nameserver": None, "master": "5000/tcp", "secondary1": "5001/tcp",
                "secondary2": "5002/tcp"}
    for service, container_port in expected.items():
        info = json.loads(cluster.docker("inspect", cluster.container(service)).stdout)[0]
        bindings = {k: v for k, v in (info["HostConfig"]["PortBindings"] or {}).items() if v}
        if container_port is None:
            assert bindings == {}, f"{service} publishes {bindings}"
            continue
        assert list(bindings) == [container_port], f"{service} publishes {bindings}"
        [b] = bindings[container_port]
        assert b["HostIp"] == "127.0.0.1"
        assert int(b["HostPort"]) == cluster.ports[service]


def test_write_concerns_1_2_3(cluster: Cluster) -> None:
    seqs = []
    for w in (1, 2, 3):
        r = cluster.post(f"wc-{w}", w=w, timeout=30)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["w"] == w and body["acks"] >= w
        seqs.append(body["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    msgs = cluster.wait_caught_up(("secondary1", "secondary2"))
    assert msgs[-3:] == ["wc-1", "wc-2", "wc-3"]


def test_replication_blocks_for_the_delay_only_when_asked(cluster: Cluster) -> None:
    idle(cluster)
    t0 = time.monotonic()
    r = cluster.post("blocking-w3", w=3, timeout=30)
    took_w3 = time.monotonic() - t0
    assert r.status_code == 201, r.text
    assert took_w3 >= DELAY * 0.95, f"w=3 answered in {took_w3:.2f}s, before secondary2's delay"

    idle(cluster)
    t0 = time.monotonic()
    r = cluster.post("fast-w1", w=1, timeout=30)
    took_w1 = time.monotonic() - t0
    assert r.status_code == 201, r.text
    assert took_w1 < DELAY / 2, f"w=1 took {took_w1:.2f}s: it waited for secondary2"

    t0 = time.monotonic()
    r = cluster.post("fast-w2", w=2, timeout=30)
    took_w2 = time.monotonic() - t0
    assert r.status_code == 201, r.text
    assert took_w2 < DELAY / 2, f"w=2 took {took_w2:.2f}s: secondary1 alone should do"
    # secondary2 gets them all in the end, in order
    assert cluster.wait_caught_up(("secondary2",))[-3:] == ["blocking-w3", "fast-w1", "fast-w2"]


def test_logs_are_plain_loguru_lines(cluster: Cluster) -> None:
    for service in ("nameserver", "master", "secondary1", "secondary2"):
        res = cluster.docker("logs", cluster.container(service))
        raw = res.stdout + res.stderr
        assert "\x1b[" not in raw, f"colour codes in {service}'s log"
        line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| \w+ +\| \S+ \| ", re.M)
        assert line.search(raw), f"no loguru line in {service}'s log:\n{raw[:500]}"
    text = cluster.logs("master")
    assert "HTTP on http://0.0.0.0:5000" in text


def test_a_third_secondary_joins_and_catches_up_without_restart(cluster: Cluster) -> None:
    master_id = cluster.container("master")
    started_at = json.loads(cluster.docker("inspect", master_id).stdout)[0]["State"]["StartedAt"]
    before = cluster.messages("master")
    assert before, "earlier tests should have written messages"

    cluster.up("secondary3", profile=True)
    cluster.wait_http("secondary3")
    cluster.wait_statuses({"secondary1": "Healthy", "secondary2": "Healthy",
                           "secondary3": "Healthy"})
    caught = cluster.wait_caught_up(("secondary3",))
    assert caught[:len(before)] == before
    r = cluster.post("after-secondary3", w=4, timeout=30)
    assert r.status_code == 201, r.text
    assert cluster.messages("secondary3")[-1] == "after-secondary3"
    # same master container, never restarted
    info = json.loads(cluster.docker("inspect", master_id).stdout)[0]
    assert info["State"]["StartedAt"] == started_at and info["RestartCount"] == 0
    assert cluster.health()["quorum"]["size"] == 4
