"""The ceiling: our HTTP (or Pyro5) server stack answering a POST that does no work.

``python -m bench.ceiling --kind http --port 0 [--threads N]`` serves a Bottle app on the
same waitress server the master uses (built by the server factory in ``nodes/web.py``,
with the same settings), whose ``POST /messages`` reads the body and answers a constant
201. ``--kind pyro`` serves a Pyro5 object whose ``append`` returns a constant. Either
way the process prints one line ``READY <url-or-uri>`` on stdout and serves until
SIGTERM/SIGINT. Throughput against it is the most the stack can give on this machine;
the master's figures divided by it show the cost of everything the replicated log adds.
"""

from __future__ import annotations

import argparse
import inspect
import signal
import sys
import threading

CONSTANT = b'{"seq": 1, "acks": 1, "w": 1}'


def build_app():
    import bottle

    app = bottle.Bottle()

    @app.post("/messages")
    def post_message():
        bottle.request.body.read()  # consume the body, as any handler must
        bottle.response.status = 201
        bottle.response.content_type = "application/json"
        return CONSTANT

    @app.get("/health")
    def health():
        bottle.response.content_type = "application/json"
        return b'{"role": "ceiling"}'

    return app


def find_server_factory():
    """Return (callable, name) for the waitress server factory in nodes/web.py, or (None, why).

    The factory is a function defined in nodes/web.py (not one it imports) whose name
    mentions "server", preferably ``create_http_server``.
    """
    try:
        import nodes.web as web
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return None, f"nodes.web not importable: {type(e).__name__}: {e}"
    own = {
        name: fn
        for name, fn in vars(web).items()
        if callable(fn) and "server" in name.lower() and getattr(fn, "__module__", "") == web.__name__
    }
    preferred = ["create_http_server", "make_http_server", "make_server", "create_server", "build_server"]
    for name in preferred + sorted(own):
        if name in own:
            return own[name], f"nodes.web.{name}"
    return None, "no server factory found in nodes.web"


def _call_factory(fn, app, host: str, port: int, threads: int | None):
    """Call the factory with whatever of app/host/port/threads it accepts."""
    sig = inspect.signature(fn)
    params = sig.parameters
    kwargs = {}
    positional = []
    names = list(params)
    app_names = {"app", "application", "wsgi_app"}
    if any(n in params for n in app_names):
        kwargs[next(n for n in names if n in app_names)] = app
    else:
        positional.append(app)
    if "host" in params:
        kwargs["host"] = host
    elif "bind" in params:
        kwargs["bind"] = host
    if "port" in params:
        kwargs["port"] = port
    elif "http_port" in params:
        kwargs["http_port"] = port
    if threads is not None:
        for n in ("threads", "http_threads"):
            if n in params:
                kwargs[n] = threads
                break
    return fn(*positional, **kwargs)


def _server_port(server) -> int:
    for attr in ("effective_port",):
        if hasattr(server, attr):
            return int(getattr(server, attr))
    if hasattr(server, "socket"):
        return server.socket.getsockname()[1]
    if hasattr(server, "port"):
        return int(server.port)
    raise RuntimeError(f"cannot find the port of {server!r}")


def serve_http(host: str, port: int, threads: int | None, use_factory: bool):
    app = build_app()
    how = "waitress.create_server (fallback)"
    server = None
    if use_factory:
        fn, how = find_server_factory()
        if fn is not None:
            server = _call_factory(fn, app, host, port, threads)
            # a factory may return (server, something) or a wrapper holding the waitress server
            if isinstance(server, tuple):
                server = server[0]
            for attr in ("server", "_server", "waitress"):
                inner = getattr(server, attr, None)
                if inner is not None and hasattr(inner, "run"):
                    server = inner
                    break
    if server is None:
        import waitress

        kw = {"host": host, "port": port}
        if threads:
            kw["threads"] = threads
        server = waitress.create_server(app, **kw)
        if use_factory:
            how = f"waitress.create_server (fallback: {how})"
    actual = _server_port(server)
    threads_eff = getattr(getattr(server, "adj", None), "threads", None)
    print(f"READY http://{host}:{actual} factory={how} threads={threads_eff}", flush=True)

    def stop(*_):
        try:
            server.close()
        finally:
            sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass


def serve_pyro(host: str, port: int):
    import Pyro5.api

    @Pyro5.api.expose
    class Trivial:
        def append(self, message, w=None, timeout=None, id=None):  # noqa: A002 - contract name
            return {"seq": 1, "acks": 1, "w": w or 1}

    daemon = Pyro5.api.Daemon(host=host, port=port)
    uri = daemon.register(Trivial(), "bench.ceiling")
    print(f"READY {uri}", flush=True)

    def stop(*_):
        threading.Thread(target=daemon.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        daemon.requestLoop()
    except KeyboardInterrupt:
        pass
    finally:
        daemon.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.split("\n")[0])
    p.add_argument("--kind", choices=["http", "pyro"], default="http")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="waitress threads (default: factory's)")
    p.add_argument("--no-factory", action="store_true", help="plain waitress, not nodes.web's factory")
    a = p.parse_args(argv)
    if a.kind == "http":
        serve_http(a.host, a.port, a.threads, not a.no_factory)
    else:
        serve_pyro(a.host, a.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
