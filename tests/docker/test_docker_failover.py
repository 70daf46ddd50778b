"""Failover in containers (REPLOG_FAILOVER=1, mutual TLS as compose runs it): the master's
container killed, then cut off the network (docker network disconnect); a client that
knows only the published ports follows the 307s to whichever node is master; nothing
acknowledged with w=2 is lost, and the old master rejoins as a secondary."""
from __future__ import annotations

import time

import pytest
import requests

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.docker

NODES = ("master", "secondary1", "secondary2")


@pytest.fixture(scope="module")
def cluster(make_cluster) -> Cluster:
    return make_cluster(REPLOG_FAILOVER="1", SECONDARY2_DELAY="0")


def failover(c: Cluster, node: str) -> dict | None:
    try:
        r = c.get(node, "/health", timeout=2)
        return r.json().get("failover") if r.status_code == 200 else None
    except requests.RequestException:
        return None


def master_of(c: Cluster, among=NODES) -> str | None:
    """The node that says it is master and writable, when the others it asks agree."""
    views = {n: failover(c, n) for n in among}
    masters = {v["node"] for v in views.values() if v and v["role"] == "master" and v["writable"]}
    named = {v["master"] for v in views.values() if v}
    return masters.pop() if len(masters) == 1 and named == {*masters} else None


def write(c: Cluster, via: str, message: str, w: int = 2) -> requests.Response:
    """POST through any published port; requests follows the 307 with the same body."""
    return requests.post(c.url(via, "/messages"), json={"message": message, "w": w},
                         timeout=5)


def write_until_accepted(c: Cluster, vias, message: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for via in vias:
            try:
                r = write(c, via, message)
                if r.status_code == 201:
                    return r.json()
            except requests.RequestException:
                pass
        time.sleep(0.05)
    pytest.fail(f"no node accepted {message!r} within {timeout} s")


def shown_everywhere(c: Cluster, acked: dict[str, int], nodes=NODES) -> bool:
    for n in nodes:
        try:
            shown = c.messages(n)
        except requests.RequestException:
            return False
        if any(seq > len(shown) or shown[seq - 1] != m for m, seq in acked.items()):
            return False
    return True


def test_a_killed_master_is_replaced_and_rejoins_as_a_secondary(cluster: Cluster) -> None:
    c = cluster
    assert wait_until(lambda: master_of(c), 60, what="a master elected") == "master"
    acked = {f"before-{i}": write_until_accepted(c, ["secondary1"], f"before-{i}")["seq"]
             for i in range(10)}
    c.docker("kill", c.container("master"))
    new = wait_until(lambda: master_of(c, ("secondary1", "secondary2")), 30,
                     what="a new master among the secondaries")
    acked["after"] = write_until_accepted(c, ["secondary1", "secondary2"], "after")["seq"]
    c.docker("start", c.container("master"))
    # (a restarted node is a secondary from its start, of no master until one reaches it)
    wait_until(lambda: (failover(c, "master") or {}).get("master") == new, 60,
               what=f"the old master back as a secondary of {new}")
    assert failover(c, "master")["role"] == "secondary"
    # still `new`, writable (its 0.5 s lease may lapse for a moment on a busy machine)
    wait_until(lambda: master_of(c) == new, 10, what=f"{new} the writable master of all three")
    wait_until(lambda: shown_everywhere(c, acked), 30, what="every acknowledged write on every node")


def test_a_master_cut_off_the_network_steps_down_when_it_returns(cluster: Cluster) -> None:
    c = cluster
    old = wait_until(lambda: master_of(c), 60, what="a master")
    acked = {"pre-cut": write_until_accepted(c, NODES, "pre-cut")["seq"]}
    net, box = c.network(), c.container(old)
    c.docker("network", "disconnect", net, box)
    try:
        rest = tuple(n for n in NODES if n != old)
        new = wait_until(lambda: master_of(c, rest), 30, what="a master among the others")
        assert new != old
        acked["during-cut"] = write_until_accepted(c, rest, "during-cut")["seq"]
    finally:
        c.docker("network", "connect", "--alias", old, net, box)   # its service name again
    wait_until(lambda: (failover(c, old) or {}).get("role") == "secondary", 60,
               what=f"{old} stepped down once back")
    assert failover(c, old)["stepped_down"] >= 1
    wait_until(lambda: shown_everywhere(c, acked), 30, what="every acknowledged write everywhere")
