"""nodes.edge.read_headers against gevent's own pywsgi.headers_factory (http.client's limits,
then the stdlib's email parser): the same names, values, order and status for plain
headers (its fast path) and for everything unusual (handed to the email parser)."""
import io
import random

import pytest
from gevent import pywsgi

from nodes import edge

CASES = [
    b"\r\n",
    b"Host: x\r\n\r\n",
    b"Host: x\n\n",
    b"Host: 127.0.0.1:8000\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n",
    b"Authorization: Bearer rlg_abc-DEF_123\r\nConnection: keep-alive\r\n\r\n",
    b"X-Empty:\r\nX-Spaces:   \t v a l  \r\n\r\n",           # empty value, inner and end blanks
    b"Host: x\r\nHost: y\r\n\r\n",                            # repeated
    b"x-lower: 1\r\nX-LOWER: 2\r\n\r\n",
    b"Name:no-space\r\n\r\n",
    b"Weird!#$%&'*+.^_`|~: ok\r\n\r\n",                       # every token character
    b"Latin: caf\xe9 \xff\r\n\r\n",                          # bytes over 127 in a value
    b"Folded: a\r\n  b\r\n\r\n",                              # continuation line
    b"\tFirst: is a continuation\r\nHost: x\r\n\r\n",
    b"Name : space before the colon\r\nHost: x\r\n\r\n",      # ends the headers there
    b"No colon here\r\nHost: x\r\n\r\n",
    b": no name\r\nHost: x\r\n\r\n",
    b"From someone\r\nHost: x\r\n\r\n",                       # a unix-from line
    b"Host: x\r\nFrom: y\r\n\r\n",
    b"Bare: a\rb\r\nHost: x\r\n\r\n",                         # a lone CR inside a line
    b"Host: x\r\n",                                           # input ends before the blank line
    b"",
    b"Long: " + b"y" * 70_000 + b"\r\n\r\n",                  # over http.client's line limit
    b"Tab:\tvalue\t\r\n\r\n",
    b"Vt: a\x0bb\x0cc\x1cd\x85e\r\n\r\n",                    # not line breaks for either
    b"Nul: a\x00b\r\n\r\n",
]


def parse_both(raw: bytes):
    def read(parse):
        try:
            m = parse(io.BytesIO(raw))
        except Exception as e:        # the same error, if any
            return ("raised", type(e).__name__, str(e))
        return (m.status, list(m._headers), m.get("content-length"), m.get("host"),
                [h for h in m.headers])
    return read(edge.read_headers), read(pywsgi.headers_factory)


@pytest.mark.parametrize("raw", CASES, ids=range(len(CASES)))
def test_same_headers_as_gevents_parser(raw):
    mine, theirs = parse_both(raw)
    assert mine == theirs


def test_more_than_100_headers_refused_alike():
    raw = b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n"
    mine, theirs = parse_both(raw)
    assert mine == theirs and mine[0] == "raised"


def test_random_header_blocks_alike():
    rng = random.Random(21)
    alphabet = [bytes([c]) for c in range(256) if c not in (10,)] + [b"\r\n", b":", b" ", b"\t"]
    names = [b"Host", b"Content-Length", b"X-A", b"From", b"a", b"Na me", b"", b"\xe9"]
    for _ in range(3000):
        lines = []
        for _ in range(rng.randrange(0, 6)):
            kind = rng.random()
            if kind < 0.6:
                value = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
                lines.append(rng.choice(names) + rng.choice([b":", b": ", b" :", b":\t"])
                             + value.replace(b"\r\n", b"") + rng.choice([b"\r\n", b"\n"]))
            else:
                junk = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 10)))
                lines.append(junk.replace(b"\n", b"") + b"\r\n")
        raw = b"".join(lines) + rng.choice([b"\r\n", b"\n", b""])
        mine, theirs = parse_both(raw)
        assert mine == theirs, raw
