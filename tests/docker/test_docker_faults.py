"""Real container faults: docker kill + start, docker pause/unpause, and a network partition
(docker network disconnect/connect). Short failure-detector thresholds come from the
environment (see FAST_TIMING in conftest.py); secondary2 runs without a delay here."""
from __future__ import annotations

import threading
import time

import pytest
import requests

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.docker

BOTH = ("secondary1", "secondary2")


@pytest.fixture(scope="module")
def cluster(make_cluster) -> Cluster:
    c = make_cluster(SECONDARY2_DELAY="0")
    c.wait_statuses({"secondary1": "Healthy", "secondary2": "Healthy"})
    return c


def all_healthy(c: Cluster) -> None:
    c.wait_statuses({"secondary1": "Healthy", "secondary2": "Healthy"}, timeout=60)
    wait_until(lambda: not c.health()["read_only"], 30, what="the master to accept writes")


def test_killed_secondary_catches_up_exactly(cluster: Cluster) -> None:
    c = cluster
    all_healthy(c)
    accepted: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with requests.Session() as s:
            for i in range(400):   # bounded in count and in time
                if stop.is_set():
                    break
                msg = f"stream-{i}"
                try:
                    r = c.post(msg, w=1, timeout=10, session=s)
                except requests.RequestException as e:
                    errors.append(f"{msg}: {e}")
                    continue
                if r.status_code == 201:
                    accepted.append(msg)
                else:
                    errors.append(f"{msg}: {r.status_code} {r.text}")
                time.sleep(0.01)

    t = threading.Thread(target=writer, name="writer", daemon=True)
    t.start()
    try:
        wait_until(lambda: len(accepted) >= 30, 30, what="30 writes before the kill")
        secondary1 = c.container("secondary1")
        c.docker("kill", secondary1)
        wait_until(lambda: c.statuses()["secondary1"] != "Healthy", 20,
                   what="the master to notice the kill")
        n_at_kill = len(accepted)
        wait_until(lambda: len(accepted) >= n_at_kill + 30, 30,
                   what="30 more writes while secondary1 is down")
        c.docker("start", secondary1)
        c.wait_http("secondary1")
        wait_until(lambda: len(accepted) >= n_at_kill + 60, 30,
                   what="30 more writes after the restart")
    finally:
        stop.set()
        t.join(timeout=30)
    assert not errors, errors[:5]

    final = c.wait_caught_up(BOTH, timeout=60)
    stream = [m for m in final if m.startswith("stream-")]
    assert stream == accepted   # every accepted write, once, in order
    assert c.messages("secondary1") == c.messages("master")
    all_healthy(c)


def test_paused_secondary_goes_suspected_unhealthy_healthy(cluster: Cluster) -> None:
    c = cluster
    all_healthy(c)
    secondary1 = c.container("secondary1")
    seen: list[str] = []

    def status() -> str:
        s = c.statuses()["secondary1"]
        if not seen or seen[-1] != s:
            seen.append(s)
        return s

    assert status() == "Healthy"
    c.docker("pause", secondary1)
    try:
        wait_until(lambda: status() == "Suspected", 20, interval=0.05,
                   what="secondary1 to be Suspected")
        wait_until(lambda: status() == "Unhealthy", 20, interval=0.05,
                   what="secondary1 to be Unhealthy")
    finally:
        c.docker("unpause", secondary1)
    wait_until(lambda: status() == "Healthy", 20, interval=0.05,
               what="secondary1 to be Healthy again")
    assert seen == ["Healthy", "Suspected", "Unhealthy", "Healthy"], seen
    # the 2 of 3 quorum held all along: still writable
    r = c.post("after-pause", w=3, timeout=30)
    assert r.status_code == 201, r.text


def test_partition_of_both_secondaries_makes_master_read_only(cluster: Cluster) -> None:
    c = cluster
    all_healthy(c)
    net = c.network()
    ids = {name: c.container(name) for name in BOTH}
    for name in BOTH:
        c.docker("network", "disconnect", net, ids[name])
    try:
        h = wait_until(lambda: (h := c.health())["read_only"] and h, 30,
                       what="the master to go read-only")
        assert h["quorum"]["available"] == 1 and h["reason"], h
        r = c.post("during-partition", w=1)
        assert r.status_code == 503, r.text
        assert "error" in r.json()
    finally:
        for name in BOTH:
            # Re-attach under the service name (the alias compose gave it): the nodes
            # advertise their service names in their Pyro5 URIs.
            c.docker("network", "connect", "--alias", name, net, ids[name])
    all_healthy(c)
    r = c.post("after-partition", w=3, timeout=30)
    assert r.status_code == 201, r.text
    final = c.wait_caught_up(BOTH)
    assert "during-partition" not in final and final[-1] == "after-partition"
