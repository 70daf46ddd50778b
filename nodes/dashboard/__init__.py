"""The live dashboard the master serves at GET /: one page, plain HTML, CSS and JS from this
package (no build step, nothing fetched from elsewhere), and the JSON it polls.

    GET  /                    the page (static/index.html)
    GET  /dashboard/FILE      its script and style sheet
    GET  /cluster?after=ID    health, quorum, every node's tail, events after ID
    POST /cluster/faults      {"secondary": NAME, "delay": s, "error_rate": r}: set a
                              secondary's injected faults (403 unless both the master and that
                              secondary run with --allow-faults)

The browser talks to the master only (in Docker only HTTP ports are published, and the
master does not know the secondaries' HTTP addresses). The master reads each secondary's
tail over Pyro5 with SecondaryAPI.tail() (tails.py): one loop per secondary the master knows
now, owning its proxy, one call per TAIL_INTERVAL at most, each with a timeout, and only
while a page has asked for /cluster in the last WATCH_FOR seconds. With no page open the
dashboard costs nothing.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

import bottle

from .. import rpc
from ..events import FEED, add_event
from ..core.validate import BadRequest, check_faults
from ..httpjson import dumps, fail, read_body
from .tails import TAIL, TAIL_INTERVAL, TAIL_TIMEOUT, WATCH_FOR, MasterPeers, Tails

__all__ = ["Tails", "cluster_view", "add_routes", "TAIL", "TAIL_INTERVAL", "TAIL_TIMEOUT",
           "WATCH_FOR"]

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"app.js": "application/javascript; charset=utf-8",
         "style.css": "text/css; charset=utf-8"}
FAULTS_TIMEOUT = 3.0   # timeout of the set_faults() call forwarded to a secondary


class MasterView(MasterPeers, Protocol):
    """What the dashboard reads of the master (nodes.master.Master), typed here so that
    the dashboard imports neither nodes.master nor nodes.web."""

    def health(self) -> dict: ...

    def snapshot(self) -> tuple[list[str], int]: ...


def _secondary(t: dict | None, now: float) -> dict:
    """One secondary's entry in /cluster. Before its first tail() answer (t None) it is
    the same shape, with an empty tail and loading true, so a page draws it at once."""
    t = t or {}
    return {"ack": t.get("ack"), "tail": t.get("tail", []), "held": t.get("held", []),
            "held_back": t.get("held_back", 0), "delay": t.get("delay", 0.0),
            "error_rate": t.get("error_rate", 0.0), "allow_faults": t.get("allow_faults", False),
            "incarnation": t.get("incarnation"), "age": round(now - t["at"], 3) if "at" in t else None,
            "error": t.get("error"), "loading": not t}


def cluster_view(master: MasterView, tails: Tails, after: int, allow_faults: bool) -> dict:
    """Everything the page shows, as one JSON object."""
    health = master.health()
    entries, count = master.snapshot()
    first = max(1, count - TAIL + 1)
    master_tail = [[seq, entries[seq - 1][:200]] for seq in range(first, count + 1)]
    names = list(health["secondaries"])
    tails.watch(names)
    now = time.time()
    latest = tails.latest
    secondaries = {name: _secondary(latest.get(name), now) for name in names}
    return {"time": now, "health": health, "allow_faults": allow_faults,
            "tails": {"master": master_tail, "secondaries": secondaries},
            "events": FEED.since(after), "last_event": FEED.last_id}


def add_routes(app: bottle.Bottle, master: MasterView, allow_faults: bool) -> Tails:
    tails = Tails(master)

    @app.get("/")
    def page():
        bottle.response.content_type = "text/html; charset=utf-8"
        return (STATIC / "index.html").read_bytes()

    @app.get("/dashboard/<name>")
    def static(name: str):
        if name not in FILES:
            fail(404, f"no such file: {name}")
        bottle.response.content_type = FILES[name]
        bottle.response.set_header("Cache-Control", "no-cache")
        return (STATIC / name).read_bytes()

    @app.get("/cluster")
    def cluster():
        text = bottle.request.query.get("after", "0")
        try:
            after = int(text)
        except ValueError:
            fail(400, f"'after' must be an integer event id, got {text!r}")
        bottle.response.content_type = "application/json; charset=utf-8"
        return dumps(cluster_view(master, tails, after, allow_faults))

    @app.post("/cluster/faults")
    def faults():
        if not allow_faults:
            fail(403, "fault injection is off: start the master with --allow-faults "
                      "(REPLOG_ALLOW_FAULTS=1)")
        body = read_body(4096)
        try:
            req = json.loads(body)
        except ValueError:
            fail(400, "body is not JSON")
        if not isinstance(req, dict) or not isinstance(req.get("secondary"), str):
            fail(400, "body must be {\"secondary\": NAME, \"delay\": s, \"error_rate\": r}")
        try:
            values = check_faults({k: v for k, v in req.items() if k != "secondary"})
        except BadRequest as e:
            fail(400, e.message)
        name = req["secondary"]
        uri = tails.uri(name)
        if uri is None:
            fail(404, f"no secondary named {name!r} is known to the master")
        proxy = rpc.proxy(uri, FAULTS_TIMEOUT)   # this request's own proxy
        try:
            result = proxy.set_faults(values.get("delay"), values.get("error_rate"))
        except PermissionError as e:
            fail(403, f"{name}: {e}")
        except Exception as e:
            fail(502, f"{name} did not answer: {type(e).__name__}: {e}")
        finally:
            proxy._pyroRelease()
        add_event("faults", f"{name}: delay={result['delay']:g} s, "
                            f"error_rate={result['error_rate']:g}")
        return result

    return tails
