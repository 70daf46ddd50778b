"""What every part of the benchmark shares: paths, logging, HTTP and polling helpers.

A leaf module: it imports nothing from bench, so any module may import it (see the import
layers in bench/README.md).
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


REPO = Path(__file__).resolve().parent.parent
SECONDARIES = ("s1", "s2")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def http_json(url: str, method: str = "GET", body: dict | None = None, timeout: float = 5.0):
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, u.path or "/", body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


def poll(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling through transient errors
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" ({last_exc!r})" if last_exc else ""))


def fmt_num(x, nd=0) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and x != x:  # NaN
        return "-"
    return f"{x:,.{nd}f}"


def parse_flags(items: list[str]) -> dict:
    """--master-flag / --secondary-flag values (name=value) as keyword arguments."""
    out = {}
    for item in items or []:
        k, _, v = item.partition("=")
        k = k.strip().lstrip("-").replace("-", "_")
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out
