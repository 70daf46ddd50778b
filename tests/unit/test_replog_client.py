"""replog_client's pure parts (backoff, Retry-After, the SSE parser) and the Client against
a fake node on a loopback port (tests/fake_replog.py): retries with one key, redirects,
503s, the next URL, typed errors, long poll, and follow() resuming a cut stream."""
from __future__ import annotations

import itertools
import socket
import threading

import pytest

from replog_client import (Appended, BadRequest, Client, Entry, Page, ReadOnly, ReplogError,
                           Unavailable, WriteConcernTimeout)
from replog_client.retry import backoff, retry_after
from replog_client.sse import Event, Parser
from tests.fake_replog import FakeLog, FakeReplog


# -- pure pieces ----------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap_with_jitter_between_half_and_whole():
    low = [backoff(n, 0.1, 2.0, lambda: 0.0) for n in range(1, 8)]
    high = [backoff(n, 0.1, 2.0, lambda: 0.999999) for n in range(1, 8)]
    assert low == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert high == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0], rel=1e-5)
    with pytest.raises(ValueError):
        backoff(0, 0.1, 2.0, lambda: 0.5)


@pytest.mark.parametrize("header, expected", [
    (None, None), ("2", 2.0), (" 0.5 ", 0.5), ("120", 10.0), ("-1", None), ("nan", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", None)])
def test_retry_after_is_seconds_capped_or_none(header, expected):
    assert retry_after(header, 10.0) == expected


STREAM = (b": keep-alive\n\nid: 1\ndata: \"a\"\n\nid: 2\r\ndata: \"two\\nlines\"\r\n\r\n"
          b"event: note\ndata: x\ndata: y\n\n: another comment\ndata: \"no id\"\n\n"
          b"id: 5\n\n")


def test_sse_parser_gives_the_same_events_however_the_stream_is_cut():
    whole = Parser().feed(STREAM)
    assert whole == [Event("1", '"a"'), Event("2", '"two\\nlines"'),
                     Event("2", "x\ny", "note"), Event("2", '"no id"')]
    for cut in range(len(STREAM) + 1):
        parser = Parser()
        assert parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:]) == whole, cut
    byte_by_byte = Parser()
    assert [e for i in range(len(STREAM)) for e in byte_by_byte.feed(STREAM[i:i + 1])] == whole


def test_sse_parser_takes_cr_alone_as_a_line_end():
    # a CR at the very end may be the first half of a CRLF: it ends its line once more comes
    parser = Parser()
    assert parser.feed(b"id: 9\rdata: \"m\"\r\r") == []
    assert parser.feed(b": next") == [Event("9", '"m"')]


# -- the client against a fake node --------------------------------------------------------
@pytest.fixture
def fake():
    node = FakeReplog()
    yield node
    node.close()


class Sleeps(list):
    """A sleep that only records: the client's waits, without waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_of(*urls: str, **kw) -> Client:
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("timeout", 5.0)
    return Client(list(urls), **kw)


def posts(node: FakeReplog) -> list[dict]:
    return [r for r in node.requests if r["method"] == "POST"]


def test_append_append_many_read_and_health(fake):
    with client_of(fake.url) as c:
        assert c.append("one", w=2) == Appended(1, 1, 2, 2)
        assert c.append_many(["two", "three"], w=1, timeout=3) == Appended(2, 3, 1, 1)
        assert c.read(from_seq=2, limit=5) == Page(["two", "three"], 2, 4)
        assert c.read().entries() == [Entry(1, "one"), Entry(2, "two"), Entry(3, "three")]
        assert c.health()["last_seq"] == 3
    bodies = [p["body"] for p in posts(fake)]
    assert bodies[1]["messages"] == ["two", "three"] and bodies[1]["timeout"] == 3
    assert all(isinstance(b["id"], str) and b["id"] for b in bodies)   # a key, made up
    assert bodies[0]["id"] != bodies[1]["id"]


def test_a_lost_answer_is_retried_with_the_same_key_and_appends_once(fake):
    fake.drop_answers = 2
    with client_of(fake.url) as c:
        assert c.append("once") == Appended(1, 1, 3, 3)
        fake.drop_answers = 1
        assert c.append_many(["b1", "b2"], key="batch-1") == Appended(2, 3, 3, 3)
    assert fake.log.entries == ["once", "b1", "b2"]
    keys = [p["body"]["id"] for p in posts(fake)]
    assert len(keys) == 5 and len(set(keys[:3])) == 1 and keys[3:] == ["batch-1"] * 2


def test_a_secondarys_307_is_followed_to_the_master_and_remembered(fake):
    secondary = FakeReplog(master_url=fake.url)
    try:
        with client_of(secondary.url) as c:
            assert c.append("via redirect", w=1).seq == 1
            assert c.url == fake.url and fake.url in c.urls
            c.append("direct")
        assert len(posts(secondary)) == 1 and len(posts(fake)) == 2
        assert posts(secondary)[0]["body"]["id"] == posts(fake)[0]["body"]["id"]
    finally:
        secondary.close()


def test_a_405_from_a_secondary_that_names_no_master_moves_to_the_next_url(fake):
    old = FakeReplog(master_url=fake.url, redirect_status=405)
    try:
        with client_of(old.url, fake.url) as c:
            assert c.append("found").seq == 1
            assert c.url == fake.url
        with client_of(old.url) as alone, pytest.raises(BadRequest) as e:
            alone.append("nowhere to go")
        assert e.value.status == 405 and "read-only" in e.value.message
    finally:
        old.close()


def test_503_with_retry_after_is_waited_out_with_one_key(fake):
    fake.script(503, {"error": "electing a master"}, Retry_After="1")
    fake.script(503, {"error": "electing a master"}, Retry_After="30")
    sleeps = Sleeps()
    with client_of(fake.url, sleep=sleeps, retry_after_cap=5.0) as c:
        assert c.append("after the election").seq == 1
    assert sleeps == [1.0, 5.0]
    assert len({p["body"]["id"] for p in posts(fake)}) == 1 and len(posts(fake)) == 3


def test_503_after_the_retries_is_read_only_with_the_servers_message(fake):
    for _ in range(3):
        fake.script(503, {"error": "read-only: no quorum: 1 of 3 nodes reachable, 2 needed"})
    sleeps = Sleeps()
    with client_of(fake.url, retries=2, sleep=sleeps, rand=lambda: 0.0) as c:
        with pytest.raises(ReadOnly) as e:
            c.append("refused")
    assert e.value.status == 503 and e.value.message == \
        "503: read-only: no quorum: 1 of 3 nodes reachable, 2 needed"
    assert sleeps == pytest.approx([0.05, 0.1])     # backoff without Retry-After
    assert fake.log.entries == []


def test_504_carries_seq_and_acks_and_4xx_are_bad_requests(fake):
    fake.script(504, {"error": "write concern w=3 not met in 1 s (acks=2)", "seq": 7,
                      "acks": 2, "w": 3})
    with client_of(fake.url) as c:
        with pytest.raises(WriteConcernTimeout) as e:
            c.append("slow", w=3, timeout=1)
        assert (e.value.seq, e.value.acks, e.value.w) == (7, 2, 3)
        assert "not met in 1 s" in e.value.message
        with pytest.raises(BadRequest) as bad:
            c.append_many(["fine", 5, "x"])                    # type: ignore[list-item]
        assert bad.value.status == 400 and bad.value.index == 1
        fake.script(413, {"error": "body of 2097152 bytes is over the limit of 1048576"})
        with pytest.raises(BadRequest, match="413: body of"):
            c.append("big")
    assert len(posts(fake)) == 3                               # none of them retried


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_node_that_does_not_answer_is_passed_over_for_the_next_url(fake):
    silent = socket.socket()                  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    dead = f"http://127.0.0.1:{closed_port()}"
    try:
        sleeps = Sleeps()
        with client_of(dead, f"http://127.0.0.1:{silent.getsockname()[1]}", fake.url,
                       timeout=0.2, sleep=sleeps) as c:
            assert c.append("third time lucky").seq == 1
            assert c.url == fake.url and sleeps == []     # no backoff: another URL answered
            assert c.read().messages == ["third time lucky"]
        assert len(posts(fake)) == 1
    finally:
        silent.close()


def test_a_redirect_to_a_dead_master_backs_off_instead_of_going_round_for_ever():
    secondary = FakeReplog(master_url=f"http://127.0.0.1:{closed_port()}")
    try:
        sleeps = Sleeps()
        with client_of(secondary.url, retries=2, sleep=sleeps) as c:
            with pytest.raises(Unavailable, match="cannot reach"):
                c.append("master gone")
        assert len(sleeps) == 2 and len(posts(secondary)) <= 2 * 3   # at most 2 a round
    finally:
        secondary.close()


def test_a_405_is_final_only_when_no_other_node_might_be_the_master():
    old = FakeReplog(master_url="http://unused", redirect_status=405)
    try:
        sleeps = Sleeps()
        dead = f"http://127.0.0.1:{closed_port()}"
        with client_of(dead, old.url, retries=1, sleep=sleeps) as c:
            with pytest.raises(Unavailable):     # the dead one may be the master: retried
                c.append("x")
        assert len(sleeps) == 1
    finally:
        old.close()


def test_no_node_answering_is_unavailable_after_the_retries():
    sleeps = Sleeps()
    urls = [f"http://127.0.0.1:{closed_port()}" for _ in range(2)]
    with client_of(*urls, retries=3, sleep=sleeps) as c:
        with pytest.raises(Unavailable) as e:
            c.health()
    assert len(sleeps) == 3 and "cannot reach http://127.0.0.1:" in e.value.message


def test_read_long_polls_until_a_message_arrives_or_answers_an_empty_page(fake):
    fake.log.append("m1")
    got: list[Page] = []
    with client_of(fake.url) as c:
        reader = threading.Thread(target=lambda: got.append(c.read(2, wait=30)))
        reader.start()
        wait_for(lambda: any(r["query"].endswith("wait=30") for r in fake.requests))
        fake.log.append("m2")
        reader.join(30)
        assert got == [Page(["m2"], 2, 3)]
        assert c.read(3, wait=0.01) == Page([], 3, 3)


def wait_for(predicate, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition not met")


def test_follow_resumes_a_cut_stream_with_last_event_id_no_gap_no_repeat(fake):
    fake.log.append(*[f"m{i}" for i in range(1, 6)])
    fake.cut_stream_after = [3, 2]            # cut in the middle of the 4th, then the 6th
    with client_of(fake.url) as c:
        stream = c.follow(from_seq=1, reconnects=5)
        got = list(itertools.islice(stream, 5))
        fake.log.append(*[f"m{i}" for i in range(6, 9)])
        got += list(itertools.islice(stream, 3))
        stream.close()
    assert got == [Entry(i, f"m{i}") for i in range(1, 9)]
    streams = [r for r in fake.requests if r["path"] == "/messages/stream"]
    assert [s["headers"].get("Last-Event-ID") for s in streams[:3]] == [None, "3", "5"]


def test_follow_moves_to_the_next_node_and_resumes_there():
    log = FakeLog()
    log.append("a", "b", "c", "d")
    first, second = FakeReplog(log), FakeReplog(log)
    first.cut_stream_after = [2]
    try:
        with client_of(first.url, second.url) as c:
            stream = c.follow(from_seq=2, reconnects=3)
            got = list(itertools.islice(stream, 3))
            stream.close()
        assert got == [Entry(2, "b"), Entry(3, "c"), Entry(4, "d")]
        resumed = [r for r in second.requests if r["path"] == "/messages/stream"]
        assert resumed[0]["headers"]["Last-Event-ID"] == "3"
    finally:
        first.close()
        second.close()


def test_follow_on_a_node_without_a_stream_is_a_bad_request_and_no_node_is_unavailable(fake):
    fake.script(404, {"error": "Not found: '/messages/stream'"})
    with client_of(fake.url) as c, pytest.raises(BadRequest, match="404"):
        next(c.follow())
    with client_of(f"http://127.0.0.1:{closed_port()}") as c, pytest.raises(Unavailable):
        next(c.follow(reconnects=2))


def test_errors_are_replog_errors_and_bad_urls_are_refused():
    assert issubclass(Unavailable, ReplogError) and issubclass(BadRequest, ReplogError)
    with pytest.raises(ValueError):
        Client(["ftp://example.org"])
    with pytest.raises(ValueError):
        Client([])
    assert Client("127.0.0.1:5000").urls == ["http://127.0.0.1:5000"]
