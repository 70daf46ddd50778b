"""Bottle helpers for JSON answers, shared by the HTTP edge (nodes.web) and the dashboard.

A module of its own so that the dashboard needs neither nodes.web nor the replicator: web
imports the dashboard to add its routes, and an import back would be a cycle.
"""
from __future__ import annotations

import json
from typing import Any, NoReturn

import bottle


def dumps(body: Any) -> str:
    """A JSON answer's text: UTF-8 as it is, and a newline at the end (a shell prompt after
    `curl` starts on its own line; line-oriented tools read one answer per line)."""
    return json.dumps(body, ensure_ascii=False) + "\n"


def _json(status: int, body: dict) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(dumps(body), status=status,
                               headers={"Content-Type": "application/json; charset=utf-8"})


def fail(status: int, message: str, **extra: Any) -> NoReturn:
    note(" ".join([f"{k}={v}" for k, v in extra.items()] + [message]))
    raise _json(status, {"error": message, **extra})


def note(text: str) -> None:
    """Add a detail (seq, error) to this request's access-log line."""
    bottle.request.environ["replog.note"] = text


def read_body(max_body: int) -> bytes:
    """The request body, refusing (413) anything over max_body before it is parsed."""
    env = bottle.request.environ
    if not env.get("CONTENT_LENGTH"):       # chunked: read at most one byte over the cap
        body = env["wsgi.input"].read(max_body + 1)
        if len(body) > max_body:
            fail(413, f"body is over the limit of {max_body} bytes")
        return body
    try:
        length = int(env["CONTENT_LENGTH"])
    except ValueError:
        fail(400, "Content-Length is not a number")
    if length > max_body:
        fail(413, f"body of {length} bytes is over the limit of {max_body}")
    return env["wsgi.input"].read(length) if length > 0 else b""
