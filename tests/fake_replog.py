"""A small fake replog node on a loopback port, for the client's tests: the HTTP API as
specified (single and batch POST with idempotency keys, paged and long-polled reads, the SSE
stream with Last-Event-ID, /health), plus scripted misbehaviour: answers queued ahead of the
real ones (503 with Retry-After, 307 to the master, ...), a secondary's redirect, and a
stream cut after some events. Standard library only, one thread per connection."""
from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeReplog:
    """One fake node. ``log`` is shared when several fakes must show one log (pass the same
    ``FakeLog``); ``master_url`` makes this one a secondary that redirects writes there."""

    def __init__(self, log: "FakeLog | None" = None, master_url: str | None = None,
                 redirect_status: int = 307) -> None:
        self.log = log or FakeLog()
        self.master_url = master_url
        self.redirect_status = redirect_status
        self.scripted: list[tuple[int, dict[str, str], Any]] = []   # answers to give first
        self.requests: list[dict[str, Any]] = []
        self.cut_stream_after: list[int] = []   # per stream connection: events, then cut
        self.drop_answers = 0                    # POSTs to append, then hang up on
        self.keepalive = 0.05
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()

    def script(self, status: int, body: Any = None, **headers: str) -> None:
        """Answer the next request (after those scripted before) with this, whatever it is."""
        self.scripted.append((status, {k.replace("_", "-"): v for k, v in headers.items()},
                              body))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None
                        ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: Any) -> tuple[str, dict[str, list[str]]]:
                parsed = urllib.parse.urlsplit(self.path)
                fake.requests.append({"method": self.command, "path": parsed.path,
                                      "query": parsed.query, "body": body,
                                      "headers": dict(self.headers)})
                return parsed.path, urllib.parse.parse_qs(parsed.query)

            def _scripted(self) -> bool:
                if not fake.scripted:
                    return False
                status, headers, body = fake.scripted.pop(0)
                self._answer(status, body, headers)
                return True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                path, _ = self._record(body)
                if self._scripted():
                    return
                if path != "/messages":
                    return self._answer(404, {"error": f"no {path}"})
                if fake.master_url:
                    if fake.redirect_status == 307:
                        return self._answer(307, {"error": "secondary: writes go to the "
                                                  "master", "master": fake.master_url},
                                            {"Location": fake.master_url + "/messages"})
                    return self._answer(405, {"error": "secondary and read-only"})
                status, answer = fake.log.post(body)
                if fake.drop_answers:            # appended, but the answer is lost
                    fake.drop_answers -= 1
                    self.close_connection = True
                    return
                self._answer(status, answer)

            def do_GET(self) -> None:
                path, query = self._record(None)
                if self._scripted():
                    return
                if path == "/health":
                    return self._answer(200, {"role": "secondary" if fake.master_url
                                              else "master", "last_seq": len(fake.log.entries),
                                              "read_only": False})
                if path == "/messages":
                    first = int(query.get("from", ["1"])[0])
                    limit = int(query.get("limit", ["1000"])[0])
                    wait = float(query["wait"][0]) if "wait" in query else 0.0
                    page = fake.log.page(first, limit, wait)
                    return self._answer(200, {"messages": page, "from": first,
                                              "next": first + len(page)})
                if path == "/messages/stream":
                    return self._stream(query)
                self._answer(404, {"error": f"no {path}"})

            def _stream(self, query: dict[str, list[str]]) -> None:
                last_id = self.headers.get("Last-Event-ID")
                after = int(last_id) if last_id else int(query.get("from", ["1"])[0]) - 1
                cut = fake.cut_stream_after.pop(0) if fake.cut_stream_after else None
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent = 0
                try:
                    while True:
                        new = fake.log.page(after + 1, 1000, fake.keepalive)
                        if not new:
                            self._chunk(b": keep-alive\n\n")
                            continue
                        for message in new:
                            after += 1
                            event = f"id: {after}\ndata: {json.dumps(message)}\n\n".encode()
                            if cut is not None and sent == cut:
                                self._chunk(event[:len(event) // 2])   # half an event, then
                                self.wfile.flush()                     # the connection dies
                                self.close_connection = True
                                return
                            self._chunk(event)
                            sent += 1
                except OSError:
                    self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler


class FakeLog:
    """The log behind one or more fakes: append with idempotency keys, pages, long poll."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.keys: dict[str, tuple[int, int]] = {}
        self.changed = threading.Condition()

    def append(self, *messages: str) -> None:
        with self.changed:
            self.entries.extend(messages)
            self.changed.notify_all()

    def post(self, body: Any) -> tuple[int, dict[str, Any]]:
        batch = "messages" in body
        messages = body["messages"] if batch else [body.get("message")]
        for i, m in enumerate(messages):
            if not isinstance(m, str):
                return 400, {"error": "every message must be a string", "index": i}
        with self.changed:
            key = body.get("id")
            if key in self.keys:
                first, seq = self.keys[key]
            else:
                first = len(self.entries) + 1
                self.entries.extend(messages)
                seq = len(self.entries)
                if key is not None:
                    self.keys[key] = (first, seq)
                self.changed.notify_all()
        w = body.get("w", 3)
        answer = {"seq": seq, "acks": w, "w": w}
        return 201, ({"first_seq": first, **answer} if batch else answer)

    def page(self, first: int, limit: int, wait: float = 0.0) -> list[str]:
        with self.changed:
            if wait and len(self.entries) < first:
                self.changed.wait_for(lambda: len(self.entries) >= first, wait)
            return self.entries[first - 1:first - 1 + limit]
