"""replog_client against real processes: appends, batches, reads and health on a real
cluster; a retry after a lost answer (a TCP proxy that cuts the connection once the master
has answered) appends once; the next URL when the first does not answer; a secondary
sending the client to the master; follow() across a node's restart; and README's Python
client block, run as written on a cluster started as README says."""
from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import requests

from nodes.launcher import LocalCluster, ROOT, free_port
from replog_client import Appended, BadRequest, Client, Entry, Page
from .conftest import FAST
from tests import docblocks

from .test_launcher import launch, shown_matches  # noqa: F401  (launch: a fixture)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """name server, master, s1, s2 (short health timings)."""
    c = LocalCluster(tmp_path_factory.mktemp("client") / "logs")
    c.start_nameserver()
    try:
        secs = [c.start_secondary(n) for n in ("s1", "s2")]
        master = c.start_master(["s1", "s2"], **FAST)
        yield c, master, secs
    finally:
        c.close()


def log_of(url: str) -> list[str]:
    return requests.get(url + "/messages", timeout=10).json()["messages"]


def test_append_read_and_health_on_a_real_cluster(real):
    c, master, secs = real
    with Client([master.url, secs[0].url]) as client:
        one = client.append("py one", w=2)
        two = client.append("py two", w=3, timeout=10)
        assert one.first_seq == one.seq and one.w == 2 and one.acks >= 2
        assert two == Appended(one.seq + 1, one.seq + 1, 3, 3)
        page = client.read(from_seq=one.seq, limit=2)
        assert page == Page(["py one", "py two"], one.seq, one.seq + 2)
        assert page.entries()[1] == Entry(two.seq, "py two")
        h = client.health()
        assert h["role"] == "master" and h["last_seq"] >= two.seq
        with pytest.raises(BadRequest) as e:
            client.append("too many", w=9)
        assert e.value.message == "400: 'w' must be between 1 and the cluster size 3, got 9"
    assert log_of(master.url).count("py one") == 1


def test_append_many_on_a_real_cluster(real):
    c, master, secs = real
    with Client([master.url]) as client:
        done = client.append_many(["batch a", "batch b", "batch c"], w=3, key="py-batch-1")
        again = client.append_many(["batch a", "batch b", "batch c"], w=3, key="py-batch-1")
        assert done == again and done.seq == done.first_seq + 2 and done.acks == 3
        assert client.read(done.first_seq, 3).messages == ["batch a", "batch b", "batch c"]
        with pytest.raises(BadRequest) as e:
            client.append_many(["fine", 7])                    # type: ignore[list-item]
        assert e.value.status == 400 and e.value.index == 1
    assert log_of(master.url).count("batch b") == 1


class CuttingProxy:
    """TCP in front of a node: forwards every connection both ways, except that on the
    first `cut` connections it forwards the request and then, as the node's answer
    arrives, closes the client's side instead of passing it on: the node has done the
    work, the client never hears of it."""

    def __init__(self, upstream_port: int, cut: int = 1) -> None:
        self.upstream_port = upstream_port
        self.cut = cut
        self.lost: list[bytes] = []          # the first bytes of every answer cut off
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            cut, self.cut = self.cut > 0, self.cut - 1
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        try:
            while data := upstream.recv(65536):
                if cut:
                    self.lost.append(data)
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):    # shutdown wakes the pump blocked in recv
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass


def test_a_retry_after_a_lost_answer_appends_once(real):
    c, master, secs = real
    proxy = CuttingProxy(int(master.url.rsplit(":", 1)[1]), cut=1)
    try:
        with Client([proxy.url], timeout=30) as client:
            done = client.append("answer lost once", w=2)
        assert len(proxy.lost) == 1 and proxy.lost[0].startswith(b"HTTP/1.1 201")
    finally:
        proxy.close()
    log = log_of(master.url)
    assert log.count("answer lost once") == 1
    assert log[done.seq - 1] == "answer lost once"


def test_a_lost_answer_of_a_batch_appends_it_once(real):
    c, master, secs = real
    proxy = CuttingProxy(int(master.url.rsplit(":", 1)[1]), cut=1)
    try:
        with Client([proxy.url], timeout=30) as client:
            done = client.append_many(["lost batch 1", "lost batch 2"], w=2)
        assert len(proxy.lost) == 1 and proxy.lost[0].startswith(b"HTTP/1.1 201")
    finally:
        proxy.close()
    log = log_of(master.url)
    assert log.count("lost batch 1") == 1 and log[done.seq - 1] == "lost batch 2"


def test_the_next_url_when_the_first_does_not_answer(real):
    c, master, secs = real
    dead = f"http://127.0.0.1:{free_port()}"
    with Client([dead, master.url]) as client:
        done = client.append("past a dead node", w=1)
        assert client.url == master.url
        assert client.read(done.seq, 1).messages == ["past a dead node"]


def test_a_secondary_sends_the_client_to_the_master(real):
    """Today a secondary answers a write with 405 (the client moves on to the next URL);
    after the failover change, with 307 to the master (the client follows it)."""
    c, master, secs = real
    with Client([secs[0].url, master.url]) as client:
        done = client.append("via a secondary first", w=2)
        assert client.url == master.url
    assert log_of(master.url)[done.seq - 1] == "via a secondary first"
    assert log_of(master.url).count("via a secondary first") == 1


def test_follow_resumes_across_a_node_restart_without_gap_or_repeat(tmp_path):
    c = LocalCluster(tmp_path / "logs")
    c.start_nameserver()
    try:
        secs = [c.start_secondary(n, data_dir=str(tmp_path / n)) for n in ("s1", "s2")]
        master = c.start_master(["s1", "s2"], **FAST)
        with Client([secs[0].url], stream_timeout=10) as reader:
            with Client([master.url]) as writer:
                writer.append_many([f"f{i}" for i in range(1, 6)], w=3)
                stream = reader.follow(from_seq=1)
                got = list(itertools.islice(stream, 5))
                secs[0].restart()                      # the node we follow goes away
                writer.append_many([f"f{i}" for i in range(6, 11)], w=3)
                got += list(itertools.islice(stream, 5))
                stream.close()
        assert got == [Entry(i, f"f{i}") for i in range(1, 11)]
    finally:
        c.close()


# -- README's Python client block, as written ----------------------------------------------
_RUN_LINES = r"""
import ast, json, sys
shown = []     # [line number, code, the result its comment shows, repr of the real result]
for number, line in enumerate(sys.stdin.read().splitlines(), 1):
    code, _, comment = line.partition("  # ")
    code, comment = code.strip(), comment.strip()
    if not code:
        continue
    try:
        ast.parse(code, mode="eval")
    except SyntaxError:                  # a statement: import, assignment
        exec(code)
        continue
    result = eval(code)
    if comment:
        shown.append([number, code, comment, repr(result)])
print(json.dumps(shown))
"""


def test_readme_python_client_block_works_as_written(launch):  # noqa: F811
    """Every line of the block on a fresh cluster started as README says; a line's comment
    is the result it returns ('...' for any text). Only the ports differ."""
    launched = launch("--fresh").wait_started()
    block = docblocks.block("python-client").text
    for i in range(3):
        block = block.replace(f"localhost:{5000 + i}", f"localhost:{launched.base + i}")
    lines = block.splitlines()
    assert "from replog_client import Client" in block and block.count("  # ") >= 5
    out = subprocess.run([sys.executable, "-c", _RUN_LINES],
                         input="\n".join(lines),
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert len(shown) >= 4
    failures = [f"line {n}: {code} gave {got}, README shows {literal}"
                for n, code, literal, got in shown if not shown_matches(got, literal)]
    assert not failures, failures
