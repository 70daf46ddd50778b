"""The master: orders every message and replicates it to the secondaries.

    python -m nodes.master_node --http-port 5000 --secondaries secondary1,secondary2
"""
from __future__ import annotations

if __name__ == "__main__":
    # Run as a node: make threads, locks and sockets cooperative (gevent) before anything
    # else imports them. Importing this module (tests do) patches nothing.
    from gevent import monkey
    monkey.patch_all()

import Pyro5.api
from loguru import logger

from . import logs, rpc
from .config import Parser, add_common, add_storage, comma_list
from .core.health import HealthPolicy
from .core.calls import Pipeline
from .core.concern import WriteConcernTimeout
from .core.master import ReadOnly
from .core.progress import Backoff
from .core.validate import BadRequest, check_append, check_messages, check_timeout, check_w
from .master import Master, PyroTransport, Timing
from .serve import configure_rpc, locate_ns_factory, log_config, run_node
from .storage.store import CorruptLog, DataDirError, Store
from .web import master_app


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


def parser() -> Parser:
    p = Parser(prog="python -m nodes.master_node",
               description="The master of the replicated log: accepts appends over HTTP and "
                           "Pyro5 (replog.master), orders them, replicates them to every "
                           "secondary found in the name server, reports GET /health.")
    p.flag("--http-port", type=int, default=5000, help="HTTP port (0: any free)")
    p.flag("--secondaries", type=comma_list, default=[],
           help="comma-separated names of the secondaries the cluster is meant to have "
                "(more are discovered in the name server)")
    p.flag("--heartbeat-interval", type=float, default=0.5, help="seconds between heartbeats")
    p.flag("--heartbeat-timeout", type=float, default=1.0, help="timeout of one heartbeat call")
    p.flag("--suspect-after", type=float, default=1.5,
           help="seconds without an answer before a secondary is Suspected")
    p.flag("--unhealthy-after", type=float, default=5.0,
           help="seconds without an answer before a secondary is Unhealthy")
    p.flag("--rpc-timeout", type=float, default=10.0,
           help="timeout of one replicate call (keep it above any secondary's --delay)")
    p.flag("--retry-base", type=float, default=0.05, help="first retry delay in seconds")
    p.flag("--retry-cap", type=float, default=2.0, help="longest retry delay in seconds")
    p.flag("--discovery-interval", type=float, default=1.0,
           help="seconds between looks at the name server for secondaries")
    p.flag("--max-batch", type=int, default=10_000, help="most messages in one replicate call")
    p.flag("--max-in-flight", type=int, default=16,
           help="most replicate calls out to one secondary at once (pipelining; 1: none)")
    p.flag("--pipeline-after", type=float, default=50.0,
           help="milliseconds the newest call to a secondary must have been out before a "
                "further one goes (a fast secondary answers first and gets large batches)")
    p.flag("--startup-wait", type=float, default=2.0,
           help="at start, seconds to wait for every known secondary to say what it holds "
                "before serving (a master with no log on disk then still waits for a quorum)")
    p.flag("--max-keys", type=int, default=100_000,
           help="idempotency keys remembered (the newest); an older key no longer dedups")
    p.switch("--new-log", help="start a new, empty log (a new log id) even if this master or "
                               "its secondaries hold one: the secondaries drop theirs")
    add_storage(p)
    add_common(p)
    p.switch("--allow-faults", help="let the dashboard (GET /) set a secondary's injected "
                                    "faults through POST /cluster/faults: a test and demo tool")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    try:
        policy = HealthPolicy(args.suspect_after, args.unhealthy_after)
    except ValueError as e:
        p.error(str(e))
    if args.max_in_flight < 1 or args.pipeline_after < 0:
        p.error("--max-in-flight must be at least 1 and --pipeline-after at least 0")
    logs.setup("master", args.log_level)
    log_config(args)
    configure_rpc(args, rpc.MASTER_NAME)
    store = Store(args.data_dir, args.fsync, args.fsync_interval) if args.data_dir else None
    master = Master(args.secondaries, policy, Backoff(args.retry_base, args.retry_cap),
                    Timing(args.rpc_timeout, args.heartbeat_interval, args.heartbeat_timeout,
                           args.discovery_interval, args.startup_wait),
                    PyroTransport(locate_ns_factory(args)), max_batch=args.max_batch, store=store,
                    new_log=args.new_log, max_keys=args.max_keys,
                    pipeline=Pipeline(args.max_in_flight, args.pipeline_after / 1000,
                                      args.max_batch))
    def start() -> None:   # once the ports are bound and no live master holds the name
        try:
            master.start()
        except DataDirError as e:
            logger.error("cannot start: {}{}", "the log is corrupt: " if
                         isinstance(e, CorruptLog) else "", e)
            raise SystemExit(1) from None

    run_node(args, MasterAPI(master), rpc.MASTER_NAME,
             master_app(master, args.max_body, args.allow_faults, args.max_batch), on_stop=master.stop,
             on_bound=start)


if __name__ == "__main__":
    main()
