"""Validation of client requests: every bad input gets a status and a sentence."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

MAX_KEY_LENGTH = 256
FIELDS = ("message", "messages", "w", "timeout", "id")


class BadRequest(Exception):
    """extra: more fields of the JSON error (a batch's bad element: its "index")."""

    def __init__(self, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass(frozen=True)
class AppendRequest:
    message: str
    w: int
    timeout: float | None = None
    key: str | None = None


@dataclass(frozen=True)
class BatchRequest:
    """POST /messages with "messages": all of them or none, one wait on the last seq."""
    messages: list[str]
    w: int
    timeout: float | None = None
    key: str | None = None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_w(w: object, cluster_size: int) -> int:
    if w is None:
        return cluster_size
    if not _is_int(w):
        raise BadRequest(f"'w' must be an integer, got {type(w).__name__}")
    if not 1 <= w <= cluster_size:
        raise BadRequest(f"'w' must be between 1 and the cluster size {cluster_size}, got {w}")
    return w


def check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if not (_is_int(timeout) or isinstance(timeout, float)) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise BadRequest("'timeout' must be a positive number of seconds")
    return float(timeout)


def check_append(message: object, w: object, cluster_size: int, timeout: object = None,
                 key: object = None) -> AppendRequest:
    if not isinstance(message, str):
        raise BadRequest("'message' must be a string" if message is not None
                         else "'message' is required")
    return AppendRequest(message, check_w(w, cluster_size), check_timeout(timeout),
                         check_key(key))


def check_key(key: object) -> str | None:
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH):
        raise BadRequest(f"'id' must be a non-empty string of at most {MAX_KEY_LENGTH} characters")
    return key


def check_batch(messages: object, max_batch: int) -> list[str]:
    """A batch over HTTP: a non-empty list of strings, at most max_batch of them; a bad
    element is named by its index."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of strings")
    if len(messages) > max_batch:
        raise BadRequest(f"{len(messages)} messages in one request are over the limit of "
                         f"{max_batch} (--max-batch)", 413)
    for index, message in enumerate(messages):
        if not isinstance(message, str):
            raise BadRequest(f"'messages'[{index}] must be a string, got "
                             f"{type(message).__name__}", index=index)
    return messages


def check_messages(messages: object) -> list[str]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise BadRequest("'messages' must be a non-empty list of strings")
    if not all(isinstance(m, str) for m in messages):
        raise BadRequest("every message must be a string")
    return list(messages)


def parse_json_object(body: bytes, content_type: str | None, max_body: int) -> dict:
    """Decode a JSON object body, or raise BadRequest (413 when it is too large)."""
    if len(body) > max_body:
        raise BadRequest(f"body of {len(body)} bytes is over the limit of {max_body}", 413)
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise BadRequest(f"Content-Type must be application/json, got {media or 'none'!r}")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("body is not valid UTF-8") from None
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def parse_append(body: bytes, content_type: str | None, cluster_size: int,
                 max_body: int, max_batch: int = 10_000) -> AppendRequest | BatchRequest:
    """POST /messages: one message ("message") or a batch ("messages"), not both."""
    data = parse_json_object(body, content_type, max_body)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: {list(FIELDS)}")
    if "messages" not in data:
        return check_append(data.get("message"), data.get("w"), cluster_size,
                            data.get("timeout"), data.get("id"))
    if "message" in data:
        raise BadRequest("give either 'message' or 'messages', not both")
    return BatchRequest(check_batch(data["messages"], max_batch),
                        check_w(data.get("w"), cluster_size),
                        check_timeout(data.get("timeout")), check_key(data.get("id")))


FAULT_BOUNDS = {"delay": 3600.0, "error_rate": 1.0}   # a secondary's injected faults: 0..top


def check_faults(values: dict[str, Any]) -> dict[str, float]:
    """Injected faults, wherever they come from (HTTP, the dashboard, Pyro5, flags):
    {"delay": seconds, "error_rate": probability}; None values are left out."""
    unknown = sorted(set(values) - set(FAULT_BOUNDS))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: {sorted(FAULT_BOUNDS)}")
    out: dict[str, float] = {}
    for name, top in FAULT_BOUNDS.items():
        value = values.get(name)
        if value is None:
            continue
        if not (_is_int(value) or isinstance(value, float)) or not 0 <= value <= top:
            raise BadRequest(f"'{name}' must be a number from 0 to {top:g}")
        out[name] = float(value)
    return out


def parse_faults(body: bytes, content_type: str | None, max_body: int) -> dict[str, float]:
    """Body of a secondary's POST /faults: {"delay": seconds, "error_rate": 0..1}."""
    return check_faults(parse_json_object(body, content_type, max_body))
