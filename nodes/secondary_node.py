"""A secondary: keeps a replica of the master's log and shows its gap-free prefix.

    python -m nodes.secondary_node --name secondary1 --http-port 5001 [--delay 2]
"""
from __future__ import annotations

if __name__ == "__main__":
    # Run as a node: make threads, locks and sockets cooperative (gevent) before anything
    # else imports them. Importing this module (tests do) patches nothing.
    from gevent import monkey
    monkey.patch_all()

import random
import threading
import time
import uuid
from typing import Callable

import Pyro5.api
from loguru import logger

from . import logs, rpc
from .config import Parser, add_common
from .core.log import ReplicaLog
from .core.validate import BadRequest, check_messages
from .serve import log_config, run_node
from .web import secondary_app


class Secondary:
    """The secondary's service: a ReplicaLog under a lock, plus fault injection."""

    def __init__(self, name: str, delay: float = 0.0, error_rate: float = 0.0,
                 rand: Callable[[], float] = random.random,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = name
        self.instance = uuid.uuid4().hex   # a restart is a new incarnation with an empty log
        self.delay = delay
        self.error_rate = error_rate
        self.log = ReplicaLog()
        self.lock = threading.Lock()
        self._rand = rand
        self._sleep = sleep

    def _adopt(self, log_id: object) -> None:
        if not isinstance(log_id, str):
            raise ValueError("log_id must be a string")
        if self.log.adopt(log_id):
            logger.warning("master's log changed to {}: starting afresh", log_id)

    def replicate(self, log_id: str, first_seq: int, messages: list[str]) -> dict:
        if isinstance(first_seq, bool) or not isinstance(first_seq, int) or first_seq < 1:
            raise ValueError("first_seq must be a positive integer")
        try:
            messages = check_messages(messages)
        except BadRequest as e:
            raise ValueError(e.message) from None
        if self.delay > 0:
            self._sleep(self.delay)
        with self.lock:
            self._adopt(log_id)
            result = self.log.store(first_seq, messages)
        logger.debug("replicate seq={}..{} stored={} duplicates={} ack={}", first_seq,
                     first_seq + len(messages) - 1, result.stored, result.duplicates, result.ack)
        if self.error_rate > 0 and self._rand() < self.error_rate:
            logger.debug("injected error after storing seq={}..{}", first_seq,
                         first_seq + len(messages) - 1)
            raise RuntimeError("injected error (the messages were stored; the ACK is withheld)")
        return {"instance": self.instance, "ack": result.ack}

    def heartbeat(self, log_id: str) -> dict:
        with self.lock:
            self._adopt(log_id)
            return {"instance": self.instance, "ack": self.log.ack}

    def messages(self) -> list[str]:
        with self.lock:
            return self.log.messages()

    def health(self) -> dict:
        with self.lock:
            return {"role": "secondary", "name": self.name, "messages": self.log.ack,
                    "held_back": self.log.held_back, "delay": self.delay,
                    "error_rate": self.error_rate, "instance": self.instance}

    def set_faults(self, delay: float | None = None, error_rate: float | None = None) -> dict:
        if delay is not None:
            self.delay = float(delay)
        if error_rate is not None:
            self.error_rate = float(error_rate)
        logger.info("faults set: delay={} error_rate={}", self.delay, self.error_rate)
        return {"delay": self.delay, "error_rate": self.error_rate}


@Pyro5.api.expose
@Pyro5.api.behavior(instance_mode="single")
class SecondaryAPI:
    """What the master (and curious clients) call over Pyro5."""

    def __init__(self, secondary: Secondary) -> None:
        self._s = secondary

    def replicate(self, log_id: str, first_seq: int, messages: list[str]) -> dict:
        """Store messages[i] at seq first_seq+i; the ACK is the highest gap-free seq."""
        return self._s.replicate(log_id, first_seq, messages)

    def heartbeat(self, log_id: str) -> dict:
        return self._s.heartbeat(log_id)

    def messages(self) -> list[str]:
        return self._s.messages()

    def health(self) -> dict:
        return self._s.health()

    def set_faults(self, delay: float | None = None, error_rate: float | None = None) -> dict:
        if delay is not None and not (isinstance(delay, (int, float)) and 0 <= delay <= 3600):
            raise ValueError("delay must be a number of seconds from 0 to 3600")
        if error_rate is not None and not (isinstance(error_rate, (int, float))
                                           and 0 <= error_rate <= 1):
            raise ValueError("error_rate must be from 0 to 1")
        return self._s.set_faults(delay, error_rate)


def parser() -> Parser:
    p = Parser(prog="python -m nodes.secondary_node",
               description="A secondary of the replicated log: registers in the Pyro5 name "
                           "server as replog.secondary.NAME, stores what the master "
                           "replicates, serves GET /messages and GET /health over HTTP.")
    p.flag("--name", default="secondary1", help="this secondary's name")
    p.flag("--http-port", type=int, default=5001, help="HTTP port (0: any free)")
    p.flag("--delay", type=float, default=0.0,
           help="seconds every replicate call sleeps before it stores and ACKs")
    p.flag("--error-rate", type=float, default=0.0,
           help="probability that a replicate call answers with an error after storing")
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not 0 <= args.error_rate <= 1 or args.delay < 0:
        parser().error("--error-rate must be in [0, 1] and --delay >= 0")
    logs.setup(args.name, args.log_level)
    log_config(args)
    secondary = Secondary(args.name, args.delay, args.error_rate)
    run_node(args, SecondaryAPI(secondary), rpc.SECONDARY_PREFIX + args.name,
             secondary_app(secondary, args.max_body))


if __name__ == "__main__":
    main()
