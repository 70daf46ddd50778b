"""Pyro5 plumbing shared by every node: settings, daemons, name-server access, proxies."""
from __future__ import annotations

import socket
import time

import Pyro5.api
from Pyro5 import config as pyro_config
import Pyro5.errors
from loguru import logger

MASTER_NAME = "replog.master"
SECONDARY_PREFIX = "replog.secondary."
# Between nodes: marshal is the fastest serializer Pyro5 has for lists of strings.
NODE_SERIALIZER = "marshal"


def configure(threadpool_size: int = 80) -> None:
    """Process-wide Pyro5 settings. Remote-call timeouts are set per proxy, not here."""
    pyro_config.SERVERTYPE = "thread"
    pyro_config.THREADPOOL_SIZE = threadpool_size
    pyro_config.SOCK_NODELAY = True   # small replies must not wait for Nagle's algorithm
    pyro_config.DETAILED_TRACEBACK = False


def advertised_host(bind_host: str, advertise_host: str) -> str | None:
    """The address other nodes should use for us; None when it is simply the bind address."""
    if advertise_host:
        return advertise_host
    if bind_host in ("0.0.0.0", "::", ""):
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return None


def make_daemon(host: str, port: int, advertise_host: str) -> Pyro5.api.Daemon:
    nat = advertised_host(host, advertise_host)
    if nat:
        return Pyro5.api.Daemon(host=host, port=port, nathost=nat, natport=0)
    return Pyro5.api.Daemon(host=host, port=port)


def proxy(uri: str, timeout: float, serializer: str | None = NODE_SERIALIZER) -> Pyro5.api.Proxy:
    """A proxy with a timeout on every call. A proxy belongs to the thread that uses it."""
    p = Pyro5.api.Proxy(uri)
    p._pyroTimeout = timeout
    if serializer:
        p._pyroSerializer = serializer
    return p


def locate_ns(host: str, port: int, timeout: float, wait: float = 0.0) -> Pyro5.api.Proxy:
    """Find the name server, retrying for up to `wait` seconds (it may start after us)."""
    deadline = time.monotonic() + wait
    delay = 0.1
    while True:
        try:
            ns = Pyro5.api.locate_ns(host=host, port=port)
            ns._pyroTimeout = timeout
            ns.ping()
            return ns
        except Pyro5.errors.PyroError as e:
            if time.monotonic() >= deadline:
                raise
            logger.info("name server {}:{} not reachable yet ({}); retrying", host, port, e)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
