"""Run Pyro5's name server, logging through loguru.

    python -m nameserver --host 127.0.0.1 --port 9090
"""
from __future__ import annotations

import signal

import Pyro5.errors
import Pyro5.nameserver
from loguru import logger

from nodes import logs, rpc
from nodes.config import Parser


def parser() -> Parser:
    p = Parser(prog="python -m nameserver",
               description="The Pyro5 name server where secondaries register and the master "
                           "finds them (list it with: python -m Pyro5.nsc -n HOST -p PORT list).")
    p.flag("--host", default="127.0.0.1", help="address to bind")
    p.flag("--port", type=int, default=9090, help="port to bind")
    p.flag("--advertise-host", default="", help="address put in the name server's own URI")
    p.flag("--log-level", default="INFO", help="TRACE, DEBUG, INFO, WARNING or ERROR")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logs.setup("nameserver", args.log_level)
    rpc.configure(threadpool_size=200)
    nat = rpc.advertised_host(args.host, args.advertise_host)

    def stop(signum, frame):
        raise SystemExit(0)

    # both, explicitly: a shell starting us in the background may have ignored SIGINT
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        uri, daemon, _ = Pyro5.nameserver.start_ns(host=args.host, port=args.port,
                                                    enableBroadcast=False, nathost=nat,
                                                    natport=0 if nat else None)
    except (OSError, Pyro5.errors.CommunicationError) as e:
        logger.error("cannot start: port {}:{} is not available ({}): another name server "
                     "or program listens there; choose another with --port",
                     args.host, args.port, getattr(e, "strerror", None) or e)
        raise SystemExit(1) from None
    logger.info("name server at {}", uri)
    try:
        daemon.requestLoop()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        logger.info("stopping")
        daemon.close()


if __name__ == "__main__":
    main()
