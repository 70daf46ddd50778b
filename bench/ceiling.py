"""The ceiling: the master's HTTP (or Pyro5) stack answering a request that does no work.

``python -m bench.ceiling --kind http --port 0 [--max-connections N]`` serves a Bottle app
on exactly the master's stack: a process that called ``gevent.monkey.patch_all()`` before
anything else, and the gevent WSGI server built by ``nodes.web.create_http_server``. Its
``POST /messages`` reads the body and answers a constant 201. ``--kind pyro`` serves, in
the same kind of process with the master's Pyro5 settings (``nodes.rpc.configure``), an
object whose ``append`` returns a constant. Either way the process prints one line
``READY <url-or-uri> key=value...`` on stdout and serves until SIGTERM/SIGINT. Throughput
against it is the most the stack gives on this machine; the master's figures divided by
it show what everything the replicated log adds costs.

``--hold S`` (diagnostic) makes every request wait until another greenlet releases it, in
batches, S seconds after taking the batch: the mechanics of a w>1 wait, no replication.
"""

from __future__ import annotations

if __name__ == "__main__":
    # Serve as the master does: cooperative threads, locks and sockets (gevent), patched
    # before anything else imports them. Importing this module (tests do) patches nothing.
    from gevent import monkey

    monkey.patch_all()

import argparse
import signal
import sys
import threading
import time

CONSTANT = b'{"seq": 1, "acks": 1, "w": 1}'


class Holder:
    """Stands in for replication at w>1, without any: a request registers an Event, wakes a
    "sender" and blocks; the sender takes everything pending as one batch, waits ``hold``
    seconds (a round trip) and sets the Events. This is the mechanics of the master's
    write-concern wait (block, notify a sender, be woken by it) at no other cost. In the
    patched process, as in the master, the threads are greenlets and the Condition, the
    Events and the sleep are gevent's: a wait is a greenlet switch, not an OS thread's."""

    def __init__(self, hold: float):
        self.hold = hold
        self.cond = threading.Condition()
        self.pending: list = []
        threading.Thread(target=self._run, name="holder", daemon=True).start()

    def wait(self) -> None:
        done = threading.Event()
        with self.cond:
            self.pending.append(done)
            self.cond.notify()
        done.wait()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    self.cond.wait()
                batch, self.pending = self.pending, []
            time.sleep(self.hold)
            for done in batch:
                done.set()


def build_app(holder: Holder | None = None):
    import bottle

    app = bottle.Bottle()

    @app.post("/messages")
    def post_message():
        bottle.request.body.read()  # consume the body, as any handler must
        if holder is not None:
            holder.wait()
        bottle.response.status = 201
        bottle.response.content_type = "application/json"
        return CONSTANT

    @app.get("/health")
    def health():
        bottle.response.content_type = "application/json"
        return b'{"role": "ceiling"}'

    return app


def _patched() -> str:
    """Which of the modules that matter are gevent-patched here (the master: all)."""
    from gevent import monkey

    mods = ("socket", "threading", "time", "select")
    if all(monkey.is_module_patched(m) for m in mods):
        return "yes"
    return ",".join(m for m in mods if monkey.is_module_patched(m)) or "no"


def serve_http(host: str, port: int, max_connections: int | None, hold: float | None = None):
    import gevent

    from nodes.web import create_http_server

    app = build_app(Holder(hold) if hold is not None else None)
    kw = {} if max_connections is None else {"max_connections": max_connections}
    server = create_http_server(app, host, port, **kw)
    limit = server.pool.size if getattr(server, "pool", None) is not None else None
    print(f"READY http://{host}:{server.effective_port} server=nodes.web.create_http_server "
          f"class={type(server).__module__}.{type(server).__name__} max_connections={limit} "
          f"gevent_patched={_patched()}", flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, server.stop)
    server.run()  # returns once a signal stopped it


def serve_pyro(host: str, port: int, max_connections: int | None, hold: float | None = None):
    import gevent

    from nodes import rpc

    # the master's Pyro5 settings: what run_node sets (thread server, pool = max connections)
    rpc.configure(max_connections if max_connections is not None else 10_000)
    holder = Holder(hold) if hold is not None else None

    import Pyro5.api

    @Pyro5.api.expose
    class Trivial:
        def append(self, message, w=None, timeout=None, id=None):  # noqa: A002 - contract name
            if holder is not None:
                holder.wait()
            return {"seq": 1, "acks": 1, "w": w or 1}

    daemon = rpc.make_daemon(host, port, "")
    uri = daemon.register(Trivial(), "bench.ceiling")
    # as in run_node: the request loop in its own (green) thread
    threading.Thread(target=daemon.requestLoop, name="pyro", daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)
    print(f"READY {uri} max_connections={Pyro5.config.THREADPOOL_SIZE} "
          f"gevent_patched={_patched()}", flush=True)
    stop.wait()
    daemon.shutdown()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.split("\n")[0])
    p.add_argument("--kind", choices=["http", "pyro"], default="http",
                   help="http: Bottle on nodes.web.create_http_server (gevent), the master's stack; "
                        "pyro: a Pyro5 daemon with the master's settings")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--max-connections", type=int, default=None,
                   help="connections served at once (default: the nodes' default, 10,000)")
    p.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                   help="make every request wait to be released by another greenlet, in batches, "
                        "SECONDS after the batch is taken: the mechanics of a w>1 wait, no replication")
    a = p.parse_args(argv)
    if a.kind == "http":
        serve_http(a.host, a.port, a.max_connections, a.hold)
    else:
        serve_pyro(a.host, a.port, a.max_connections, a.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
