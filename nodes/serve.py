"""What both node entry points share: bind Pyro5 + HTTP, check the name server, register,
serve, stop cleanly.

Start-up order matters: a node first binds both its ports (a port in use ends it before it
touched the cluster), then finds the name server (giving up after --ns-wait with one line
that says what to start), then refuses to start when its name is registered to a node that
still answers; only then does it start its service (`on_bound`) and register."""
from __future__ import annotations

import signal
import threading
from typing import Any, Callable, NoReturn

import gevent
import Pyro5.api
import Pyro5.errors
from loguru import logger

from . import auth, edge, rpc, tls, tokens
from .web import create_http_server

PING_TIMEOUT = 1.0   # how long a registered node has to answer before its entry counts as stale


def configure_rpc(args: Any, pyro_name: str) -> None:
    """Pyro5's process-wide settings, TLS included: first thing in a node, before any proxy
    is made. With TLS, the certificate must be the one of the node we are (pyro_name)."""
    cert = rpc.configure(args.max_connections, args.tls_dir)
    if args.tls_dir and cert != tls.owner_of(pyro_name):
        raise SystemExit(f"--tls-dir {args.tls_dir} holds the certificate of {cert!r}; "
                         f"{pyro_name} needs the one of {tls.owner_of(pyro_name)!r}")


def fatal(message: str, *args: Any) -> NoReturn:
    """One clear line in the log, exit status 1, no traceback."""
    logger.error("cannot start: " + message, *args)
    raise SystemExit(1)


class _StopBeforeServing(SystemExit):
    """SIGTERM/SIGINT before the node serves: exit status 0, logged by run_node."""

    def __init__(self, signame: str) -> None:
        super().__init__(0)
        self.signame = signame


def _stop_before_serving(signum: int, frame: Any) -> None:
    # explicit, because a shell starting us in the background may have ignored SIGINT.
    # Nothing logged here: the signal may land while this thread is inside a loguru call,
    # whose handler lock then refuses (RuntimeError, "deadlock avoided") a second entry.
    raise _StopBeforeServing(signal.Signals(signum).name)


def answers(uri: str, timeout: float = PING_TIMEOUT) -> bool:
    """Does the Pyro5 object at `uri` answer (connect + handshake) within `timeout`?"""
    try:
        with rpc.proxy(uri, timeout, serializer=None) as p:
            p._pyroBind()
        return True
    except Pyro5.errors.PyroError:
        return False
    except OSError:
        return False


def run_node(args: Any, obj: Any, pyro_name: str, app: Any, on_stop: Any = None,
             on_bound: Callable[[], None] | None = None,
             on_registered: Callable[[Any, str], None] | None = None) -> None:
    """_serve (below), which a SIGTERM or SIGINT before serving ends with exit status 0."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_before_serving)
    try:
        _serve(args, obj, pyro_name, app, on_stop, on_bound, on_registered)
    except _StopBeforeServing as e:
        logger.info("stopping before serving ({})", e.signame)
        raise SystemExit(0) from None


def _serve(args: Any, obj: Any, pyro_name: str, app: Any, on_stop: Any,
           on_bound: Callable[[], None] | None,
           on_registered: Callable[[Any, str], None] | None) -> None:
    """Serve `obj` over Pyro5 (registered as pyro_name) and `app` over HTTP until
    SIGTERM/SIGINT, then unregister and stop. Blocks. Expects a gevent-patched process.
    `on_bound` (the master's start-up) runs once the ports are bound and the name is free,
    before the node registers and answers HTTP (args.bound_http_port then says the HTTP
    port); `on_registered(daemon, uri)` once registered (failover: its role's names)."""
    app, context, timeouts = client_plane(args, app)
    try:
        server = create_http_server(app, args.host, args.http_port, args.max_connections,
                                    args.max_body, ssl_context=context, timeouts=timeouts)
    except OSError as e:
        fatal("HTTP port {}:{} is not available ({}): another process listens there; "
              "choose another with --http-port", args.host, args.http_port,
              e.strerror or e)
    plain = None
    if context is not None and getattr(args, "plain_http_port", None) is not None:
        try:
            plain = create_http_server(app, args.host, args.plain_http_port,
                                       args.max_connections, args.max_body, timeouts=timeouts)
        except OSError as e:
            fatal("--plain-http-port {}:{} is not available ({})", args.host,
                  args.plain_http_port, e.strerror or e)
    try:
        daemon = rpc.make_daemon(args.host, args.pyro_port, args.advertise_host)
    except (OSError, Pyro5.errors.CommunicationError) as e:
        fatal("Pyro5 port {}:{} is not available ({}): choose another with --pyro-port "
              "(0: any free)", args.host, args.pyro_port, getattr(e, "strerror", None) or e)
    try:
        ns = rpc.locate_ns(args.ns_host, args.ns_port, timeout=5.0, wait=args.ns_wait)
    except Pyro5.errors.PyroError:
        fatal("no name server at {}:{} after {:g} s (--ns-wait): start it first with "
              "`python -m nameserver --host {} --port {}`, or point --ns-host/--ns-port at "
              "the running one", args.ns_host, args.ns_port, args.ns_wait, args.ns_host,
              args.ns_port)
    try:
        registered = ns.list(prefix=pyro_name).get(pyro_name)
    except Pyro5.errors.PyroError as e:
        fatal("the name server at {}:{} stopped answering: {}", args.ns_host, args.ns_port, e)
    if registered and answers(registered):
        fatal("{} is registered in the name server to {}, which answers: that node is "
              "running; stop it first, or give this one another name", pyro_name, registered)
    if registered:
        logger.info("{} was registered to {}, which does not answer: replacing it",
                    pyro_name, registered)
    args.bound_http_port = server.effective_port
    if on_bound is not None:
        on_bound()
    uri = daemon.register(obj, objectId=pyro_name)
    ns.register(pyro_name, uri, safe=False)
    logger.info("registered {} as {}", pyro_name, uri)
    if on_registered is not None:
        on_registered(daemon, str(uri))
    pyro_thread = threading.Thread(target=daemon.requestLoop, name="pyro", daemon=True)
    pyro_thread.start()
    stop = threading.Event()
    threading.Thread(target=_keep_registered, args=(args, pyro_name, str(uri), stop),
                     name="registration", daemon=True).start()

    logger.info("{} on {}://{}:{}", "HTTPS" if context else "HTTP",
                "https" if context else "http", args.host, server.effective_port)
    if plain is not None:
        logger.warning("plain HTTP also on http://{}:{} (--plain-http-port)", args.host,
                       plain.effective_port)
        gevent.spawn(plain.run)
    def stop_serving() -> None:
        if plain is not None:
            plain.stop()
        server.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop_serving)
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


def client_plane(args: Any, app: Any) -> tuple[Any, Any, edge.Timeouts]:
    """The HTTP app behind its Guard (tokens, limits, body deadline), the HTTPS context (or
    None) and the connection timeouts, from the node's flags; ends the node with one line
    when a file is missing or bad. Warns when the client API is open or tokens go in clear."""
    try:
        files = edge.https_files(args)
        context = edge.server_context(*files) if files else None
    except (ValueError, OSError) as e:
        fatal("HTTPS: {} (--https-dir, or --https-cert and --https-key; python -m "
              "nodes.certs makes them)", getattr(e, "strerror", None) or e)
    store = None
    if args.tokens:
        try:
            store = tokens.TokenStore(args.tokens)
        except tokens.TokenFileError as e:
            fatal("--tokens: {} (make it with `python -m nodes.tokens add NAME --roles "
                  "append,read --file {}`)", e, args.tokens)
        logger.info("client API: {} token(s) from {}, reloaded when it changes",
                    len(store.tokens), args.tokens)
        if context is None:
            logger.warning("tokens over plain HTTP: anyone on the path can read them; serve "
                           "HTTPS (--https-dir, or --https-cert/--https-key)")
    else:
        logger.warning("the client API is OPEN: anyone who reaches the HTTP port can append, "
                       "read and (with --allow-faults) inject faults; give the node a token "
                       "file with --tokens (python -m nodes.tokens, docs/security.md)")
    limits = auth.Limits(append_rate=args.append_rate, append_burst=args.append_burst,
                         max_held=args.max_held, body_timeout=args.body_timeout,
                         max_body=args.max_body)
    timeouts = edge.Timeouts(header=args.header_timeout, body=args.body_timeout,
                             idle=args.idle_timeout, write=args.write_timeout)
    return auth.Guard(app, store, limits), context, timeouts


def _keep_registered(args: Any, pyro_name: str, uri: str, stop: threading.Event,
                     interval: float = 1.0) -> None:
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
