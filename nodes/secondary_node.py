"""A secondary: keeps a copy of the master's log and shows its gap-free prefix.

    python -m nodes.secondary_node --name secondary1 --http-port 5001 [--delay 2]
"""
from __future__ import annotations

if __name__ == "__main__":
    # Run as a node: make threads, locks and sockets cooperative (gevent) before anything
    # else imports them. Importing this module (tests do) patches nothing.
    from gevent import monkey
    monkey.patch_all()

from loguru import logger

from . import logs, rpc
from .config import Parser, add_common, add_failover, add_master_tuning, add_storage
from .core.validate import BadRequest, check_faults
from .failover.run import run as run_failover
from .master.build import check_master_tuning
from .secondary import Secondary
from .secondary_api import SecondaryAPI
from .serve import configure_rpc, log_config, run_node
from .storage.store import CorruptLog, DataDirError, Store
from .web import secondary_app

__all__ = ["Secondary", "SecondaryAPI", "main", "parser"]


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
    p.flag("--max-ahead", type=int, default=10_000,
           help="refuse a replicate call whose first seq lies more than this past the ACK "
                "(keeps the hold-back map bounded; the master's --max-batch or more)")
    add_storage(p)
    add_common(p)
    add_failover(p)
    add_master_tuning(p)      # with --failover this node may become master
    p.switch("--allow-faults", help="accept fault injection (POST /faults, set_faults): a "
                                    "test and demo tool, off in production")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        check_faults({"delay": args.delay, "error_rate": args.error_rate})
    except BadRequest as e:
        parser().error(f"--delay / --error-rate: {e.message}")
    if args.failover:
        check_master_tuning(parser(), args)
        return run_failover(parser(), args, args.name, args.cluster)
    logs.setup(args.name, args.log_level)
    log_config(args)
    configure_rpc(args, rpc.SECONDARY_PREFIX + args.name)
    # offload: fdatasync in the helper process. In place it would block gevent's loop, and
    # with it every heartbeat and HTTP request, for as long as the disk takes.
    store = Store(args.data_dir, args.fsync, args.fsync_interval, offload=True) \
        if args.data_dir else None
    try:
        secondary = Secondary(args.name, args.delay, args.error_rate, store=store,
                              max_ahead=args.max_ahead, allow_faults=args.allow_faults)
    except DataDirError as e:
        logger.error("cannot start: {}{}", "the log is corrupt: " if
                     isinstance(e, CorruptLog) else "", e)
        raise SystemExit(1) from None
    run_node(args, SecondaryAPI(secondary), rpc.SECONDARY_PREFIX + args.name,
             secondary_app(secondary, args.max_body))


if __name__ == "__main__":
    main()
