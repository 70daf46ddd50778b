"""Followers for the `follow` part: N HTTP connections that follow a node's log, in one
process of their own (``python -m bench.followers ...``) so that their CPU is never charged
to the node. One thread, one selector, raw sockets: N held connections cost the process
nothing while they wait.

Modes:
  held    GET /messages?from=FIRST&wait=30 where FIRST lies past anything the run appends:
          the request is held until its wait ends, then sent again (the cost of holding);
  poll    long-polls at the tail: each answer's `next` is the next request's `from`;
  stream  GET /messages/stream?from=FIRST, read for good.

The first --timed connections parse every message as `<unix time>-...` and record the delay
from that time to its receipt (the others only count bytes and events). Runs until stdin
closes (or --seconds), then prints one JSON object: connections, events, delays.

Imports nothing from bench (it runs as a separate process).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

NEXT = re.compile(rb'"next": (\d+)')


class Conn:
    __slots__ = ("sock", "buf", "timed", "events", "first", "head_done", "requests")

    def __init__(self, sock: socket.socket, timed: bool, first: int) -> None:
        self.sock, self.buf, self.timed, self.first = sock, b"", timed, first
        self.events = self.requests = 0
        self.head_done = False


def request(mode: str, host: str, first: int) -> bytes:
    path = (f"/messages/stream?from={first}" if mode == "stream"
            else f"/messages?from={first}&limit=10000&wait=30")
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def run(args) -> dict:
    u = urlsplit(args.url)
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(args.count):
        s = socket.create_connection((u.hostname, u.port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request(args.mode, u.netloc, args.first))
        s.setblocking(False)
        c = Conn(s, i < args.timed, args.first)
        c.requests = 1
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    print(json.dumps({"ready": len(conns)}), flush=True)     # the driver waits for this line
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    deadline = time.monotonic() + args.seconds
    delays: list[float] = []
    received = closed = 0
    while not stop.is_set() and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            c: Conn = key.data
            try:
                data = c.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(c.sock)
                c.sock.close()
                closed += 1
                continue
            received += len(data)
            now = time.time()
            if args.mode == "stream":
                c.events += data.count(b"\nid: ") + data.startswith(b"id: ")
                if c.timed:
                    buf = c.buf + data
                    lines = buf.split(b"\n")
                    c.buf = lines.pop()
                    for line in lines:
                        if line.startswith(b"data: "):
                            text = json.loads(line[6:])
                            delays.append(now - float(text.split("-", 1)[0]))
                continue
            c.buf += data                         # held and poll: one answer per request
            if not c.buf.endswith(b"}\n"):
                continue
            body = c.buf[c.buf.find(b"\r\n\r\n") + 4:]
            c.buf = b""
            if args.mode == "poll":
                m = NEXT.search(body)
                if m:
                    page = json.loads(body)
                    c.events += len(page["messages"])
                    if c.timed:
                        delays.extend(now - float(t.split("-", 1)[0]) for t in page["messages"])
                    c.first = int(m.group(1))
            c.sock.sendall(request(args.mode, u.netloc, c.first))
            c.requests += 1
    for c in conns:
        try:
            c.sock.close()
        except OSError:
            pass
    delays.sort()

    def pct(q: float) -> float | None:
        return round(delays[min(len(delays) - 1, int(q / 100 * len(delays)))] * 1000, 3) \
            if delays else None

    return {"mode": args.mode, "connections": len(conns), "closed_by_server": closed,
            "events": sum(c.events for c in conns), "requests": sum(c.requests for c in conns),
            "bytes": received, "timed": len(delays),
            "delay_ms": {"p50": pct(50), "p99": pct(99), "max": pct(100)},
            "cpu_s": round(sum(os.times()[:2]), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.followers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the node's HTTP URL")
    p.add_argument("--mode", choices=("held", "poll", "stream"), default="stream")
    p.add_argument("--count", type=int, default=1000, help="connections (1000)")
    p.add_argument("--first", type=int, default=1, help="the seq to follow from")
    p.add_argument("--timed", type=int, default=0, help="connections that time every message")
    p.add_argument("--seconds", type=float, default=600.0, help="longest run (stdin closing ends it)")
    args = p.parse_args(argv)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
