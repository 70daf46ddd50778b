"""What a failover node serves, whatever its role: three Pyro5 objects in one daemon and one
HTTP front.

    replog.node.NAME       NodeAPI: vote requests and the node's election state; always
                           registered (other nodes find each other by it)
    replog.secondary.NAME  the Secondary's API while the node is a secondary (registered then)
    replog.master          the Master's API while the node is master (registered then); on a
                           node that is not, every call raises PermissionError naming the
                           master
HTTP: the current role's app; a write to a secondary gets 307 to the master's /messages
(curl -L follows it) or, while no master is known, 503 with Retry-After."""
from __future__ import annotations

import json
from typing import Any, Callable

import Pyro5.api

from .. import tls

from ..master_api import MasterAPI
from ..secondary_api import SecondaryAPI
from .node import FailoverNode, _mastering


def _check_ballot(candidate: str, what: str, *numbers: Any) -> None:
    tls.require_caller(candidate, what)
    for value in numbers:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("epoch, last_epoch and length must be integers from 0 on")


@Pyro5.api.expose
@Pyro5.api.behavior(instance_mode="single")
class NodeAPI:
    def __init__(self, node: FailoverNode) -> None:
        self._n = node

    def vote(self, epoch: int, candidate: str, last_epoch: int, length: int) -> dict:
        """Grant or refuse this node's vote in `epoch` to `candidate`, whose log ends with an
        entry of `last_epoch` at seq `length`; {"ignored": True} while it hears a master.
        With TLS only the candidate itself may ask."""
        _check_ballot(candidate, "vote", epoch, last_epoch, length)
        return self._n.vote(epoch, candidate, last_epoch, length)

    def prevote(self, epoch: int, candidate: str, last_epoch: int, length: int) -> dict:
        """Would this node vote for `candidate` in `epoch` (a pre-vote: nothing changes
        here)? {"granted": bool, "epoch": this node's epoch}; {"ignored": True} while it
        hears a master. With TLS only the candidate itself may ask."""
        _check_ballot(candidate, "prevote", epoch, last_epoch, length)
        return self._n.prevote(epoch, candidate, last_epoch, length)

    def status(self) -> dict:
        return self._n.report()


@Pyro5.api.expose
@Pyro5.api.behavior(instance_mode="single")
class SecondaryFacade(SecondaryAPI):
    def __init__(self, node: FailoverNode) -> None:   # noqa: D107 (no super: _s is computed)
        self._node = node
        self._masters = frozenset(node.cluster.nodes)   # whichever of them is master

    @property
    def _s(self) -> Any:
        role = self._node.role
        if _mastering(role):
            raise PermissionError(f"{self._node.name} is the master now, not a secondary")
        return role

    def heartbeat(self, log_id: str | None = None, epoch: int | None = None,
                  leader: dict | None = None) -> dict:
        if leader is not None and _mastering(self._node.role):
            # stepping down: the election must hear the new master meanwhile, or it would
            # stand (and depose that master) before this node is its secondary
            self._node.check(leader)
        return super().heartbeat(log_id, epoch, leader)


@Pyro5.api.expose
@Pyro5.api.behavior(instance_mode="single")
class MasterFacade(MasterAPI):
    def __init__(self, node: FailoverNode) -> None:   # noqa: D107
        self._node = node

    @property
    def _m(self) -> Any:
        role = self._node.role
        if not _mastering(role):
            r = self._node.report()
            raise PermissionError(f"{self._node.name} is not the master: the master of epoch "
                                  f"{r['epoch']} is {r['master'] or 'being elected'}"
                                  + (f" ({r['master_url']})" if r["master"] else ""))
        return role


def _answer(start_response: Callable, status: str, body: dict,
            headers: list[tuple[str, str]]) -> list[bytes]:
    data = (json.dumps(body) + "\n").encode()
    start_response(status, [("Content-Type", "application/json; charset=utf-8"),
                            ("Content-Length", str(len(data))), *headers])
    return [data]


class Front:
    """The node's WSGI app: the current role's, built once per role object."""

    def __init__(self, node: FailoverNode, app_for: Callable[[Any], Any]) -> None:
        self.node, self._app_for = node, app_for
        self._role: Any = None
        self._app: Any = None
        self.replog_on_stop: list[Callable[[], None]] = [self._stop_current]

    def _stop_current(self) -> None:
        for fn in getattr(self._app, "replog_on_stop", ()):
            fn()

    def app(self) -> Any:
        role = self.node.role
        if role is not self._role:
            self._stop_current()     # held reads of the old role end; clients come back
            self._role, self._app = role, self._app_for(role)
        return self._app

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        app = self.app()
        if not _mastering(self._role):
            path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
            if path == "/messages" and method == "POST":
                return self._to_master(environ, start_response)
            if method == "GET" and (path in ("/", "/cluster") or path.startswith("/dashboard/")):
                return self._to_master(environ, start_response)    # the master's dashboard
        return app(environ, start_response)

    def _to_master(self, environ: dict, start_response: Callable) -> list[bytes]:
        r = self.node.report()
        if r["master"] and r["master"] != self.node.name and r["master_url"]:
            location = r["master_url"].rstrip("/") + environ.get("PATH_INFO", "/messages")
            if environ.get("QUERY_STRING"):
                location += "?" + environ["QUERY_STRING"]
            environ["replog.note"] = f"307 to {r['master']}"
            return _answer(start_response, "307 Temporary Redirect",
                           {"error": f"{self.node.name} is a secondary: writes (and the "
                                     f"dashboard) are at the master {r['master']} of epoch "
                                     f"{r['epoch']}",
                            "master": r["master"], "master_url": r["master_url"],
                            "epoch": r["epoch"]}, [("Location", location)])
        environ["replog.note"] = "503: no master known"
        return _answer(start_response, "503 Service Unavailable",
                       {"error": "no master is known: an election is under way; retry",
                        "epoch": r["epoch"]}, [("Retry-After", "1")])
