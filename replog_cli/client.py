"""The CLI's HTTP calls, through replog_client: one Http object wraps one
`replog_client.Client` (pooled keep-alive connections, retries with one idempotency key per
write, the master found through redirects), and turns its typed errors into ClientError,
the one line the user reads."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from replog_client import Client, ReplogError
from replog_client.client import error_text

__all__ = ["ClientError", "Reply", "Http", "error_text"]


class ClientError(Exception):
    """Anything the user should read as one line: an HTTP error's message, or no answer."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


@dataclass
class Reply:
    """A call's answer: its status, its decoded JSON body, and how long it took."""
    status: int
    body: Any
    seconds: float


def _client_error(e: ReplogError) -> ClientError:
    return ClientError(e.message, e.status, e.body)


class Http:
    """The CLI's calls to one node (http://host:port); ``retries`` as replog_client's."""

    def __init__(self, base_url: str, timeout: float = 10.0, retries: int = 5) -> None:
        try:
            self.client = Client([base_url], timeout=timeout, retries=retries)
        except ValueError as e:
            raise ClientError(str(e)) from None
        self.base = self.client.url
        self.timeout = timeout

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Reply:
        """Any call: its status, body and time; ClientError when no node answers."""
        t0 = time.perf_counter()
        try:
            status, decoded = self.client.request(method, path, body, timeout=timeout)
        except ReplogError as e:
            raise _client_error(e) from None
        return Reply(status, decoded, time.perf_counter() - t0)

    def get(self, path: str, timeout: float | None = None) -> Any:
        """GET a JSON document; ClientError on any status but 200."""
        reply = self.request("GET", path, timeout=timeout)
        if reply.status != 200:
            raise ClientError(error_text(reply.status, reply.body), reply.status, reply.body)
        return reply.body

    def append(self, message: str, w: int | None = None, timeout: float | None = None,
               key: str | None = None, http_timeout: float | None = None) -> Reply:
        """One message (``replog_client.Client.append``): Reply with the server's JSON;
        ClientError with the server's message when refused. ``http_timeout`` bounds each
        wait for an answer beyond the write concern's own ``timeout``."""
        if http_timeout is not None:
            self.client.timeout = http_timeout
        t0 = time.perf_counter()
        try:
            done = self.client.append(message, w, timeout, key=key)
        except ReplogError as e:
            raise _client_error(e) from None
        return Reply(201, {"seq": done.seq, "acks": done.acks, "w": done.w},
                     time.perf_counter() - t0)

    def append_many(self, messages: list[str], w: int | None = None,
                    timeout: float | None = None, http_timeout: float | None = None
                    ) -> Reply:
        """A batch in one POST (``Client.append_many``); ClientError when refused, its
        ``body`` naming the refused message's ``index`` when the server did."""
        if http_timeout is not None:
            self.client.timeout = http_timeout
        t0 = time.perf_counter()
        try:
            done = self.client.append_many(messages, w, timeout)
        except ReplogError as e:
            raise _client_error(e) from None
        return Reply(201, {"first_seq": done.first_seq, "seq": done.seq, "acks": done.acks,
                           "w": done.w}, time.perf_counter() - t0)

    def messages(self, first: int | None = None, limit: int | None = None) -> dict:
        """{"messages": [...]} and, when paged, "from" and "next"."""
        if first is None and limit is None:
            return self.get("/messages")
        try:
            page = self.client.read(first or 1, limit or 1000)
        except ReplogError as e:
            raise _client_error(e) from None
        return {"messages": page.messages, "from": page.from_seq, "next": page.next}

    def health(self) -> dict:
        """The node's GET /health."""
        return self.get("/health")

    def set_faults(self, **faults: float) -> dict:
        """POST /faults to a secondary started with --allow-faults."""
        reply = self.request("POST", "/faults", faults)
        if reply.status != 200:
            raise ClientError(error_text(reply.status, reply.body), reply.status, reply.body)
        return reply.body
