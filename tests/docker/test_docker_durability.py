"""Durability in Docker: every node keeps its log in a named volume (REPLOG_DATA_DIR=/data),
and no acknowledged write is lost when a container is killed, re-created or loses its volume.
Also issue 10 on containers: a client that writes the instant `up -d` returns is never refused.

One compose project serves the whole module (each `up`/`down` costs seconds). The first test
needs it fresh, so it runs first; every later test starts by bringing the cluster back to
"every service up" and waiting only for what a user waits for (the HTTP ports to answer).
The module's teardown runs `down -v` whatever happened; a failing test prints the services'
logs (conftest.py).

Pyro5 from the host: the compose setup publishes only the HTTP ports, and the nodes advertise
their service names (master:9100) in the name server, so a client on the host cannot reach the
master's Pyro5 at all. The Pyro5 client here runs as a container on the project's network,
as a Pyro5 user of the Docker cluster would.
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from typing import Any

import pytest
import requests

from .conftest import IMAGE, Cluster, post_at_once, run, wait_until
from tests.histories import check_history

pytestmark = pytest.mark.docker

SECONDARIES = ("secondary1", "secondary2")
SERVICES = ("nameserver", "master", *SECONDARIES)


@pytest.fixture(scope="module")
def cluster(make_cluster) -> Cluster:
    """A fresh project: returns the moment `up -d` returns, nothing waited for."""
    c = make_cluster(SERVICES, wait=False, SECONDARY2_DELAY="0")
    c.fresh = True   # type: ignore[attr-defined]
    return c


# --- clients --------------------------------------------------------------------------------

# Runs in a container on the project's network: looks the master up in the name server and
# appends as soon as it can. Retries only while the master is not registered or not reachable;
# any other answer (PermissionError = read-only, ...) is reported as a refusal.
PYRO_CLIENT = r"""
import json, sys, time
import Pyro5.api, Pyro5.errors
from Pyro5 import config
from nodes import rpc
config.COMMTIMEOUT = 10.0
message, w, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
import os
seen = {"ns_unreachable": 0, "not_registered": 0, "unreachable": 0, "no_cert_yet": 0}
deadline = time.monotonic() + limit
while not os.path.exists(os.path.join(sys.argv[4], "node.key")):   # `certs` still making them
    seen["no_cert_yet"] += 1
    time.sleep(0.01)
rpc.configure_client(sys.argv[4])     # the compose node plane is mutual TLS: a client cert
while True:
    try:
        with Pyro5.api.locate_ns("nameserver", 9090) as ns:
            uri = ns.lookup("replog.master")
    except Pyro5.errors.NamingError:
        seen["not_registered"] += 1
    except Pyro5.errors.CommunicationError:
        seen["ns_unreachable"] += 1
    else:
        try:
            with Pyro5.api.Proxy(uri) as master:
                master._pyroTimeout = 60
                result = master.append(message, w)
            print(json.dumps({"result": result, **seen}))
            sys.exit(0)
        except Pyro5.errors.CommunicationError:
            seen["unreachable"] += 1
        except Exception as e:
            print(json.dumps({"refused": "%s: %s" % (type(e).__name__, e), **seen}))
            sys.exit(1)
    if time.monotonic() > deadline:
        print(json.dumps({"gave_up": limit, **seen}))
        sys.exit(2)
    time.sleep(0.005)
"""


def pyro_append_at_once(c: Cluster, message: str, w: int, limit: float = 90) -> dict[str, Any]:
    """Run PYRO_CLIENT in a throw-away container on the project's network (compose names it
    <project>_default); returns what it printed."""
    res = run(["docker", "run", "--rm", "--network", f"{c.project}_default",
               "-v", f"{c.project}_certs:/certs:ro", IMAGE,
               "python", "-c", PYRO_CLIENT, message, str(w), str(limit), "/certs/client-admin"],
              timeout=limit + 60, check=False)
    try:
        out = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {"error": f"exit {res.returncode}", "stdout": res.stdout, "stderr": res.stderr}
    out["exit"] = res.returncode
    return out


def in_threads(**calls: Any) -> dict[str, Any]:
    """Run each zero-argument callable in its own thread at once; return their results."""
    results: dict[str, Any] = {}

    def call(name: str, fn: Any) -> None:
        try:
            results[name] = fn()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            results[name] = {"error": f"{type(e).__name__}: {e}"}

    threads = [threading.Thread(target=call, args=item, daemon=True) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    return results


class Writers:
    """n clients appending unique messages with w=1 until stopped; each keeps its 201s."""

    def __init__(self, c: Cluster, n: int = 4, prefix: str = "c") -> None:
        self.acked: dict[int, list[str]] = {i: [] for i in range(n)}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(c, i, prefix), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, c: Cluster, i: int, prefix: str) -> None:
        with requests.Session() as s:
            k = 0
            while not self.stop.is_set() and k < 5000:     # bounded in count and in time
                k += 1
                msg = f"{prefix}{i}-{k}"
                try:
                    r = c.post(msg, w=1, timeout=10, session=s)
                except requests.RequestException:
                    time.sleep(0.02)           # the master is down: a client retries later
                    continue
                if r.status_code == 201:
                    self.acked[i].append(msg)
                else:
                    time.sleep(0.02)

    def count(self) -> int:
        return sum(map(len, self.acked.values()))

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


# --- cluster state ----------------------------------------------------------------------------

def everything_up(c: Cluster) -> dict:
    """Bring every service back (a no-op when they run), wait for the HTTP ports and for both
    secondaries to have acknowledged the whole log; returns the master's /health."""
    c.fresh = False   # type: ignore[attr-defined]
    c.up(*SERVICES)
    for node in ("master", *SECONDARIES):
        c.wait_http(node)

    def idle() -> dict | None:
        h = c.health()
        ok = all(h["secondaries"].get(n, {}).get("status") == "Healthy"
                 and h["secondaries"][n]["acked_seq"] == h["last_seq"] for n in SECONDARIES)
        return h if ok else None
    return wait_until(idle, 60, what="both secondaries Healthy with the whole log acknowledged")


def write(c: Cluster, prefix: str, n: int, w: int = 3) -> list[str]:
    msgs = [f"{prefix}-{i}" for i in range(n)]
    with requests.Session() as s:
        for m in msgs:
            r = c.post(m, w=w, timeout=30, session=s)
            assert r.status_code == 201, r.text
    return msgs


def service_log(c: Cluster, service: str) -> str:
    return c.logs(service)


# --- issue 10: no refused write at startup ---------------------------------------------------

def test_writes_the_instant_compose_up_returns_are_never_refused(cluster: Cluster) -> None:
    """Three clients start the moment `up -d` returned: one POSTs at once (retrying only while
    nothing answers), one waits for the published port to accept a connection first, one
    appends through Pyro5 from a container on the project's network. None is refused."""
    c = cluster
    if not getattr(c, "fresh", False):
        pytest.fail("this test needs the module's project fresh: run it first")
    c.fresh = False   # type: ignore[attr-defined]
    results = in_threads(
        http=lambda: post_at_once(c, "http-at-once", w=3),
        port=lambda: post_at_once(c, "http-after-port", w=1, wait_for_port=True),
        pyro=lambda: pyro_append_at_once(c, "pyro-at-once", w=3),
    )
    print(f"\nfirst answers after `up -d` returned: {json.dumps(results, indent=1)}")
    for name in ("http", "port"):
        assert results[name].get("status") == 201, (name, results[name])
    assert results["pyro"].get("exit") == 0 and "result" in results["pyro"], results["pyro"]
    assert results["pyro"]["result"]["acks"] == 3, results["pyro"]

    everything_up(c)
    expected = {"http-at-once", "http-after-port", "pyro-at-once"}
    for node in ("master", *SECONDARIES):
        assert set(c.messages(node)) == expected, node
    assert " | ERROR " not in service_log(c, "master"), "a normal start logged an ERROR"
    # and the logs live on the volumes: each node's /data is a named volume of this project
    for node in ("master", *SECONDARIES):
        assert c.volume(node) == f"{c.project}_{node}-data"


# --- a secondary ------------------------------------------------------------------------------

def test_restarted_secondary_serves_its_volume_and_is_sent_only_the_tail(cluster: Cluster) -> None:
    """docker compose kill secondary1, more writes, start it again: before the master can send
    anything (paused) it already holds its log from its volume; then it gets only the tail."""
    c = cluster
    everything_up(c)
    write(c, "before-s1-kill", 50)
    h = everything_up(c)
    held, log_id = h["last_seq"], c.health("secondary1")["log_id"]
    expected_held = c.messages("master")

    c.compose("kill", "secondary1")
    tail = write(c, "while-s1-down", 20, w=2)
    c.compose("pause", "master")        # the master can send nothing now
    try:
        c.compose("start", "secondary1")
        c.wait_http("secondary1")
        assert c.messages("secondary1") == expected_held
        s1 = c.health("secondary1")
        assert s1["log_id"] == log_id
        assert s1["durable"]["loaded_from_disk"] == held, s1
    finally:
        c.compose("unpause", "master")
    final = c.wait_caught_up(SECONDARIES)
    assert final == expected_held + tail
    wait_until(lambda: c.health()["secondaries"]["secondary1"]["acked_seq"] == len(final), 30,
               what="secondary1 to acknowledge the tail")
    assert c.health()["secondaries"]["secondary1"]["sent"] == len(tail)   # not the whole log
    assert re.search(rf"secondary1 caught up at seq={len(final)}: sent {len(tail)} messages",
                     service_log(c, "master"))


# --- the master -------------------------------------------------------------------------------

def test_killed_master_started_again_keeps_every_acknowledged_write(cluster: Cluster) -> None:
    """docker compose kill master (SIGKILL) while 4 clients write with w=1, then start."""
    c = cluster
    h0 = everything_up(c)
    writers = Writers(c, prefix="kill")
    try:
        wait_until(lambda: writers.count() >= 150, 60, what="150 acknowledged writes")
        c.compose("kill", "master")
        at_kill = writers.count()
        c.compose("start", "master")
        wait_until(lambda: writers.count() >= at_kill + 100, 90,
                   what="100 more acknowledged writes after the master came back")
    finally:
        writers.join()
    log = c.wait_caught_up(SECONDARIES)
    check_history(log, writers.acked)
    h = c.health()
    assert h["log_id"] == h0["log_id"] and h["epoch"] == h0["epoch"] + 1, (h0, h)
    # Its volume held every write it had acknowledged (w=1: on its disk before the 201). It may
    # also fetch a last message or two that a secondary got before the master's sync.
    loaded = re.findall(r"loaded (\d+) messages of log (\w+) from /data",
                        service_log(c, "master"))
    assert loaded and loaded[-1][1] == h0["log_id"], loaded
    assert int(loaded[-1][0]) >= h0["last_seq"] + at_kill, (loaded[-1], h0["last_seq"], at_kill)
    print(f"\n{writers.count()} acknowledged w=1 writes, {at_kill} before the kill; "
          f"log of {len(log)} messages")


def test_master_container_recreated_with_its_volume_keeps_the_log(cluster: Cluster) -> None:
    """docker compose rm -sf master; up -d master (the volume kept): the same log, and a
    client that writes the instant `up -d` returns is not refused."""
    c = cluster
    h0 = everything_up(c)
    write(c, "before-rm", 20)
    expected = c.messages("master")
    old = c.container("master")

    c.compose("rm", "-s", "-f", "master")
    c.up("master")
    first = post_at_once(c, "after-rm", w=3)
    assert first.get("status") == 201, first
    assert c.container("master") != old               # a new container, the same volume
    assert c.volume("master") == f"{c.project}_master-data"
    assert c.wait_caught_up(SECONDARIES) == expected + ["after-rm"]
    h = c.health()
    assert h["log_id"] == h0["log_id"] and h["epoch"] > h0["epoch"], (h0, h)
    assert h["recovery"]["source"] == "master" and h["recovery"]["fetched"] == 0, h["recovery"]


def test_master_that_lost_its_volume_recovers_from_the_secondaries(cluster: Cluster) -> None:
    """A new master container without its volume (rm -sf master, docker volume rm, up -d):
    before it serves, it fetches the log from the secondaries, and nothing is wiped."""
    c = cluster
    h0 = everything_up(c)
    write(c, "before-disk-loss", 30)
    expected = c.messages("master")
    volume = c.volume("master")

    c.compose("rm", "-s", "-f", "master")
    c.docker("volume", "rm", volume)
    c.up("master")
    c.wait_http("master")
    assert c.messages("master") == expected          # recovered before it answered
    for node in SECONDARIES:
        assert c.messages(node) == expected, f"{node} lost messages"
    h = c.health()
    assert h["log_id"] == h0["log_id"], (h0, h)
    rec = h["recovery"]
    assert rec["action"] == "serve" and rec["source"] in SECONDARIES, rec
    assert rec["fetched"] == len(expected), rec
    assert re.search(rf"recovered {len(expected)} messages from secondary[12]",
                     service_log(c, "master"))
    r = c.post("after-disk-loss", w=3, timeout=30)
    assert r.status_code == 201, r.text
    assert c.wait_caught_up(SECONDARIES) == expected + ["after-disk-loss"]
    # the new volume holds the log now: one more restart serves it from the master's disk
    c.compose("kill", "master")
    c.compose("start", "master")
    c.wait_http("master")
    assert c.messages("master") == expected + ["after-disk-loss"]
    assert c.health()["recovery"]["source"] == "master"


def test_a_volume_copied_out_with_tar_restores_a_master(cluster: Cluster) -> None:
    """The backup and restore of docs/docker-volumes.md: tar a running secondary's volume out
    to the host, give the master a new volume holding that copy; it serves it as its own."""
    c = cluster
    h0 = everything_up(c)
    write(c, "before-backup", 10)
    expected = c.messages("master")
    backup = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{c.volume('secondary1')}:/data:ro", IMAGE,
         "tar", "-C", "/data", "-cf", "-", "."],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=True).stdout

    volume = c.volume("master")
    c.compose("rm", "-s", "-f", "master")
    c.docker("volume", "rm", volume)
    c.compose("up", "--no-start", "--no-build", "master")      # a new, empty volume
    subprocess.run(["docker", "run", "--rm", "-i", "-v", f"{volume}:/data", IMAGE,
                    "tar", "-C", "/data", "-xf", "-"],
                   input=backup, capture_output=True, timeout=60, check=True)
    c.compose("start", "master")
    c.wait_http("master")
    assert c.messages("master") == expected
    h = c.health()
    assert h["log_id"] == h0["log_id"]
    assert h["recovery"]["source"] == "master" and h["recovery"]["fetched"] == 0, h["recovery"]
    r = c.post("after-restore", w=3, timeout=30)
    assert r.status_code == 201, r.text
    assert c.wait_caught_up(SECONDARIES) == expected + ["after-restore"]


# --- the whole cluster --------------------------------------------------------------------------

def test_down_keeps_the_logs_and_down_v_starts_fresh(cluster: Cluster) -> None:
    """`down` then `up -d`: every node comes back with the same log; `down -v` then `up -d`:
    a new, empty log (the documented way to start fresh)."""
    c = cluster
    h0 = everything_up(c)
    write(c, "before-down", 10)
    expected = c.messages("master")

    c.compose("down", "--timeout", "5")
    c.up(*SERVICES)
    first = post_at_once(c, "after-down", w=3)
    assert first.get("status") == 201, first
    assert c.wait_caught_up(SECONDARIES) == expected + ["after-down"]
    assert c.health()["log_id"] == h0["log_id"]

    c.compose("down", "-v", "--timeout", "5")
    c.up(*SERVICES)
    first = post_at_once(c, "fresh", w=3)
    assert first.get("status") == 201, first
    assert c.wait_caught_up(SECONDARIES) == ["fresh"]
    assert c.health()["log_id"] != h0["log_id"]
