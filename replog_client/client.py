"""`Client`: replog over HTTP, with retries that never append twice, finding the master,
and a stream that resumes where it stopped.

How a call finds its node: it starts at the URL that worked last (at first, the first one
given). A refused or cut connection, or no answer in time, moves on to the next URL at once;
once every URL has failed, the client backs off (capped exponential, with jitter) and goes
round again, up to ``retries`` times. A ``307`` (a secondary naming the master) is followed
to its ``Location``, and a ``405`` from a secondary that names the master (``"master"`` in
its body) likewise; a ``405`` naming none moves on to the next URL. A ``503`` is waited out:
``Retry-After`` seconds when the answer says (at most ``retry_after_cap``), else the
backoff, up to ``retries`` times, then ``ReadOnly``. Whatever URL answered is remembered.

Every write carries one idempotency key (``id``) for all of its attempts: the caller's, or
one the client makes up. The master answers a repeated key with the first append's seqs and
appends nothing, so a retry after a lost answer never appends twice.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import requests
import urllib3.exceptions

from .errors import BadRequest, ReadOnly, ReplogError, Unavailable, WriteConcernTimeout
from .model import Appended, Entry, Page
from .retry import backoff, retry_after
from .sse import Parser

DEFAULT_URL = "http://127.0.0.1:5000"

# what a lost connection looks like, from requests and from reading a streamed body
_CONNECTION_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError,
                      http.client.HTTPException, OSError)


def base_url(url: str) -> str:
    """``scheme://host:port`` of a URL (``host:port`` alone means http); ValueError when it
    is not an HTTP URL."""
    parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"not an HTTP URL: {url!r}")
    return f"{parsed.scheme}://{parsed.netloc}"


def error_text(status: int, body: Any) -> str:
    """``STATUS: the server's message`` when it sent ``{"error": ...}``; else the status and
    the start of the body."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f"{status}: {body['error']}"
    return f"{status}: {json.dumps(body)[:200]}"


def _decode(response: requests.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return response.content.decode(errors="replace")


def _describe(error: BaseException, url: str, timeout: float) -> str:
    """One line for a failed connection, naming the node."""
    text = str(error)
    if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return f"{url} did not answer within {timeout:g} s"
    if isinstance(error, requests.ConnectionError) and (
            "Connection refused" in text or "NewConnectionError" in text):
        return f"cannot reach {url}: Connection refused"
    if "RemoteDisconnected" in text or "Connection aborted" in text or "reset" in text:
        return f"{url} closed the connection before it answered"
    return f"cannot reach {url}: {text[:200]}"


class Client:
    """A client of a replog cluster over HTTP.

    ``urls``: the nodes to try (the master first, if you know it; secondaries let the client
    find the master and serve ``read``/``follow``). ``timeout``: seconds to wait for each
    answer (an append's own ``timeout`` is added to it). ``retries``: how many times a call
    is tried again after every URL failed, or after a 503 or a 5xx. ``backoff_base`` and
    ``backoff_cap``: the first and the largest wait between retries (times a random 0.5-1).
    ``retry_after_cap``: the longest ``Retry-After`` waited for. ``max_redirects``: how
    many times one call follows a node to another. ``stream_timeout``: seconds ``follow``
    waits for a byte (an event or a keep-alive) before it takes the stream as dead and
    reconnects. ``sleep`` and ``rand``: how to wait and where jitter comes from (tests pass
    their own).

    Connections are pooled (one ``requests.Session`` per thread), so a Client may be shared
    between threads; ``close()`` (or ``with Client(...) as c:``) closes them.

    ``token``: the access token sent as ``Authorization: Bearer ...`` to nodes started with
    ``--tokens`` (default: the environment's ``REPLOG_TOKEN``, else the first line of the file
    ``REPLOG_TOKEN_FILE`` names). ``ca``: the CA certificate that HTTPS nodes' certificates
    must chain to (default ``REPLOG_CA``; without it, the system's trust store).
    """

    def __init__(self, urls: str | Sequence[str] = DEFAULT_URL, *, timeout: float = 30.0,
                 retries: int = 5, backoff_base: float = 0.1, backoff_cap: float = 2.0,
                 retry_after_cap: float = 10.0, max_redirects: int = 5,
                 stream_timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep,
                 rand: Callable[[], float] = random.random, token: str | None = None,
                 ca: str | None = None) -> None:
        given = [urls] if isinstance(urls, str) else list(urls)
        if not given:
            raise ValueError("give at least one URL")
        self.urls: list[str] = []
        for url in given:
            self._add_url(base_url(url))
        self.timeout = timeout
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_after_cap = retry_after_cap
        self.max_redirects = max_redirects
        self.stream_timeout = stream_timeout
        self._sleep = sleep
        self._rand = rand
        self._preferred = self.urls[0]
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._token = token if token is not None else _token_from_environment()
        self._ca = ca if ca is not None else (os.environ.get("REPLOG_CA") or None)

    # -- plumbing --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The URL that answered last (the master's, once a write found it)."""
        return self._preferred

    def _add_url(self, url: str) -> None:
        if url not in self.urls:
            self.urls.append(url)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if self._token:
                session.headers["Authorization"] = f"Bearer {self._token}"
            if self._ca:
                session.verify = self._ca
                # else REQUESTS_CA_BUNDLE, where set, would win over session.verify
                session.trust_env = False
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every pooled connection (the Client can still be used: it reconnects)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rotation(self) -> list[str]:
        """Every URL, starting at the one that answered last."""
        i = self.urls.index(self._preferred)
        return self.urls[i:] + self.urls[:i]

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.backoff_base, self.backoff_cap, self._rand)

    def _request(self, method: str, path: str, *, body: Any = None,
                 params: dict[str, Any] | None = None, timeout: float | None = None,
                 write: bool = False) -> tuple[str, requests.Response]:
        """Send until a node gives an answer worth returning: (its URL, the response),
        whatever its status but 3xx, 503 and 5xx (those are followed or retried here).
        Raises Unavailable or ReadOnly when the retries run out."""
        timeout = self.timeout if timeout is None else timeout
        attempt = 0
        failed: set[str] = set()       # this round: no answer, or sent us to one without
        not_master: set[str] = set()   # this round: answered 405, naming no master
        redirects = 0                  # this round
        url = self._preferred
        problem = "no attempt made"
        while True:
            if not url:                # every URL failed this round: back off, go again
                attempt += 1
                if attempt > self.retries:
                    others = len(self.urls) - 1
                    raise Unavailable(problem + (f" (and {others} other URL(s))" if others
                                                 else "")) from None
                self._sleep(self._backoff(attempt))
                failed.clear()
                not_master.clear()
                redirects = 0
                url = self._preferred
            try:
                response = self._session().request(
                    method, url + path, json=body, params=params, timeout=timeout,
                    allow_redirects=False)
            except _CONNECTION_ERRORS as e:
                problem = _describe(e, url, timeout)
                failed.add(url)
                url = self._next_url(failed)     # another node may answer: no wait
                continue
            status = response.status_code
            target = self._redirect_target(url, path, response, write)
            if target is not None:
                if target in failed:             # sent to a node that just failed
                    failed.add(url)
                    url = self._next_url(failed)
                    continue
                redirects += 1
                if redirects > self.max_redirects:
                    raise Unavailable(f"more than {self.max_redirects} redirects; last from "
                                      f"{url} to {target}", status, _decode(response), url)
                self._add_url(target)
                self._preferred = url = target
                continue
            if status == 405 and write:          # a secondary that knows no master
                here = url
                not_master.add(here)
                failed.add(here)
                url = self._next_url(failed)
                if url or failed - not_master:   # another URL, or one worth a retry
                    continue
                return here, response            # every node says: not the master
            if status == 503 or (status >= 500 and status != 504):
                attempt += 1
                if attempt > self.retries:
                    answer = _decode(response)
                    cls = ReadOnly if status == 503 else ReplogError
                    raise cls(error_text(status, answer), status, answer, url)
                wait = retry_after(response.headers.get("Retry-After"), self.retry_after_cap)
                self._sleep(self._backoff(attempt) if wait is None else wait)
                failed.clear()
                not_master.clear()
                redirects = 0
                continue
            self._preferred = url
            return url, response

    def _next_url(self, failed: set[str]) -> str:
        """The next URL after the last one that answered that has not failed this round;
        "" when none is left."""
        return next((u for u in self._rotation() if u not in failed), "")

    @staticmethod
    def _redirect_target(url: str, path: str, response: requests.Response,
                         write: bool) -> str | None:
        """Where a 3xx (with Location), or a write's 405 naming the master, sends us."""
        status = response.status_code
        if status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
            return base_url(urllib.parse.urljoin(url + path, response.headers["Location"]))
        if status == 405 and write:
            body = _decode(response)
            master = body.get("master") if isinstance(body, dict) else None
            if isinstance(master, str) and master:
                try:
                    target = base_url(master)
                except ValueError:
                    return None
                return target if target != url else None
        return None

    def _answer(self, url: str, response: requests.Response, ok: int) -> Any:
        """The decoded body when the status is ``ok``; else the typed exception."""
        body = _decode(response)
        status = response.status_code
        if status == ok:
            return body
        message = error_text(status, body)
        if status == 504:
            raise WriteConcernTimeout(message, status, body, url)
        if 400 <= status < 500:
            raise BadRequest(message, status, body, url)
        raise ReplogError(message, status, body, url)

    @staticmethod
    def _write_body(w: int | None, timeout: float | None, key: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"id": key if key is not None else uuid.uuid4().hex}
        if w is not None:
            body["w"] = w
        if timeout is not None:
            body["timeout"] = timeout
        return body

    def _write_timeout(self, timeout: float | None) -> float:
        return self.timeout + (timeout or 0.0)

    # -- the API ---------------------------------------------------------------------------
    def append(self, message: str, w: int | None = None, timeout: float | None = None, *,
               key: str | None = None) -> Appended:
        """Append one message; return once ``w`` nodes hold it (left out: every node).

        ``timeout``: seconds the master may wait for ``w`` (then WriteConcernTimeout, the
        message staying in the log). ``key``: the idempotency key (made up when not given);
        every retry of this call sends the same one, so the message is appended once.
        Raises BadRequest, ReadOnly, WriteConcernTimeout, Unavailable."""
        body = {"message": message, **self._write_body(w, timeout, key)}
        url, response = self._request("POST", "/messages", body=body,
                                      timeout=self._write_timeout(timeout), write=True)
        data = self._answer(url, response, 201)
        return Appended(data.get("first_seq", data["seq"]), data["seq"], data["acks"],
                        data["w"])

    def append_many(self, messages: Sequence[str], w: int | None = None,
                    timeout: float | None = None, *, key: str | None = None) -> Appended:
        """Append a batch in one request, in order, with one wait for ``w``: the messages
        take the seqs ``first_seq``..``seq``. A refused message refuses the whole batch
        (BadRequest with ``index``); the key covers the whole batch. Otherwise as
        ``append``."""
        body = {"messages": list(messages), **self._write_body(w, timeout, key)}
        url, response = self._request("POST", "/messages", body=body,
                                      timeout=self._write_timeout(timeout), write=True)
        data = self._answer(url, response, 201)
        return Appended(data["first_seq"], data["seq"], data["acks"], data["w"])

    def read(self, from_seq: int = 1, limit: int = 1000, wait: float | None = None) -> Page:
        """A page of the log from ``from_seq``: at most ``limit`` (1..10,000) messages.
        ``wait``: when there is nothing at ``from_seq`` yet, the node holds the request up
        to that many seconds for one to arrive (long poll), then answers an empty page."""
        params: dict[str, Any] = {"from": from_seq, "limit": limit}
        timeout = self.timeout
        if wait is not None:
            params["wait"] = wait
            timeout += wait
        url, response = self._request("GET", "/messages", params=params, timeout=timeout)
        data = self._answer(url, response, 200)
        return Page(list(data["messages"]), data.get("from", from_seq),
                    data.get("next", from_seq + len(data["messages"])))

    def request(self, method: str, path: str, body: Any = None, *,
                timeout: float | None = None) -> tuple[int, Any]:
        """Any other endpoint (``POST /faults``, the whole ``GET /messages``, ...), with
        the same node finding and retries: (status, decoded JSON body), whatever the
        status. Appends should use ``append``/``append_many`` (they carry a key)."""
        _, response = self._request(method, path, body=body, timeout=timeout)
        return response.status_code, _decode(response)

    def health(self) -> dict[str, Any]:
        """The answering node's ``GET /health`` (the master's, once it is known)."""
        url, response = self._request("GET", "/health")
        report: dict[str, Any] = self._answer(url, response, 200)
        return report

    def follow(self, from_seq: int = 1, *, reconnects: int | None = None) -> Iterator[Entry]:
        """Every message from ``from_seq`` on, as it is appended: an endless iterator over
        the node's event stream (``GET /messages/stream``). When the stream breaks (a
        node restarts, a connection is cut, nothing arrives for ``stream_timeout``) it
        reconnects, to the same node or the next URL, with ``Last-Event-ID`` set to the
        last seq it yielded: no message is missed or repeated. ``reconnects``: how many
        failed connection attempts in a row it makes before it raises Unavailable
        (None: without limit). Stop it with ``close()`` or by leaving the loop."""
        last = from_seq - 1
        failures = 0
        url = self._preferred
        problem = ""
        while True:
            headers = {"Accept": "text/event-stream"}
            if last >= from_seq:
                headers["Last-Event-ID"] = str(last)
            try:
                with self._session().get(
                        url + "/messages/stream", params={"from": last + 1}, headers=headers,
                        stream=True, timeout=(self.timeout, self.stream_timeout)) as response:
                    if response.status_code != 200:
                        self._answer(url, response, 200)     # raises, typed
                    self._preferred = url
                    parser = Parser()
                    while chunk := response.raw.read1(65536):
                        for event in parser.feed(chunk):
                            seq = int(event.id) if event.id else last + 1
                            if seq <= last:
                                continue                     # already yielded
                            if seq != last + 1:
                                raise ReplogError(f"{url} skipped from seq {last} to {seq}")
                            message = json.loads(event.data)
                            last = seq
                            failures = 0
                            yield Entry(seq, message)
                problem = f"{url} ended the stream"
            except BadRequest:
                raise
            except (*_CONNECTION_ERRORS, ReplogError, ValueError) as e:
                problem = e.message if isinstance(e, ReplogError) else _describe(
                    e, url, self.stream_timeout)
            failures += 1
            if reconnects is not None and failures > reconnects:
                raise Unavailable(f"the stream broke {failures} time(s) in a row; last: "
                                  f"{problem}")
            rotation = self.urls[self.urls.index(url):] + self.urls[:self.urls.index(url)]
            url = rotation[1] if len(rotation) > 1 else url
            if failures >= len(self.urls):          # every URL failed once: back off
                self._sleep(self._backoff(failures - len(self.urls) + 1))


def _token_from_environment() -> str | None:
    """REPLOG_TOKEN, else the first line of the file REPLOG_TOKEN_FILE names."""
    token = os.environ.get("REPLOG_TOKEN")
    if token:
        return token.strip()
    path = os.environ.get("REPLOG_TOKEN_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip() or None
    return None
