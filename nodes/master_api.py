"""The master's Pyro5 face (served by nodes/master_node.py, or by a failover node while it is
master): Proxy("PYRONAME:replog.master").append("text", 2)."""
from __future__ import annotations

import Pyro5.api

from .core.concern import WriteConcernTimeout
from .core.master import ReadOnly
from .core.validate import BadRequest, check_append, check_messages, check_timeout, check_w
from .master import Master


@Pyro5.api.expose
@Pyro5.api.behavior(instance_mode="single")
class MasterAPI:
    """The client API over Pyro5: Proxy("PYRONAME:replog.master").append("text", 2).

    Errors arrive as builtin exceptions: ValueError (bad input), PermissionError (read-only:
    no quorum), TimeoutError (write concern not met within `timeout`)."""

    def __init__(self, master: Master) -> None:
        self._m = master

    def append(self, message: str, w: int | None = None, timeout: float | None = None,
               id: str | None = None) -> dict:
        try:
            req = check_append(message, w, self._m.cluster_size, timeout, id)
        except BadRequest as e:
            raise ValueError(e.message) from None
        return _call(self._m.append, req.message, req.w, req.timeout, req.key)

    def append_many(self, messages: list[str], w: int | None = None,
                    timeout: float | None = None) -> dict:
        try:
            messages = check_messages(messages)
            w = check_w(w, self._m.cluster_size)
            timeout = check_timeout(timeout)
        except BadRequest as e:
            raise ValueError(e.message) from None
        return _call(self._m.append_many, messages, w, timeout)

    def messages(self) -> list[str]:
        return self._m.messages()

    def health(self) -> dict:
        return self._m.health()


def _call(fn, *args):
    try:
        return fn(*args)
    except ReadOnly as e:
        raise PermissionError(f"read-only: {e}") from None
    except WriteConcernTimeout as e:
        raise TimeoutError(f"seq={e.seq}: {e}") from None
