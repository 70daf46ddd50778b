"""The CLI's HTTP client: stdlib only, a timeout on every call, the server's JSON error
message kept for the user. One Http object keeps one connection alive: it belongs to one
thread (the concurrent `append -` gives every worker its own)."""
from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any


class ClientError(Exception):
    """Anything the user should read as one line: an HTTP error's message, or no answer."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


@dataclass
class Reply:
    status: int
    body: Any
    seconds: float


def error_text(status: int, body: Any) -> str:
    """The server's own words when it sent {"error": ...}; else the status and the body."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f"{status}: {body['error']}"
    return f"{status}: {json.dumps(body)[:200]}"


class Http:
    """Keep-alive JSON over HTTP to one base URL (http://host:port)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(base_url if "://" in base_url else "http://" + base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ClientError(f"not an HTTP URL: {base_url!r}")
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self.timeout = timeout
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Reply:
        """(status, decoded JSON, seconds). ClientError when the node does not answer."""
        timeout = self.timeout if timeout is None else timeout
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):   # a kept-alive connection the server closed: one fresh try
            t0 = time.perf_counter()
            try:
                conn = self._connection(timeout)
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                seconds = time.perf_counter() - t0
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt == 2 or method != "GET":
                    raise ClientError(f"{self.base} closed the connection: {e}") from None
            except socket.timeout:
                self.close()
                raise ClientError(f"{self.base} did not answer {method} {path} within "
                                  f"{timeout:g} s") from None
            except OSError as e:
                self.close()
                raise ClientError(f"cannot reach {self.base}: {e.strerror or e}") from None
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return Reply(resp.status, decoded, seconds)

    def get(self, path: str, timeout: float | None = None) -> Any:
        """GET a JSON document; ClientError on any status but 200."""
        reply = self.request("GET", path, timeout=timeout)
        if reply.status != 200:
            raise ClientError(error_text(reply.status, reply.body), reply.status, reply.body)
        return reply.body

    def append(self, message: str, w: int | None = None, timeout: float | None = None,
               key: str | None = None, http_timeout: float | None = None) -> Reply:
        """POST /messages; ClientError (with the server's message) on any status but 201."""
        body: dict[str, Any] = {"message": message}
        if w is not None:
            body["w"] = w
        if timeout is not None:
            body["timeout"] = timeout
        if key is not None:
            body["id"] = key
        reply = self.request("POST", "/messages", body, timeout=http_timeout)
        if reply.status != 201:
            raise ClientError(error_text(reply.status, reply.body), reply.status, reply.body)
        return reply

    def messages(self, first: int | None = None, limit: int | None = None) -> dict:
        """{"messages": [...]} and, when paged, "from" and "next"."""
        query = {k: v for k, v in (("from", first), ("limit", limit)) if v is not None}
        path = "/messages" + ("?" + urllib.parse.urlencode(query) if query else "")
        return self.get(path)

    def health(self) -> dict:
        return self.get("/health")

    def set_faults(self, **faults: float) -> dict:
        reply = self.request("POST", "/faults", faults)
        if reply.status != 200:
            raise ClientError(error_text(reply.status, reply.body), reply.status, reply.body)
        return reply.body
