"""The master: orders every message and replicates it to the secondaries.

    python -m nodes.master_node --http-port 5000 --secondaries secondary1,secondary2
"""
from __future__ import annotations

if __name__ == "__main__":
    # Run as a node: make threads, locks and sockets cooperative (gevent) before anything
    # else imports them. Importing this module (tests do) patches nothing.
    from gevent import monkey
    monkey.patch_all()

from loguru import logger

from . import logs, rpc
from .config import Parser, add_common, add_failover, add_master_tuning, add_storage, comma_list
from .failover.run import run as run_failover
from .master.build import check_master_tuning, make_master
from .master_api import MasterAPI
from .serve import configure_rpc, log_config, run_node
from .storage.store import CorruptLog, DataDirError, Store
from .web import master_app

__all__ = ["MasterAPI", "main", "parser"]


def parser() -> Parser:
    p = Parser(prog="python -m nodes.master_node",
               description="The master of the replicated log: accepts appends over HTTP and "
                           "Pyro5 (replog.master), orders them, replicates them to every "
                           "secondary found in the name server, reports GET /health.")
    p.flag("--http-port", type=int, default=5000, help="HTTP port (0: any free)")
    p.flag("--secondaries", type=comma_list, default=[],
           help="comma-separated names of the secondaries the cluster is meant to have "
                "(more are discovered in the name server)")
    add_master_tuning(p)
    p.switch("--new-log", help="start a new, empty log (a new log id) even if this master or "
                               "its secondaries hold one: the secondaries drop theirs")
    add_storage(p)
    add_common(p)
    add_failover(p)
    p.switch("--allow-faults", help="let the dashboard (GET /) set a secondary's injected "
                                    "faults through POST /cluster/faults: a test and demo tool")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    check_master_tuning(p, args)
    if args.failover:
        return run_failover(p, args, "master", args.cluster or ["master", *args.secondaries],
                            prefer=True)
    logs.setup("master", args.log_level)
    log_config(args)
    configure_rpc(args, rpc.MASTER_NAME)
    store = Store(args.data_dir, args.fsync, args.fsync_interval) if args.data_dir else None
    master = make_master(args, store, args.secondaries, new_log=args.new_log)
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
