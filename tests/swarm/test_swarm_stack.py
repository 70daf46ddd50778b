"""deploy/swarm/stack.yml on a real (single-node) swarm, driven the way docs/deploy.md tells a
user to: docker stack deploy, docker service scale, docker kill, docker stack rm.

The tests share one stack and run in order: 2 secondaries -> a write with w = every node ->
the node plane is mutual TLS -> scaled to 3 -> one killed and restarted by Swarm -> scaled
back to 2 (the removed one leaves the cluster) -> removed.
"""
from __future__ import annotations

import json
from pathlib import Path

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


# Run inside the master's container (on the stack's overlay network): a Pyro5 ping of the name
# server and of the master, with the certificates of argv[1] ("" = none).
PROBE = r"""
import json, sys
import Pyro5.api, Pyro5.errors
from nodes import rpc
rpc.configure_client(sys.argv[1])
out = {}
for key, uri in (("nameserver", "PYRO:Pyro.NameServer@nameserver:9090"),
                 ("master", "PYRO:replog.master@master:9100")):
    try:
        with Pyro5.api.Proxy(uri) as p:
            p._pyroTimeout = 5
            p._pyroBind()
            out[key] = "connected"
    except Pyro5.errors.CommunicationError:
        out[key] = "no connection"
print(json.dumps(out))
"""


def probe_from_master(s: Stack, tls_dir: str) -> dict:
    (master,) = s.containers("master")
    res = run(["docker", "exec", master["Id"], "python", "-c", PROBE, tls_dir], timeout=60)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_node_plane_is_mutual_tls_with_certificates_from_swarm_secrets(stack: Stack) -> None:
    logs = ""    # from each running container (docker logs: complete, unlike service logs)
    for role in ("nameserver", "master", "secondary"):
        for c in stack.containers(role):
            res = run(["docker", "logs", c["Id"]], timeout=60)
            logs += res.stdout + res.stderr
    for node in ("nameserver", "master", "secondary1", "secondary2"):
        assert f"node plane: mutual TLS with certificate '{node}'" in logs, node
    assert "UNAUTHENTICATED" not in logs
    # On the overlay network, a process without a certificate reaches nothing; the master's
    # own certificate (its secrets, as the node uses them) does.
    assert probe_from_master(stack, "") == {"nameserver": "no connection",
                                            "master": "no connection"}
    assert probe_from_master(stack, "/run/secrets/tls/master") == {"nameserver": "connected",
                                                                   "master": "connected"}


def test_client_api_is_https_with_tokens_by_default(stack: Stack) -> None:
    """Every published port speaks HTTPS with a certificate of the stack's CA, and wants a
    token with the route's role: none -> 401, the healthchecks' read-only one -> reads only."""
    import requests
    for node in ("master", "secondary1"):
        url = stack.url(node, "/health")
        with stack.session(token=None) as anonymous:
            r = anonymous.get(url, timeout=10)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        with stack.session(token="probe") as reader:
            assert reader.get(url, timeout=10).status_code == 200
            r = reader.post(stack.url("master", "/messages"), json={"message": "x"}, timeout=10)
            assert r.status_code == 403, r.text
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https:", "http:"), timeout=10)
    logs = ""
    for role in ("master", "secondary"):
        for c in stack.containers(role):
            res = run(["docker", "logs", c["Id"]], timeout=60)
            logs += res.stdout + res.stderr
    assert "client API is OPEN" not in logs
    assert "HTTPS on https://0.0.0.0:5000" in logs and "HTTPS on https://0.0.0.0:5001" in logs
    for name in ("admin", "probe"):
        token = (Path(stack.tokens) / f"{name}.token").read_text().strip()
        assert token not in logs


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
    instance = stack.health("secondary1")["incarnation"]

    run(["docker", "kill", before["id"]])
    # While it is down: w=3 is the master and the two others.
    for i in range(5):
        r = stack.post(f"while-down-{i}", w=3)
        assert r.status_code == 201, r.text

    def restarted() -> dict | None:
        task = stack.secondaries().get("secondary1")
        if task is None or task["id"] == before["id"]:
            return None
        return task if stack.health("secondary1")["incarnation"] != instance else None
    after = wait_until(restarted, 60, what="Swarm to start a new secondary1 that answers")
    assert after["slot"] == before["slot"]      # a new container and process, same slot and name
    stack.wait_cluster({"secondary1", "secondary2", "secondary3"})
    assert stack.messages("secondary1") == stack.messages("master")

    r = stack.post("after-restart", w=every_node(stack))
    assert r.status_code == 201, r.text


def test_scaled_down_secondary_leaves_the_cluster_which_stays_writable(stack: Stack) -> None:
    before = set(stack.secondaries())
    stack.scale(2)
    # Converged; the removed task's container may still be stopping.
    kept = wait_until(lambda: (lambda k: k if len(k) == 2 else None)(set(stack.secondaries())),
                      30, what="one secondary container to be gone")
    assert kept < before, (before, kept)
    (removed,) = before - kept
    assert removed == "secondary3"       # Swarm removed the highest slot: a discovered one

    # The removed task stopped cleanly (it unregistered from the name server): once Unhealthy,
    # the master forgets it, and the cluster is the master and the two kept (size 3, quorum 2).
    def forgotten() -> dict | None:
        h = stack.health()
        return h if removed not in h["secondaries"] and h["quorum"]["size"] == 3 else None
    h = wait_until(forgotten, 30, what=f"the master to forget {removed}")
    assert h["quorum"] == {"size": 3, "needed": 2, "available": 3}
    assert not h["read_only"]
    assert set(h["secondaries"]) == kept
    assert all(h["secondaries"][n]["status"] == "Healthy" for n in kept)

    r = stack.post("after-scale-down", w=every_node(stack))
    assert r.status_code == 201, r.text
    assert r.json()["acks"] == 3
    for name in kept:
        assert stack.messages(name)[-1] == "after-scale-down", name


def test_stack_is_removed_cleanly(stack: Stack) -> None:
    left = stack.remove()
    assert left == {"services": [], "containers": [], "networks": [], "secrets": [],
                    "volumes": []}
