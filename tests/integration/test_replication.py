"""Iterations 0-2 on real processes: write concern, blocking, ordering, discovery, input."""
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import Pyro5.api
import pytest
import requests

from nodes.launcher import ROOT, wait_until
from .conftest import Client, check_waiting_posts_block_nobody, start_cluster


@pytest.fixture
def two(cluster, http):
    master, secs = start_cluster(cluster)
    c = Client(http, master.url)
    return c, master, secs


def test_write_concerns_1_2_3_and_convergence(two):
    c, master, secs = two
    for i, w in enumerate([1, 2, 3], start=1):
        r = c.post(f"msg{i}", w=w)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["seq"] == i and body["w"] == w and body["acks"] >= w
    # without w every node must hold it
    r = c.post("all")
    assert r.status_code == 201 and r.json()["acks"] == 3
    for s in secs:
        assert c.messages(s.url) == ["msg1", "msg2", "msg3", "all"]
    assert c.messages() == ["msg1", "msg2", "msg3", "all"]


def test_blocking_replication_and_temporary_inconsistency(cluster, http):
    delay = 1.0
    master, (fast, slow) = start_cluster(cluster, secondary_flags={"s2": {"delay": delay}})
    c = Client(http, master.url)
    t0 = time.monotonic()
    assert c.post("first", w=3).status_code == 201
    assert time.monotonic() - t0 >= delay          # w=3 waited for the delayed secondary
    t0 = time.monotonic()
    assert c.post("second", w=1).status_code == 201
    w1_took = time.monotonic() - t0
    assert w1_took < delay                           # w=1 did not
    # for a while the master and the delayed secondary differ ...
    assert c.messages() == ["first", "second"]
    assert c.messages(slow.url) == ["first"]
    # ... and then they converge
    c.wait_converged([fast, slow])


def test_w2_returns_with_the_fast_secondary_only(cluster, http):
    master, (fast, slow) = start_cluster(cluster, secondary_flags={"s2": {"delay": 2.0}})
    c = Client(http, master.url)
    t0 = time.monotonic()
    r = c.post("x", w=2)
    assert r.status_code == 201 and r.json()["acks"] >= 2
    assert time.monotonic() - t0 < 2.0
    assert c.messages(fast.url) == ["x"]


def test_secondary_started_after_master_is_discovered_and_caught_up(cluster, http):
    s1 = cluster.start_secondary("s1")
    master = cluster.start_master(["s1"], discovery_interval=0.2)
    c = Client(http, master.url)
    for i in range(20):
        assert c.post(f"m{i}", w=1).status_code == 201
    # an unnamed secondary registering later is found and replicated to as well
    late = cluster.start_secondary("late")
    wait_until(lambda: "late" in c.health()["secondaries"], 10, what="discovery of 'late'")
    assert c.health()["quorum"]["size"] == 3
    c.wait_converged([s1, late])
    r = c.post("after", w=3)
    assert r.status_code == 201
    assert c.messages(late.url)[-1] == "after"


def test_concurrent_clients_end_with_identical_lists(two):
    c, master, secs = two
    clients, per_client = 8, 200

    def run(k):
        rng = random.Random(k)
        with requests.Session() as s:
            seqs = []
            for i in range(per_client):
                r = s.post(master.url + "/messages",
                           json={"message": f"c{k}-{i}", "w": rng.randint(1, 3)}, timeout=30)
                assert r.status_code == 201, r.text
                seqs.append(r.json()["seq"])
            return seqs

    with ThreadPoolExecutor(clients) as pool:
        all_seqs = [s for seqs in pool.map(run, range(clients)) for s in seqs]
    total = clients * per_client
    assert sorted(all_seqs) == list(range(1, total + 1))
    final = c.wait_converged(secs)
    assert len(final) == total and len(set(final)) == total
    for k in range(clients):   # each client's messages in its own order
        mine = [m for m in final if m.startswith(f"c{k}-")]
        assert mine == [f"c{k}-{i}" for i in range(per_client)]


def test_waiting_clients_do_not_block_others(cluster, http):
    master, secs = start_cluster(cluster, secondary_flags={"s2": {"delay": 5.0}})
    c = Client(http, master.url)
    check_waiting_posts_block_nobody(c, 50, release=lambda: None)   # the delay ends by itself


BAD = [
    ("not json", b"this is not json", "application/json", 400),
    ("wrong content type", b'{"message": "x", "w": 1}', "text/plain", 400),
    ("no content type", b'{"message": "x", "w": 1}', None, 400),
    ("array", b'["x"]', "application/json", 400),
    ("missing message", b'{"w": 1}', "application/json", 400),
    ("non-string message", b'{"message": 42, "w": 1}', "application/json", 400),
    ("null message", b'{"message": null}', "application/json", 400),
    ("float w", b'{"message": "x", "w": 1.5}', "application/json", 400),
    ("bool w", b'{"message": "x", "w": true}', "application/json", 400),
    ("string w", b'{"message": "x", "w": "2"}', "application/json", 400),
    ("w zero", b'{"message": "x", "w": 0}', "application/json", 400),
    ("w too big", b'{"message": "x", "w": 4}', "application/json", 400),
    ("huge w", b'{"message": "x", "w": 100000000000000000000000}', "application/json", 400),
    ("bad timeout", b'{"message": "x", "timeout": -1}', "application/json", 400),
    ("NaN timeout", b'{"message": "x", "timeout": NaN}', "application/json", 400),
    ("unknown field", b'{"message": "x", "color": "red"}', "application/json", 400),
    ("invalid utf-8", b'{"message": "\xff"}', "application/json", 400),
    ("deep nesting", b"[" * 50000 + b"]" * 50000, "application/json", 400),
    ("empty body", b"", "application/json", 400),
]


@pytest.mark.parametrize("what,body,ctype,status", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_json_error_and_appends_nothing(shared_two, http, what, body, ctype,
                                                       status):
    _, master, _ = shared_two
    c = Client(http, master.url)
    assert c.post(f"before {what}", w=1).status_code == 201
    before = c.messages()
    headers = {"Content-Type": ctype} if ctype else {}
    r = c.s.post(master.url + "/messages", data=body, headers=headers, timeout=10)
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("application/json")
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    assert c.messages() == before
    assert c.post(f"after {what}", w=3).status_code == 201      # every node is fine


def test_body_over_the_cap_is_413(cluster, http):
    cluster.start_secondary("s1")
    master = cluster.start_master(["s1"], max_body=1000)
    c = Client(http, master.url)
    r = c.post("x" * 2000, w=1)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = c.post("x" * 900, w=1)
    assert r.status_code == 201
    assert c.messages() == ["x" * 900]


def test_unknown_paths_and_methods_are_json_errors(shared_two, http):
    _, master, secs = shared_two
    c = Client(http, master.url)
    for url in (master.url, secs[0].url):
        r = c.s.get(url + "/nope", timeout=5)
        assert r.status_code == 404 and "error" in r.json()
        r = c.s.delete(url + "/messages", timeout=5)
        assert r.status_code == 405 and "error" in r.json()
    r = c.s.post(secs[0].url + "/faults", json={"error_rate": 7}, timeout=5)
    assert r.status_code == 400 and "error_rate" in r.json()["error"]


def test_unicode_round_trips_everywhere(two):
    c, master, secs = two
    texts = ["héllo", "✓ 你好 🎉", "", " ", "\u0000nul", "\U0010ffff", "rtl \u202e text",
             "emoji 👩‍👩‍👧‍👦", '"quotes" and \\backslashes\\', "new\nline"]
    for t in texts:
        assert c.post(t, w=3).status_code == 201
    assert c.messages() == texts
    for s in secs:
        assert c.messages(s.url) == texts


def test_python_proxy_path(two, cluster):
    c, master, secs = two
    ns = f"@127.0.0.1:{cluster.ns_port}"
    with Pyro5.api.Proxy("PYRONAME:replog.master" + ns) as m:
        m._pyroTimeout = 10
        r = m.append("from pyro", 2)
        assert r["seq"] == 1 and r["acks"] >= 2
        r = m.append_many(["b1", "b2", "b3"], 3)
        assert (r["first_seq"], r["seq"]) == (2, 4)
        with pytest.raises(ValueError, match="'w'"):
            m.append("bad", 9)
        with pytest.raises(ValueError, match="'message'"):
            m.append(17)
        assert m.messages() == ["from pyro", "b1", "b2", "b3"]
        assert m.health()["last_seq"] == 4
    with Pyro5.api.Proxy("PYRONAME:replog.secondary.s1" + ns) as s:
        s._pyroTimeout = 10
        wait_until(lambda: s.messages() == ["from pyro", "b1", "b2", "b3"], 10, what="s1")
    out = subprocess.run([sys.executable, "-m", "Pyro5.nsc", "-n", "127.0.0.1", "-p",
                          str(cluster.ns_port), "list"], capture_output=True, text=True,
                         timeout=30)
    for name in ("replog.master", "replog.secondary.s1", "replog.secondary.s2"):
        assert name in out.stdout


@pytest.mark.parametrize("module", ["nameserver", "nodes.master_node", "nodes.secondary_node",
                                    "nodes.launcher", "examples.echo.server",
                                    "examples.echo.client", "bench", "tests.chaos",
                                    "nodes.certs"])
def test_every_entry_point_has_help(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_environment_variables_are_flag_fallbacks():
    from nodes.master_node import parser
    import os
    old = dict(os.environ)
    try:
        os.environ.update(REPLOG_HTTP_PORT="6123", REPLOG_SECONDARIES="a,b",
                          REPLOG_SUSPECT_AFTER="2.5")
        args = parser().parse_args([])
        assert (args.http_port, args.secondaries, args.suspect_after) == (6123, ["a", "b"], 2.5)
        assert parser().parse_args(["--http-port", "7"]).http_port == 7   # a flag wins
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_launcher_starts_a_cluster_and_ctrl_c_stops_it(tmp_path):
    import signal
    import socket

    from nodes.launcher import free_port, http_json

    def three_free():
        for _ in range(50):
            base = free_port()
            try:
                for p in (base + 1, base + 2):
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", p))
                return base
            except OSError:
                continue
        raise RuntimeError("no three free consecutive ports")

    base, ns_port = three_free(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nodes.launcher", "--base-port", str(base),
                             "--ns-port", str(ns_port), "--data-root", str(tmp_path / "data")],
                            cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        url = f"http://127.0.0.1:{base}"
        # README: wait for the table of nodes, then use them (no other waiting step)
        wait_until(lambda: any(f"master       {url}" in line for line in lines), 30,
                   what="the launcher's table of nodes")
        assert http_json("POST", url + "/messages", {"message": "hi", "w": 3})[0] == 201
        for i in (1, 2):
            assert http_json("GET", f"http://127.0.0.1:{base + i}/messages")[1] == \
                {"messages": ["hi"]}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        reader.join(10)
        assert any("stopping every node" in line for line in lines), "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", base), timeout=1).close()


def test_paged_reads_on_every_node_and_bad_values(shared_two, http):
    cluster, master, secs = shared_two
    c = Client(http, master.url)
    base = len(c.messages())
    for i in range(25):
        assert c.post(f"page-{i}", w=3).status_code == 201
    for url in [master.url] + [s.url for s in secs]:
        r = http.get(url + f"/messages?from={base + 11}&limit=10", timeout=10).json()
        assert r == {"messages": [f"page-{i}" for i in range(10, 20)], "from": base + 11,
                     "next": base + 21}
        end = http.get(url + f"/messages?from={base + 21}", timeout=10).json()
        assert end["messages"] == [f"page-{i}" for i in range(20, 25)]
        assert end["next"] == base + 26
        past = http.get(url + f"/messages?from={base + 1000}", timeout=10).json()
        assert past == {"messages": [], "from": base + 1000, "next": base + 1000}
        for bad in ("from=0", "from=x", "limit=0", "limit=10001", "limit=1.5", "frm=3"):
            r = http.get(url + "/messages?" + bad, timeout=10)
            assert r.status_code == 400 and "error" in r.json(), bad
