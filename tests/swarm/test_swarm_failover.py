"""deploy/swarm/stack-failover.yml on a real (single-node) swarm: the three voters, each its own
service on its own published port, with mutual TLS, HTTPS and tokens as the stack has them.

The tests share one stack and run in order: a master is elected and every node names it and
its advertised URL -> a write to a secondary's port answers 307 to that URL -> writes with
w=3, `docker kill` of the master's container, a client retrying through every published port
(following 307s with its token, as `curl --location-trusted` does) is answered by a new
master, which holds every acknowledged write; Swarm restarts the killed task and it rejoins
as a secondary of the new master, holding everything -> the Python client, given only the
secondaries' ports, appends through the master -> the stack and its volumes removed.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.docker.conftest import run, wait_until

from .conftest import VOTERS, FailoverStack

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

# Generous for a loaded 2-core machine; measured here: a master in ~10 s after the deploy, a
# new one ~1 s after the kill, the killed task back in ~6 s.
ELECTED = 120
NEW_MASTER = 30
RESTARTED = 90


@pytest.fixture(scope="module")
def stack(swarm_image: str) -> FailoverStack:
    """stack-failover.yml, deployed, with a master every voter names. Removed at the end of
    the module whatever happened (a test may have removed it already)."""
    s = FailoverStack(swarm_image)
    try:
        s.make_certs()
        t0 = time.monotonic()
        s.deploy()
        m = wait_until(s.master, ELECTED, interval=0.3, what="a master that every voter names")
        print(f"\n{m['node']} elected in epoch {m['epoch']}, {time.monotonic() - t0:.1f} s "
              "after the deploy")
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.remove()


def test_every_voter_names_the_master_and_its_advertised_url(stack: FailoverStack) -> None:
    # (naming, not writability: a master whose 0.5 s lease lapses on a busy machine is
    # read-only for that moment, and still every voter's master)
    m = stack.master(writable=False)
    assert m, "no master every voter names"
    for node, view in m["views"].items():
        assert view["node"] == node
        assert view["cluster"] == sorted(VOTERS)
        assert view["master_url"] == stack.advertised(m["node"]), (node, view)
        assert view["role"] == ("master" if node == m["node"] else "secondary"), (node, view)


def test_a_write_to_a_secondary_answers_307_to_the_masters_advertised_url(
        stack: FailoverStack) -> None:
    m = stack.master(writable=False)
    assert m
    location = stack.advertised(m["node"]) + "/messages"
    with stack.session() as http:
        for node in VOTERS:
            if node == m["node"]:
                continue
            r = http.post(stack.url(node, "/messages"), json={"message": "not here", "w": 3},
                          timeout=10, allow_redirects=False)
            assert r.status_code == 307, r.text
            assert r.headers["Location"] == location, r.headers
            assert r.json()["master"] == m["node"] and r.json()["epoch"] == m["epoch"]
        # what `curl -L` (and requests) do: follow it, without the token (another port)
        r = http.post(stack.url(next(n for n in VOTERS if n != m["node"]), "/messages"),
                      json={"message": "not here either"}, timeout=10)
        assert [h.status_code for h in r.history] == [307] and r.status_code == 401, r.text
        # a 307 appended nothing
        assert http.get(stack.url(m["node"], "/messages"), timeout=10).json()["messages"] == []


def shown(stack: FailoverStack, node: str, acked: dict[str, int]) -> bool:
    """Does the node show every acknowledged message at its seq?"""
    try:
        got = stack.messages(node)
    except requests.RequestException:
        return False
    return all(seq <= len(got) and got[seq - 1] == msg for msg, seq in acked.items())


def test_a_killed_master_is_replaced_and_rejoins_as_a_secondary(stack: FailoverStack) -> None:
    s = stack
    old = wait_until(s.master, 30, interval=0.3, what="a writable master every voter names")
    acked: dict[str, int] = {}
    with s.session() as http:
        for i, via in enumerate(VOTERS * 2):          # through every port, 307s followed
            msg = f"before-{i}"
            r, asked = s.write(via, {"message": msg, "w": 3, "id": msg}, http)
            assert r.status_code == 201, (asked, r.text)
            assert r.json()["acks"] == 3 and s.node_at(asked[-1]) == old["node"], asked
            acked[msg] = r.json()["seq"]

    (box,) = s.containers(old["node"])
    t0 = time.monotonic()
    run(["docker", "kill", box["Id"]])                # SIGKILL

    # A client that knows only the published ports: each in turn (the dead one included),
    # until a write is acknowledged; a retry keeps its id, so nothing is appended twice.
    body = {"message": "after-kill", "w": 2, "id": "after-kill"}
    tries: list[str] = []
    deadline = t0 + NEW_MASTER
    answer = None
    with s.session() as http:
        while answer is None and time.monotonic() < deadline:
            for via in (old["node"], *[n for n in VOTERS if n != old["node"]]):
                try:
                    r, asked = s.write(via, body, http, timeout=5)
                except requests.RequestException as e:
                    tries.append(f"{via}: {type(e).__name__}")
                    continue
                tries.append(f"{via}: {r.status_code}")
                if r.status_code == 201:
                    answer = (r, asked)
                    break
            else:
                time.sleep(0.2)
    assert answer, f"no write accepted within {NEW_MASTER} s of the kill: {tries[-12:]}"
    took = time.monotonic() - t0
    r, asked = answer
    new = s.node_at(asked[-1])
    assert new != old["node"]
    acked["after-kill"] = r.json()["seq"]
    view = s.failover(new)
    assert view["role"] == "master" and view["epoch"] > old["epoch"], view
    print(f"\n{old['node']} killed; {new} (epoch {view['epoch']}) acknowledged a write "
          f"{took:.1f} s later ({len(tries)} tries, the last through {asked})")
    # every write acknowledged with w=3 (and the one after the kill) is on the new master
    got = s.messages(new)
    assert {m: got[seq - 1] if seq <= len(got) else None for m, seq in acked.items()} == \
        {m: m for m in acked}, got

    # Swarm starts a new task for the killed node: a new process on the same volume, which
    # rejoins as a secondary of the master, in its epoch, and is sent what it missed. The
    # master is still `new`, in the same epoch: until `new` reaches it at its new address,
    # the restarted node's election timeouts end, but it only asks for pre-votes, and the
    # others, who hear `new`, say no (docs/failover.md, the pre-vote).
    def rejoined() -> dict | None:
        (c,) = s.containers(old["node"]) or [None]
        if c is None or c["Id"] == box["Id"]:
            return None               # (the killed process cannot answer: a new one does)
        return s.master()             # every voter, the restarted one too, names it
    m = wait_until(rejoined, RESTARTED, interval=0.3,
                   what=f"a new {old['node']} task that names the master as the others do")
    print(f"{old['node']} back as a secondary of {m['node']} (epoch {m['epoch']}) "
          f"{time.monotonic() - t0:.1f} s after the kill")
    back = m["views"][old["node"]]
    assert back["role"] == "secondary" and back["epoch"] == m["epoch"], back
    assert (m["node"], m["epoch"]) == (new, view["epoch"]), m    # no election since
    assert back["elections_stood"] == 0, back
    wait_until(lambda: shown(s, old["node"], acked), 30,
               what=f"{old['node']} to show every acknowledged write")

    # the cluster is whole again: w=3 through the restarted node's own port
    with s.session() as http:
        r, asked = s.write(old["node"], {"message": "whole", "w": 3, "id": "whole"}, http)
    assert r.status_code == 201 and r.json()["acks"] == 3, (asked, r.text)
    assert s.node_at(asked[-1]) == new
    acked["whole"] = r.json()["seq"]
    # held by all three now; a secondary shows it once the master's next heartbeat says it
    # is committed (docs/failover.md: reads show committed entries only)
    for node in VOTERS:
        wait_until(lambda: shown(s, node, acked), 10, interval=0.1,
                   what=f"{node} to show every acknowledged write")
    assert s.messages(new) == list(acked)            # nothing else, nothing twice


def test_the_python_client_finds_the_master_through_a_secondarys_port(
        stack: FailoverStack) -> None:
    """replog_client follows the 307 itself and sends its token to the master (docs/deploy.md
    tells Python users so): given only the secondaries' ports, it appends with w=3."""
    from replog_client import Client
    # who is master, to give the client only the others; it waits out a 503 itself (a lease
    # that lapsed for a moment), as README says, so writability is not waited for here
    m = stack.master(writable=False)
    assert m
    token = (Path(stack.tokens) / "admin.token").read_text().strip()
    urls = [stack.url(n, "") for n in VOTERS if n != m["node"]]
    with Client(urls, token=token, ca=str(Path(stack.certs) / "ca.crt"), timeout=10) as c:
        answer = c.append("by the python client", w=3)
    assert answer.acks == 3, answer
    assert stack.messages(m["node"])[answer.seq - 1] == "by the python client"


def test_stack_is_removed_cleanly(stack: FailoverStack) -> None:
    left = stack.remove()
    assert left == {"services": [], "containers": [], "networks": [], "secrets": [],
                    "volumes": []}
