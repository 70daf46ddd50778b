"""deploy/swarm/stack.yml on a real (single-node) swarm, driven the way docs/deploy.md tells a
user to: docker stack deploy, docker service scale, docker kill, docker stack rm.

The tests share one stack and run in order: 2 secondaries -> a write with w = every node ->
scaled to 3 -> one killed and restarted by Swarm -> scaled back to 2 -> removed.
"""
from __future__ import annotations

import pytest

from tests.docker.conftest import run, wait_until

from .conftest import Stack

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def every_node(s: Stack) -> int:
    """w = every node: the cluster size the master reports (itself + every secondary it knows)."""
    return s.health()["quorum"]["size"]


def test_write_with_w_every_node_is_held_by_every_secondary(stack: Stack) -> None:
    running = stack.secondaries()
    assert set(running) == {"secondary1", "secondary2"}, running
    assert {n: stack.health(n)["name"] for n in running} == {n: n for n in running}
    w = every_node(stack)
    assert w == 3

    r = stack.post("to-every-node", w=w)
    assert r.status_code == 201, r.text
    assert r.json()["acks"] == 3
    # w = 3 was met: both secondaries hold it now, no waiting.
    for name in running:
        assert stack.messages(name) == ["to-every-node"], name


def test_scaled_up_secondary_is_discovered_and_caught_up(stack: Stack) -> None:
    for i in range(5):
        assert stack.post(f"before-scale-{i}", w=2).status_code == 201

    stack.scale(3)

    assert set(stack.secondaries()) == {"secondary1", "secondary2", "secondary3"}
    h = stack.wait_cluster({"secondary1", "secondary2", "secondary3"})
    assert h["quorum"] == {"size": 4, "needed": 3, "available": 4}
    master = stack.messages("master")
    assert len(master) == 6
    assert stack.messages("secondary3") == master

    r = stack.post("after-scale", w=every_node(stack))
    assert r.status_code == 201, r.text
    assert r.json()["acks"] == 4
    for name in ("secondary1", "secondary2", "secondary3"):
        assert stack.messages(name)[-1] == "after-scale", name


def test_killed_secondary_is_restarted_by_swarm_and_caught_up(stack: Stack) -> None:
    before = stack.secondaries()["secondary1"]
    instance = stack.health("secondary1")["instance"]

    run(["docker", "kill", before["id"]])
    # While it is down: w=3 is the master and the two others.
    for i in range(5):
        r = stack.post(f"while-down-{i}", w=3)
        assert r.status_code == 201, r.text

    def restarted() -> dict | None:
        task = stack.secondaries().get("secondary1")
        if task is None or task["id"] == before["id"]:
            return None
        return task if stack.health("secondary1")["instance"] != instance else None
    after = wait_until(restarted, 60, what="Swarm to start a new secondary1 that answers")
    assert after["slot"] == before["slot"]      # a new container and process, same slot and name
    stack.wait_cluster({"secondary1", "secondary2", "secondary3"})
    assert stack.messages("secondary1") == stack.messages("master")

    r = stack.post("after-restart", w=every_node(stack))
    assert r.status_code == 201, r.text


def test_scaled_down_cluster_stays_writable_and_reports_the_removed_secondary(
        stack: Stack) -> None:
    before = set(stack.secondaries())
    stack.scale(2)
    # Converged; the removed task's container may still be stopping.
    kept = wait_until(lambda: (lambda k: k if len(k) == 2 else None)(set(stack.secondaries())),
                      30, what="one secondary container to be gone")
    assert kept < before, (before, kept)
    (removed,) = before - kept

    # The master keeps counting the removed secondary (cluster size 4, quorum 3): it is shown
    # Unhealthy, and the three nodes left are a quorum, so writes go on.
    def reported() -> dict | None:
        h = stack.health()
        return h if h["secondaries"][removed]["status"] == "Unhealthy" else None
    h = wait_until(reported, 30, what=f"the master to report {removed} Unhealthy")
    assert h["quorum"] == {"size": 4, "needed": 3, "available": 3}
    assert not h["read_only"]
    assert all(h["secondaries"][n]["status"] == "Healthy" for n in kept)

    r = stack.post("after-scale-down", w=3)
    assert r.status_code == 201, r.text
    for name in kept:
        assert stack.messages(name)[-1] == "after-scale-down", name


def test_stack_is_removed_cleanly(stack: Stack) -> None:
    left = stack.remove()
    assert left == {"services": [], "containers": [], "networks": [], "volumes": []}
