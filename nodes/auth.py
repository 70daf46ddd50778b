"""Who may call what on the HTTP client API, and how much: a WSGI middleware (Guard) in front
of every node's Bottle app (installed by nodes.serve).

ROUTES maps method + path to the role a token needs. A route missing from it needs ADMIN:
whoever adds an endpoint and forgets this table locks it down rather than opening it.
Adding a route is one line here.

Per request, in this order:
1. the role: with a token file (--tokens) `Authorization: Bearer TOKEN` must name a token
   (else 401 with WWW-Authenticate) that has the route's role (else 403). Each refusal is
   logged once per client address and token name (never the token);
2. bounds, per token (per client address without a token file): requests marked `rate`
   (appends) take from a token bucket (--append-rate per second, --append-burst), requests
   marked `held` (long-polls, streams) count against --max-held at once; over -> 429 with
   Retry-After;
3. the body is read within --body-timeout (else 408), so a client that trickles its body
   holds no greenlet for longer.
"""
from __future__ import annotations

import io
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import gevent
from loguru import logger

from .tokens import TokenStore

PUBLIC = "public"          # no token needed
ADMIN = "admin"            # the role of every route not in ROUTES


@dataclass(frozen=True)
class Route:
    method: str            # GET covers HEAD
    path: str              # exact, or a prefix ending in "/*"
    role: str              # append, read, metrics, admin or PUBLIC
    rate: bool = False     # counts against --append-rate
    held: str | bool = False   # held open (counts against --max-held): True, or the query
                               # parameter that makes it so ("wait": a long-poll)


ROUTES: tuple[Route, ...] = (
    Route("POST", "/messages", "append", rate=True),
    Route("GET", "/messages", "read", held="wait"),        # ?wait=S: a long-poll
    Route("GET", "/messages/stream", "read", held=True),
    Route("GET", "/health", "read"),
    Route("GET", "/cluster", "read"),                      # the dashboard's data
    Route("GET", "/metrics", "metrics"),
    Route("POST", "/faults", "admin"),
    Route("POST", "/cluster/faults", "admin"),
    # The dashboard's page, script and style sheet: static files, the same for everybody,
    # holding no data (that comes from /cluster, which needs `read`). A browser cannot send
    # a bearer token when it navigates, so the page asks for one and sends it on its fetches.
    Route("GET", "/", PUBLIC),
    Route("GET", "/dashboard/*", PUBLIC),
)

_DEFAULT = Route("*", "*", ADMIN)


def _index(routes: Iterable[Route]) -> tuple[dict, list]:
    exact, prefixes = {}, []
    for r in routes:
        if r.path.endswith("/*"):
            prefixes.append((r.method, r.path[:-1], r))
        else:
            exact[(r.method, r.path)] = r
    return exact, prefixes


_EXACT, _PREFIXES = _index(ROUTES)


def route_of(method: str, path: str) -> Route:
    method = "GET" if method == "HEAD" else method
    r = _EXACT.get((method, path))
    if r is not None:
        return r
    for m, prefix, r in _PREFIXES:
        if m == method and path.startswith(prefix) and "/" not in path[len(prefix):]:
            return r
    return _DEFAULT


@dataclass(frozen=True)
class Limits:
    append_rate: float = 20_000.0    # appends (POST /messages) per second per token/address; 0: off
    append_burst: float = 0.0        # bucket size (0: one second's worth)
    max_held: int = 1024             # long-polls and streams open at once per token/address; 0: off
    body_timeout: float = 30.0       # seconds to receive a request's whole body; 0: none
    max_body: int = 1 << 20          # larger bodies are left to the app (413), not read here


READ_PIECE = 16_384    # bytes of a body read at once
_MAX_KEYS = 10_000     # most clients remembered for logging and buckets (memory stays bounded)


class _Bucket:
    __slots__ = ("level", "at")

    def __init__(self, level: float, at: float) -> None:
        self.level, self.at = level, at


def _json_response(start_response: Callable, status: str, body: dict,
                   headers: list[tuple[str, str]] = ()) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json; charset=utf-8"),
                            ("Content-Length", str(len(data))), *headers])
    return [data]


class _Held:
    """The app's response, giving back its --max-held slot when the server closes it."""

    def __init__(self, result: Iterable[bytes], release: Callable[[], None]) -> None:
        self.result, self.release = result, release

    def __iter__(self):
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            release, self.release = self.release, None
            if release is not None:
                release()


class Guard:
    """WSGI middleware: authorization, per-client bounds and the body deadline (see above)."""

    def __init__(self, app: Callable, tokens: TokenStore | None, limits: Limits = Limits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.tokens, self.limits, self.clock = app, tokens, limits, clock
        self.burst = limits.append_burst or limits.append_rate
        self._buckets: dict[str, _Bucket] = {}
        self._held: dict[str, int] = {}
        self._logged: set[tuple] = set()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        """The wrapped app's attributes (nodes.web's server reads `replog_on_stop` there)."""
        if name == "app":
            raise AttributeError(name)
        return getattr(self.app, name)

    # -- the parts, each usable on its own (the bench times `authorize`) --

    def authorize(self, route: Route, header: str) -> tuple[int, str, str | None]:
        """(status, detail, token name): 200 when allowed (with tokens off, always)."""
        if self.tokens is None or route.role == PUBLIC:
            return 200, "", None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return 401, "no bearer token", None
        token = self.tokens.find(value.strip())
        if token is None:
            return 401, "invalid token", None
        if route.role not in token.roles:
            return 403, f"token {token.name!r} lacks the role {route.role!r}", token.name
        return 200, "", token.name

    def take_append(self, who: str) -> float:
        """0 when an append may go now, else the seconds until one may."""
        rate = self.limits.append_rate
        if rate <= 0:
            return 0.0
        now = self.clock()
        b = self._buckets.get(who)
        if b is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._prune(now)
            b = self._buckets[who] = _Bucket(self.burst, now)
        b.level = min(self.burst, b.level + (now - b.at) * rate)
        b.at = now
        if b.level >= 1.0:
            b.level -= 1.0
            return 0.0
        return (1.0 - b.level) / rate

    def _prune(self, now: float) -> None:
        rate = self.limits.append_rate
        full = [k for k, b in self._buckets.items() if b.level + (now - b.at) * rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= _MAX_KEYS:    # all busy: forget them (a fresh bucket is full)
            self._buckets.clear()

    def hold(self, who: str) -> Callable[[], None] | None:
        """A release function, or None when `who` already holds --max-held requests."""
        if self.limits.max_held <= 0:
            return lambda: None
        with self._lock:
            n = self._held.get(who, 0)
            if n >= self.limits.max_held:
                return None
            self._held[who] = n + 1

        def release() -> None:
            with self._lock:
                left = self._held.get(who, 1) - 1
                if left > 0:
                    self._held[who] = left
                else:
                    self._held.pop(who, None)
        return release

    def held(self, route: Route, environ: dict) -> bool:
        if route.held is True:
            return True
        if route.held:
            query = environ.get("QUERY_STRING", "")
            return query.startswith(f"{route.held}=") or f"&{route.held}=" in query
        return False

    def log_once(self, key: tuple, message: str, *args: Any) -> None:
        if key in self._logged:
            return
        if len(self._logged) >= _MAX_KEYS:
            self._logged.clear()
        self._logged.add(key)
        logger.warning(message + "; further refusals of this client and token are not logged",
                       *args)

    # -- the middleware --

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        route = route_of(method, path)
        addr = environ.get("REMOTE_ADDR") or "?"
        name = None
        if self.tokens is not None and route.role != PUBLIC:    # else authorize allows it
            status, detail, name = self.authorize(route, environ.get("HTTP_AUTHORIZATION", ""))
            if status != 200:     # (an unsent body is read and dropped by nodes.edge, bounded)
                self.log_once((addr, name, status, detail if name is None else ""),
                              "refused {} {} from {} ({}): {}", method, path, addr, status, detail)
                if status == 401:
                    challenge = 'Bearer realm="replog"' + (
                        ', error="invalid_token"' if detail == "invalid token" else "")
                    return _json_response(start_response, "401 Unauthorized",
                                          {"error": f"{detail}: send Authorization: Bearer TOKEN"},
                                          [("WWW-Authenticate", challenge)])
                return _json_response(
                    start_response, "403 Forbidden", {"error": detail},
                    [("WWW-Authenticate",
                      f'Bearer realm="replog", error="insufficient_scope", scope="{route.role}"')])
        release = None
        if route.rate or route.held:
            who = f"token {name}" if name is not None else f"address {addr}"
            if route.rate:
                wait = self.take_append(who)
                if wait:
                    return self._too_many(environ, start_response, who, addr, method, path,
                                          f"over {self.limits.append_rate:g} appends/s", wait)
            if self.held(route, environ):
                release = self.hold(who)
                if release is None:
                    return self._too_many(environ, start_response, who, addr, method, path,
                                          f"already {self.limits.max_held} long-polls/streams "
                                          "open", 1.0)
        try:
            if self.limits.body_timeout > 0 and not self._read_body(environ):
                return _json_response(start_response, "408 Request Timeout",
                                      {"error": f"the body did not arrive within "
                                                f"{self.limits.body_timeout:g} s"},
                                      [("Connection", "close")])
            result = self.app(environ, start_response)
        except BaseException:
            if release is not None:
                release()
            raise
        if release is not None:
            return _Held(result, release)
        return result

    def _too_many(self, environ: dict, start_response: Callable, who: str, addr: str,
                  method: str, path: str, why: str, wait: float) -> list[bytes]:
        self.log_once((addr, who, 429), "refused {} {} from {} (429, {}): {}", method, path,
                      addr, who, why)
        return _json_response(start_response, "429 Too Many Requests",
                              {"error": f"too many requests: {why}"},
                              [("Retry-After", str(max(1, math.ceil(wait))))])

    @staticmethod
    def _has_body(environ: dict) -> bool:
        return (environ.get("CONTENT_LENGTH") not in (None, "", "0")
                or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower())

    def _abandon(self, environ: dict) -> None:
        """Close the connection after the answer without reading the rest of the body."""
        if self._has_body(environ):
            handler = environ.get("replog.handler")
            if handler is not None:
                handler.abandon_body()

    def _read_body(self, environ: dict) -> bool:
        """Read the body (up to max_body + 1 bytes) within body_timeout and hand the app a
        buffer of it; False when the time ran out. A body announced as larger than max_body
        is left unread for the app to refuse (413)."""
        if not self._has_body(environ):
            return True
        length = environ.get("CONTENT_LENGTH")
        try:
            n = int(length) if length else None
        except ValueError:
            return True                      # the app answers 400
        if n is not None and n > self.limits.max_body:
            return True                      # the app answers 413; nodes.edge drops the body
        raw = environ["wsgi.input"]
        left = n if n is not None else self.limits.max_body + 1
        parts = []
        # the connection's reusable deadline (nodes.edge.Handler), else a Timeout of its own
        deadline = getattr(environ.get("replog.handler"), "body_deadline", gevent.Timeout)
        deadline = deadline(self.limits.body_timeout)
        try:
            with deadline:
                # in pieces: a client that announces a large body and trickles it makes the
                # node hold what arrived, not a buffer of the announced size
                while left > 0:
                    part = raw.read(min(left, READ_PIECE))
                    if not part:
                        break
                    parts.append(part)
                    left -= len(part)
        except gevent.Timeout:
            self._abandon(environ)
            logger.info("dropped {} {} from {}: its body did not arrive within {:g} s",
                        environ["REQUEST_METHOD"], environ.get("PATH_INFO"),
                        environ.get("REMOTE_ADDR"), self.limits.body_timeout)
            return False
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        environ["wsgi.input"] = io.BytesIO(body)
        if n is None:
            environ["CONTENT_LENGTH"] = str(len(body))
        return True
