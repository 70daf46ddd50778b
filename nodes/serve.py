"""What both node entry points share: start Pyro5 + HTTP, register, stop cleanly."""
from __future__ import annotations

import signal
import threading
from typing import Any

import gevent
import Pyro5.api
from loguru import logger

from . import rpc, tls
from .web import create_http_server


def configure_rpc(args: Any, pyro_name: str) -> None:
    """Pyro5's process-wide settings, TLS included: first thing in a node, before any proxy
    is made. With TLS, the certificate must be the one of the node we are (pyro_name)."""
    cert = rpc.configure(args.max_connections, args.tls_dir)
    if args.tls_dir and cert != tls.owner_of(pyro_name):
        raise SystemExit(f"--tls-dir {args.tls_dir} holds the certificate of {cert!r}; "
                         f"{pyro_name} needs the one of {tls.owner_of(pyro_name)!r}")


def run_node(args: Any, obj: Any, pyro_name: str, app: Any, on_stop: Any = None) -> None:
    """Serve `obj` over Pyro5 (registered as pyro_name) and `app` over HTTP until
    SIGTERM/SIGINT, then unregister and stop. Blocks. Expects a gevent-patched process
    whose Pyro5 settings configure_rpc() made."""
    ns = rpc.locate_ns(args.ns_host, args.ns_port, timeout=5.0, wait=args.ns_wait)
    daemon = rpc.make_daemon(args.host, args.pyro_port, args.advertise_host)
    uri = daemon.register(obj, objectId=pyro_name)
    ns.register(pyro_name, uri, safe=False)
    logger.info("registered {} as {}", pyro_name, uri)
    pyro_thread = threading.Thread(target=daemon.requestLoop, name="pyro", daemon=True)
    pyro_thread.start()
    stop = threading.Event()
    threading.Thread(target=_keep_registered, args=(args, pyro_name, str(uri), stop),
                     name="registration", daemon=True).start()

    server = create_http_server(app, args.host, args.http_port, args.max_connections,
                                args.max_body)
    logger.info("HTTP on http://{}:{}", args.host, server.effective_port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, server.stop)
    try:
        server.run()   # returns once SIGTERM/SIGINT closed it
    finally:
        logger.info("stopping")
        stop.set()
        try:
            ns = rpc.locate_ns(args.ns_host, args.ns_port, timeout=2.0)
            registered = ns.list(prefix=pyro_name).get(pyro_name)
            if registered == str(uri):   # do not remove a newer incarnation's entry
                ns.remove(pyro_name)
        except Exception as e:
            logger.warning("could not unregister from the name server: {}", e)
        if on_stop is not None:
            on_stop()
        daemon.shutdown()


def _keep_registered(args: Any, pyro_name: str, uri: str, stop: threading.Event,
                     interval: float = 2.0) -> None:
    """Register again when the name server lost our entry (it restarted: it keeps its
    registrations in memory). An entry naming another URI is left alone: that is a newer
    process of the same name."""
    ns = None
    while not stop.wait(interval):
        try:
            ns = ns or rpc.locate_ns(args.ns_host, args.ns_port, timeout=5.0)
            if pyro_name not in ns.list(prefix=pyro_name):
                ns.register(pyro_name, uri, safe=False)
                logger.warning("the name server had lost {}: registered again as {}",
                               pyro_name, uri)
        except Exception as e:
            logger.debug("name server check failed: {}", e)
            ns = None


def log_config(args: Any) -> None:
    logger.info("starting with {}", ", ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))


def locate_ns_factory(args: Any):
    def factory() -> Pyro5.api.Proxy:
        return rpc.locate_ns(args.ns_host, args.ns_port, timeout=5.0)
    return factory
