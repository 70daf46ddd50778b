"""Following the log over HTTP: GET /messages?from=&wait= (a held long-poll) and
GET /messages/stream (Server-Sent Events), on the master and on a secondary."""
import http.client
import json
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests

from nodes.launcher import wait_until
from .conftest import Client, start_cluster


def followers(url):
    """replog_http_followers of a node: its held requests and streams parked now."""
    text = requests.get(url + "/metrics", timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith("replog_http_followers"))
    return float(line.split()[-1])


class Stream:
    """GET /messages/stream read event by event (http.client decodes the chunks)."""

    def __init__(self, url, query="", headers=None, timeout=30):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.conn.request("GET", "/messages/stream" + query, headers=headers or {})
        self.resp = self.conn.getresponse()

    def block(self):
        """The next block of lines up to a blank line; None at the end of the stream."""
        lines = []
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if not line and lines:
                return lines
            if line:
                lines.append(line)

    def event(self):
        """The next (seq, message), skipping comments; None at the end of the stream."""
        while True:
            lines = self.block()
            if lines is None:
                return None
            fields = dict(line.split(": ", 1) for line in lines if not line.startswith(":"))
            if fields:
                return int(fields["id"]), json.loads(fields["data"])

    def close(self):
        self.conn.close()


@pytest.fixture
def two(cluster, http):
    master, secs = start_cluster(cluster)
    return Client(http, master.url), master, secs


def test_a_long_poll_answers_as_soon_as_an_append_lands_on_master_and_secondary(two):
    c, master, (s1, _) = two
    assert c.post("m1", w=3).status_code == 201
    for node in (master, s1):
        start = len(c.messages(node.url)) + 1
        got = []
        t = threading.Thread(target=lambda: got.append(requests.get(
            node.url + f"/messages?from={start}&wait=30", timeout=60)))
        t.start()
        wait_until(lambda: followers(node.url) == 1, 10, what=f"the long-poll held on {node.name}")
        assert c.post(f"for {node.name}", w=3).status_code == 201
        t.join(25)    # well inside its wait of 30 s: it was answered by the append
        assert not t.is_alive() and got[0].status_code == 200
        assert got[0].json() == {"messages": [f"for {node.name}"], "from": start,
                                 "next": start + 1}
        assert got[0].text.endswith("\n")


def test_a_long_poll_answers_an_empty_page_after_wait(shared_two, http):
    _, master, secs = shared_two
    for url in (master.url, secs[0].url):
        first = len(Client(http, master.url).messages(url)) + 1_000
        r = http.get(url + f"/messages?from={first}&wait=0.2", timeout=10)
        assert r.status_code == 200
        assert r.json() == {"messages": [], "from": first, "next": first}
        assert followers(url) == 0           # the waiter was forgotten


def test_a_long_poll_with_entries_there_answers_at_once(shared_two, http):
    _, master, secs = shared_two
    c = Client(http, master.url)
    assert c.post("there", w=3).status_code == 201
    n = len(c.messages())
    for url in (master.url, secs[1].url):
        r = http.get(url + f"/messages?from={n}&limit=5&wait=30", timeout=10)
        assert r.json() == {"messages": ["there"], "from": n, "next": n + 1}


@pytest.mark.parametrize("query", ["wait=0", "wait=-1", "wait=31", "wait=x", "wait=nan",
                                   "wait=inf", "wait=", "from=0&wait=1", "limit=0&wait=1",
                                   "wait=1&color=red"])
def test_bad_long_polls_are_400_json(shared_two, http, query):
    _, master, secs = shared_two
    for url in (master.url, secs[0].url):
        r = http.get(url + "/messages?" + query, timeout=10)
        assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json")
        assert r.json()["error"] and r.text.endswith("\n"), query


@pytest.mark.parametrize("query,headers", [("?from=0", {}), ("?from=x", {}), ("?limit=3", {}),
                                           ("", {"Last-Event-ID": "x"}),
                                           ("", {"Last-Event-ID": "-2"})])
def test_bad_streams_are_400_json(shared_two, http, query, headers):
    _, master, secs = shared_two
    for url in (master.url, secs[0].url):
        r = http.get(url + "/messages/stream" + query, headers=headers, timeout=10)
        assert r.status_code == 400 and r.json()["error"], (query, headers)


def test_a_stream_delivers_every_message_in_order_and_resumes_without_gap_or_duplicate(two):
    c, master, (s1, s2) = two
    for i in range(1, 6):
        assert c.post(f"m{i}", w=3).status_code == 201
    for node in (master, s1):
        stream = Stream(node.url, "?from=2")
        assert stream.resp.status == 200
        assert stream.resp.getheader("Content-Type").startswith("text/event-stream")
        got = [stream.event() for _ in range(4)]              # the backlog, 2..5
        stream.close()
        assert got == [(i, f"m{i}") for i in range(2, 6)]
    # a stream follows appends as they land; a reconnect resumes after Last-Event-ID
    stream = Stream(s2.url, "?from=1")
    seen = [stream.event() for _ in range(5)]
    for i in range(6, 31):
        assert c.post(f"m{i}", w=3 if i % 2 else 1).status_code == 201
        if i == 12:
            seen += [stream.event() for _ in range(7)]     # up to m12, then drop the connection
            stream.close()
            # from= is ignored: Last-Event-ID wins
            stream = Stream(s2.url, "?from=1", headers={"Last-Event-ID": str(seen[-1][0])})
    while len(seen) < 30:
        seen.append(stream.event())
    stream.close()
    assert seen == [(i, f"m{i}") for i in range(1, 31)]


def test_a_stream_of_unicode_and_newlines_round_trips(shared_two, http):
    _, master, secs = shared_two
    c = Client(http, master.url)
    texts = ["new\nline", "cr\rhere", "✓ 你好 🎉", "", 'quo"te', "\u2028sep", "data: x\n\nid: 9"]
    first = len(c.messages()) + 1
    assert c.s.post(master.url + "/messages", json={"messages": texts, "w": 3},
                    timeout=10).status_code == 201
    for url in (master.url, secs[0].url):
        stream = Stream(url, f"?from={first}")
        got = [stream.event() for _ in texts]
        stream.close()
        assert got == list(zip(range(first, first + len(texts)), texts))


def test_a_stream_ends_cleanly_when_its_node_stops(cluster, http):
    master, (s1, s2) = start_cluster(cluster)
    c = Client(http, master.url)
    assert c.post("only", w=3).status_code == 201
    streams = [Stream(s1.url), Stream(master.url)]
    for stream in streams:
        assert stream.event() == (1, "only")
    wait_until(lambda: followers(s1.url) == 1 and followers(master.url) == 1, 10,
               what="both streams parked")
    for node, stream in zip((s1, master), streams):
        node.stop()
        assert stream.event() is None     # the last chunk came: no IncompleteRead, no reset


def test_200_held_long_polls_block_no_post_and_all_get_the_message(cluster, http):
    master, _ = start_cluster(cluster)
    c = Client(http, master.url)
    assert c.post("zero", w=3).status_code == 201
    parts = urlsplit(master.url)
    request = (f"GET /messages?from=2&wait=30 HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "Connection: close\r\n\r\n").encode()
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection((parts.hostname, parts.port), timeout=30)
            s.sendall(request)
            socks.append(s)
        wait_until(lambda: followers(master.url) == 200, 30, what="200 held long-polls")
        r = c.post("one", w=3)
        assert r.status_code == 201 and r.json()["seq"] == 2
        assert c.messages() == ["zero", "one"]
        for s in socks:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200")
            assert json.loads(body) == {"messages": ["one"], "from": 2, "next": 3}
    finally:
        for s in socks:
            s.close()


def test_every_json_answer_ends_with_a_newline(cluster, http):
    master, (s1, _) = start_cluster(cluster, master_flags={"allow_faults": True,
                                                           "max_body": 2000},
                                    secondary_flags={"s1": {"allow_faults": True}})
    m, s = master.url, s1.url
    post = lambda url, body, **kw: http.post(url, json=body, timeout=10, **kw)  # noqa: E731
    answers = [
        post(m + "/messages", {"message": "x", "w": 3}),
        post(m + "/messages", {"messages": ["a", "b"], "w": 3}),
        post(m + "/messages", {"message": "x", "w": 9}),
        post(m + "/messages", {"messages": ["a", 1]}),
        post(m + "/messages", {"message": "x" * 3000}),
        http.post(m + "/messages", data=b"{", headers={"Content-Type": "application/json"}),
        post(s + "/messages", {"message": "x"}),
        post(s + "/faults", {"delay": 0}),
        post(s + "/faults", {"delay": -1}),
        post(m + "/cluster/faults", {"secondary": "s1", "error_rate": 0}),
        post(m + "/cluster/faults", {"secondary": "nobody"}),
    ]
    for url in (m, s):
        answers += [http.get(url + path, timeout=10) for path in (
            "/messages", "/messages?from=2&limit=1", "/messages?from=9&wait=0.1", "/health",
            "/nope", "/messages?from=0", "/messages/stream?from=0")]
        answers.append(http.delete(url + "/messages", timeout=10))
    answers.append(http.get(m + "/cluster", timeout=10))
    for r in answers:
        assert r.headers["Content-Type"].startswith("application/json"), r.url
        json.loads(r.text)
        assert r.text.endswith("\n"), (r.request.method, r.url, r.status_code, r.text[-80:])
