"""The HTTP edge: Bottle apps for master and secondary, JSON errors, and the WSGI server.

Bottle's own default server handles one request at a time, and a POST may wait seconds
for its write concern, so the apps run on gevent's WSGI server (Bottle's `gevent` server
adapter does the same): every connection gets a greenlet, a waiting request costs a few
kilobytes and no OS thread, and waking it costs no context switch. The node processes are
monkey-patched at startup (see master_node.py), so threading.Event, Pyro5's sockets and
threads all cooperate on one event loop.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

import bottle
import logging
import socket

import gevent
from gevent import pool, pywsgi
from loguru import logger

from . import dashboard, edge, follow, logs, metrics, tlsconn
from .core.master import ReadOnly
from .core.validate import BadRequest, BatchRequest, parse_append, parse_faults
from .core.concern import WriteConcernTimeout
from .httpjson import _json, dumps, fail, note, read_body



def json_app() -> bottle.Bottle:
    """A Bottle app whose every error (404, 405, 500, ...) is a JSON object, and which logs
    one line per request: DEBUG when it succeeded, INFO when it was refused."""
    app = bottle.Bottle(autojson=False)
    app.install(bottle.JSONPlugin(json_dumps=dumps))    # every JSON answer ends with "\n"
    app.replog_on_stop = []    # called when the server stops, before it waits for requests

    def error_body(res: bottle.HTTPError) -> str:
        res.content_type = "application/json; charset=utf-8"
        message = res.body if isinstance(res.body, str) and res.body else res.status_line
        if res.status_code >= 500:
            logger.opt(exception=res.exception).error("HTTP {} {}: {}", bottle.request.method,
                                                      bottle.request.path, res.exception)
        note(message)
        return dumps({"error": message})

    if logs.DEBUG:   # timings only when every request is logged: it costs on the hot path
        @app.hook("before_request")
        def started() -> None:
            bottle.request.environ["replog.started"] = time.perf_counter()

    @app.hook("after_request")
    def access_log() -> None:
        status = bottle.response.status_code
        if status < 400 and not logs.DEBUG:
            return
        env = bottle.request.environ
        took = (f" in {(time.perf_counter() - env['replog.started']) * 1000:.1f} ms"
                if "replog.started" in env else "")
        logger.log("DEBUG" if status < 400 else "INFO", "HTTP {} {} -> {}{}{}",
                   bottle.request.method, bottle.request.path, status,
                   " " + env["replog.note"] if "replog.note" in env else "", took)

    app.default_error_handler = error_body
    return app


def _content_type() -> str | None:
    return bottle.request.environ.get("CONTENT_TYPE")


def master_app(master: Any, max_body: int, allow_faults: bool = False,
               max_batch: int = 10_000) -> bottle.Bottle:
    app = json_app()

    @app.post("/messages")
    @metrics.measured(master.stats)
    def post_message():
        try:
            req = parse_append(read_body(max_body), _content_type(), master.cluster_size,
                               max_body, max_batch)
            bottle.request.environ["replog.w"] = req.w
            if isinstance(req, BatchRequest):
                result = master.append_many(req.messages, req.w, req.timeout, req.key)
            else:
                result = master.append(req.message, req.w, req.timeout, req.key)
        except BadRequest as e:
            fail(e.status, e.message, **e.extra)
        except ReadOnly as e:
            fail(503, f"read-only: {e}")
        except WriteConcernTimeout as e:
            fail(504, str(e), seq=e.seq, acks=e.acks, w=e.w)
        if logs.DEBUG:
            note(f"seq={result['seq']} w={req.w} acks={result['acks']}")
        bottle.response.status = 201
        bottle.response.content_type = "application/json; charset=utf-8"
        return dumps(result)

    _read_routes(app, master)
    metrics.add_metrics_route(app, metrics.MasterCollector(master))
    dashboard.add_routes(app, master, allow_faults)
    return app


PAGE_MAX = 10_000      # most messages in one page of GET /messages?from=&limit=
STREAM_CHUNK = 10_000  # messages encoded between two yields to the event loop
WAIT_MAX = 30.0        # longest hold of GET /messages?wait=, in seconds


def _int_param(name: str, default: int, low: int, high: int | None = None) -> int:
    text = bottle.request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        fail(400, f"'{name}' must be an integer, got {text!r}")
    if value < low or (high is not None and value > high):
        fail(400, f"'{name}' must be from {low} to {high}" if high is not None
             else f"'{name}' must be at least {low}")
    return value


def _wait_param() -> float | None:
    text = bottle.request.query.get("wait")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= WAIT_MAX:            # NaN fails this too
        fail(400, f"'wait' must be a number of seconds above 0 and at most {WAIT_MAX:g}, "
                  f"got {text!r}")
    return value


def _known_params(allowed: list[str]) -> None:
    unknown = sorted(set(bottle.request.query) - set(allowed))
    if unknown:
        fail(400, f"unknown parameter(s) {unknown}; allowed: {allowed}")


def _read_routes(app: bottle.Bottle, node: Any) -> None:
    """GET /messages (paged, held with ?wait=), GET /messages/stream and GET /health, the
    same on master and secondary: what the node shows (the master: its durable prefix; a
    secondary: its gap-free prefix)."""
    app.replog_on_stop.append(node.follow.close)     # held requests and streams end

    @app.get("/messages")
    def get_messages():
        _known_params(["from", "limit", "wait"])
        query = bottle.request.query
        paged = "from" in query or "limit" in query or "wait" in query
        first = _int_param("from", 1, 1)
        limit = _int_param("limit", 1000, 1, PAGE_MAX)
        wait = _wait_param()
        if wait is None:
            entries, count = node.snapshot()  # entries 1..count stay as they are: no lock
        else:                                 # held until entries from `first` on exist
            entries, count = follow.wait_for(node, first, wait)
        bottle.response.content_type = "application/json; charset=utf-8"
        if paged:
            page = entries[first - 1:min(count, first - 1 + limit)]
            return dumps({"messages": page, "from": first, "next": first + len(page)})
        if count <= STREAM_CHUNK:
            return dumps({"messages": entries[:count]})
        return _stream(entries, count)

    @app.get("/messages/stream")
    def stream_messages():
        _known_params(["from"])
        first = _int_param("from", 1, 1)
        last_id = bottle.request.get_header("Last-Event-ID")
        if last_id is not None:               # a reconnecting EventSource: it wins
            try:
                first = int(last_id.strip()) + 1
            except ValueError:
                first = 0
            if first < 1:
                fail(400, f"Last-Event-ID must be a seq (an integer from 0 on), got {last_id!r}")
        bottle.response.content_type = "text/event-stream; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-cache")
        bottle.response.set_header("X-Accel-Buffering", "no")     # proxies: do not buffer
        # pause: yield to the event loop after every write, also with no wait (the pause
        # with only one stream open): a timer, not sleep(0), so that sockets are polled first
        # (see _stream)
        return follow.stream(node, first, pause=lambda s: gevent.sleep(max(s, 0.0001)))

    app.route("/health", "GET", node.health)


def _stream(entries: list[str], count: int):
    """{"messages": [...]} in chunks, yielding to the event loop between them, so that a
    reader of a million messages never stalls the writers for more than one chunk."""
    yield '{"messages": ['
    for i in range(0, count, STREAM_CHUNK):
        part = json.dumps(entries[i:min(i + STREAM_CHUNK, count)], ensure_ascii=False)[1:-1]
        yield ("," + part) if i else part
        # Not sleep(0): that only runs greenlets already woken, and gevent runs up to 50
        # such callbacks before it polls sockets again, so writers waited 50 chunks (~150 ms
        # measured). A timer, however short, lets the loop poll first.
        gevent.sleep(0.0001)
    yield "]}\n"


def secondary_app(secondary: Any, max_body: int) -> bottle.Bottle:
    app = json_app()
    _read_routes(app, secondary)

    metrics.add_metrics_route(app, metrics.SecondaryCollector(secondary))

    @app.route("/messages", ["POST", "PUT", "PATCH", "DELETE"])
    def write_to_secondary():
        master = getattr(secondary, "master_url", None)   # known only if the node learns it
        message = (f"{secondary.name} is a secondary and read-only: writes go to the master "
                   + (f"(POST {master}/messages)" if master else "(POST to the master)"))
        note(message)
        response = _json(405, {"error": message, **({"master": master} if master else {})})
        response.set_header("Allow", "GET")
        raise response

    @app.post("/faults")
    def post_faults():
        if not secondary.allow_faults:
            fail(403, "fault injection is off: start the secondary with --allow-faults "
                      "(REPLOG_ALLOW_FAULTS=1)")
        try:
            faults = parse_faults(read_body(max_body), _content_type(), max_body)
        except BadRequest as e:
            fail(e.status, e.message)
        return secondary.set_faults(**faults)

    return app


_NO_TIMEOUTS = edge.Timeouts(header=0, body=0, idle=0, write=0)


class _Server(pywsgi.WSGIServer):
    """gevent's WSGI server with TCP_NODELAY: a response written in two parts (headers,
    body) must not wait for the client's delayed ACK (40 ms). With edge.Timeouts, every
    socket operation and the TLS handshake are bounded (see nodes/edge.py). HTTPS runs over
    memory BIOs (nodes/tlsconn.py), not gevent's SSLSocket: its Python layer around each
    OpenSSL call cost more than the encryption itself (docs/security.md, "Cost")."""

    timeouts: edge.Timeouts | None = None
    ssl_context: Any = None     # the HTTPS context (create_http_server); None: plain HTTP

    def wrap_socket_and_handle(self, client_socket, address):
        # HTTPS: the handshake runs in the connection's greenlet; bound it like the headers
        t = self.timeouts or _NO_TIMEOUTS
        conn = tlsconn.TLSConnection(client_socket, self.ssl_context)
        try:
            try:
                client_socket.settimeout(t.idle or None)
                with gevent.Timeout(t.header or None, socket.timeout("TLS handshake")):
                    conn.handshake()
            except (OSError, ValueError):      # a bad or slow handshake: a quiet close
                return None
            client_socket.settimeout(None)     # from here on, as in handle() below
            return self.handle(conn, address)
        finally:
            conn.close()

    def handle(self, sock, address):
        # No socket timeout: the reads that a slow client could stall are bounded by
        # edge.Handler (idle, headers) and the Guard (body), each with its own deadline. A
        # socket timeout made every sendall() of gevent take its slow path (a getsockopt
        # and a clock read per answer): measured, about 5% of the master's CPU per append.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle(sock, address)

    def stop(self, timeout=None) -> None:
        """End held requests and streams first, so that they answer and close cleanly
        instead of being killed when stop's grace period ends."""
        for on_stop in getattr(self.application, "replog_on_stop", ()):
            try:
                on_stop()
            except Exception:
                logger.exception("stopping {}", on_stop)
        super().stop(timeout)

    @property
    def effective_port(self) -> int:
        return self.server_port

    def run(self) -> None:
        """Serve until stop() (gevent's; it waits up to stop_timeout for open requests)."""
        self.serve_forever(stop_timeout=2)


def create_http_server(app: Any, host: str, port: int, max_connections: int = 10_000,
                       max_body: int = 1 << 20, ssl_context: Any = None,
                       timeouts: "edge.Timeouts | None" = None) -> _Server:
    """A gevent WSGI server, bound now (.effective_port tells the port when port was 0);
    .run() serves until .stop(). Bodies are read lazily, so read_body refuses an oversized
    one (413) from its Content-Length before anything is buffered; max_body is checked there.
    ssl_context: serve HTTPS (edge.server_context); timeouts: the read deadlines of
    nodes/edge.py (None: none, as before)."""
    kw: dict[str, Any] = {"ssl_context": ssl_context} if ssl_context is not None else {}
    if timeouts is not None:
        kw["handler_class"] = type("Handler", (edge.Handler,), {"timeouts": timeouts})
    server = _Server((host, port), app, spawn=pool.Pool(max_connections), log=None,
                     error_log=logging.getLogger("gevent.pywsgi"), **kw)
    server.timeouts = timeouts
    server.ssl_context = ssl_context
    server.init_socket()
    return server
