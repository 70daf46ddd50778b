"""The secondary's Pyro5 face (moved out of nodes/secondary_node.py, which re-exports it):
who may call what, and checks of the arguments that come over the wire."""
from __future__ import annotations

from typing import Any

import Pyro5.api

from . import tls
from .core.validate import BadRequest, check_faults


@Pyro5.api.expose
@Pyro5.api.behavior(instance_mode="single")
class SecondaryAPI:
    """What the master (and curious clients) call over Pyro5."""

    # who may call the master's methods (with TLS): the master; a failover cluster's nodes
    _masters: str | frozenset[str] = tls.MASTER

    def __init__(self, secondary: Any) -> None:   # nodes.secondary.Secondary
        self._s = secondary

    def replicate(self, log_id: str, epoch: int, first_seq: int, messages: list[str],
                  leader: dict | None = None, keys: dict | None = None) -> dict:
        """Store messages[i] at seq first_seq+i; the ACK is the highest gap-free seq. Only
        for the log and epoch this secondary synced with. leader (failover): the calling
        master's epoch, name, HTTP URL and commit; keys: the idempotency keys of some of
        the messages, by their index (as text), kept for when this node becomes master."""
        tls.require_caller(self._masters, "replicate")
        return self._s.replicate(log_id, epoch, first_seq, messages, leader, keys)

    def sync(self, log_id: str, history: list, last_seq: int, new_log: bool = False,
             leader: dict | None = None) -> dict:
        """Keep the prefix shared with the master's log (log_id, epoch history, length)."""
        tls.require_caller(self._masters, "sync")
        return self._s.sync(log_id, history, last_seq, new_log, leader)

    def heartbeat(self, log_id: str | None = None, epoch: int | None = None,
                  leader: dict | None = None) -> dict:
        tls.require_caller(self._masters, "heartbeat")
        return self._s.heartbeat(log_id, epoch, leader)

    def history(self) -> dict:
        tls.require_caller(self._masters, "history")
        return self._s.history()

    def read(self, log_id: str, first_seq: int, limit: int) -> list[str]:
        tls.require_caller(self._masters, "read")
        return self._s.read(log_id, first_seq, limit)

    def messages(self) -> list[str]:
        return self._s.messages()

    def health(self) -> dict:
        return self._s.health()

    def tail(self, count: int = 20) -> dict:
        """The last messages with their seq, and the seqs held back (the dashboard's)."""
        return self._s.tail(count)

    def set_faults(self, delay: float | None = None, error_rate: float | None = None) -> dict:
        tls.require_caller(self._masters, "set_faults")
        if not self._s.allow_faults:
            raise PermissionError("fault injection is off: start the secondary with "
                                  "--allow-faults (REPLOG_ALLOW_FAULTS=1)")
        try:
            faults = check_faults({"delay": delay, "error_rate": error_rate})
        except BadRequest as e:
            raise ValueError(e.message) from None
        return self._s.set_faults(faults.get("delay"), faults.get("error_rate"))
