"""The HTTP edge: Bottle apps for master and secondary, JSON errors, and the WSGI server.

Bottle's own default server handles one request at a time, and a POST may wait seconds
for its write concern, so the apps run on waitress: a thread pool (one thread per request
being served; --http-threads, default 512) behind one asynchronous I/O thread that holds
idle keep-alive connections without a thread each.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, NoReturn

import bottle
from loguru import logger
from waitress.server import create_server

from .core.master import ReadOnly
from .core.validate import BadRequest, parse_append, parse_faults
from .replicator import WriteConcernTimeout

if TYPE_CHECKING:
    from .replicator import Master
    from .secondary_node import Secondary


def _json(status: int, body: dict) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(json.dumps(body, ensure_ascii=False), status=status,
                               headers={"Content-Type": "application/json; charset=utf-8"})


def fail(status: int, message: str, **extra: Any) -> NoReturn:
    raise _json(status, {"error": message, **extra})


def json_app() -> bottle.Bottle:
    """A Bottle app whose every error (404, 405, 500, ...) is a JSON object."""
    app = bottle.Bottle(autojson=True)

    def error_body(res: bottle.HTTPError) -> str:
        res.content_type = "application/json; charset=utf-8"
        message = res.body if isinstance(res.body, str) and res.body else res.status_line
        if res.status_code >= 500:
            logger.opt(exception=res.exception).error("HTTP {} {}: {}", bottle.request.method,
                                                      bottle.request.path, res.exception)
        return json.dumps({"error": message})

    app.default_error_handler = error_body
    return app


def read_body(max_body: int) -> bytes:
    """The request body, refusing (413) anything over max_body before it is parsed."""
    env = bottle.request.environ
    try:
        length = int(env.get("CONTENT_LENGTH") or 0)
    except ValueError:
        fail(400, "Content-Length is not a number")
    if length > max_body:
        fail(413, f"body of {length} bytes is over the limit of {max_body}")
    return env["wsgi.input"].read(length) if length > 0 else b""


def _content_type() -> str | None:
    return bottle.request.environ.get("CONTENT_TYPE")


def master_app(master: "Master", max_body: int) -> bottle.Bottle:
    app = json_app()

    @app.post("/messages")
    def post_message():
        started = time.perf_counter()
        try:
            req = parse_append(read_body(max_body), _content_type(), master.cluster_size, max_body)
            result = master.append(req.message, req.w, req.timeout, req.key)
        except BadRequest as e:
            logger.info("POST /messages -> {}: {}", e.status, e.message)
            fail(e.status, e.message)
        except ReadOnly as e:
            logger.info("POST /messages -> 503: {}", e)
            fail(503, f"read-only: {e}")
        except WriteConcernTimeout as e:
            logger.info("POST /messages seq={} -> 504: {}", e.seq, e)
            fail(504, str(e), seq=e.seq, acks=e.acks, w=e.w)
        logger.debug("POST /messages seq={} w={} -> 201 in {:.1f} ms", result["seq"], req.w,
                     (time.perf_counter() - started) * 1000)
        return _json(201, result)

    @app.get("/messages")
    def get_messages():
        return {"messages": master.messages()}

    @app.get("/health")
    def get_health():
        return master.health()

    return app


def secondary_app(secondary: "Secondary", max_body: int) -> bottle.Bottle:
    app = json_app()

    @app.get("/messages")
    def get_messages():
        return {"messages": secondary.messages()}

    @app.get("/health")
    def get_health():
        return secondary.health()

    @app.post("/faults")
    def post_faults():
        try:
            faults = parse_faults(read_body(max_body), _content_type(), max_body)
        except BadRequest as e:
            fail(e.status, e.message)
        return secondary.set_faults(**faults)

    return app


def create_http_server(app: Any, host: str, port: int, threads: int = 512,
                       max_body: int = 1 << 20):
    """A waitress server (call .run(); .effective_port tells the port when port was 0).

    waitress buffers a whole body before the app sees it, so its own hard cap is set well
    above ours: bodies between the two get our JSON 413; beyond it waitress answers 413."""
    return create_server(app, host=host, port=port, threads=threads,
                         connection_limit=max(1000, 2 * threads),
                         max_request_body_size=max(16 * max_body, 16 << 20),
                         asyncore_use_poll=True, channel_timeout=300, ident="replog",
                         clear_untrusted_proxy_headers=True)
