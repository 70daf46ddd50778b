"""Run Pyro5's name server, logging through loguru; with --tls-dir, over mutual TLS and
accepting registrations only from the node they name.

    python -m nameserver --host 127.0.0.1 --port 9090 [--tls-dir certs/nameserver]
"""
from __future__ import annotations

import signal

import Pyro5.core
import Pyro5.errors
import Pyro5.nameserver
import Pyro5.server
from loguru import logger

from nodes import logs, rpc, tls
from nodes.config import Parser, add_tls


@Pyro5.server.expose
@Pyro5.server.behavior(instance_mode="single")
class GuardedNameServer(Pyro5.nameserver.NameServer):
    """Pyro5's name server; with TLS, a name may be registered, changed or removed only by
    the node whose certificate it names (replog.master: master, or any node with --failover;
    replog.secondary.X and replog.node.X: X).
    Look-ups and listings stay open to every certified peer."""

    def _authorize(self, what: str, name: object) -> None:
        if not tls.enabled():
            return
        where, cert = tls.caller()
        owner = tls.owner_of(name)
        if not tls.allows(owner, cert):
            logger.warning("refused {} of {!r} from {} (certificate {!r}): {}", what, name,
                           where, cert, "no node may" if owner is None else
                           f"only {owner!r} may")
            raise PermissionError(f"{what} of {name!r}: not allowed for certificate {cert!r}")

    def register(self, name, uri, safe=False, metadata=None):
        self._authorize("register", name)
        return super().register(name, uri, safe, metadata)

    def set_metadata(self, name, metadata):
        self._authorize("set_metadata", name)
        return super().set_metadata(name, metadata)

    def remove(self, name=None, prefix=None, regex=None):
        if prefix or regex:
            self._authorize("remove by prefix or regex", prefix or regex)
        else:
            self._authorize("remove", name)
        return super().remove(name, prefix, regex)


class NameServerDaemon(rpc.TlsHandshakeFirst, Pyro5.nameserver.NameServerDaemon):
    """Pyro5's name-server daemon serving a GuardedNameServer (same storage, same URI)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        guarded = GuardedNameServer(self.nameserver.storage)
        self.unregister(Pyro5.core.NAMESERVER_NAME)
        self.register(guarded, Pyro5.core.NAMESERVER_NAME)
        self.nameserver = guarded


def parser() -> Parser:
    p = Parser(prog="python -m nameserver",
               description="The Pyro5 name server where secondaries register and the master "
                           "finds them (list it with: python -m Pyro5.nsc -n HOST -p PORT list).")
    p.flag("--host", default="127.0.0.1", help="address to bind")
    p.flag("--port", type=int, default=9090, help="port to bind")
    p.flag("--advertise-host", default="", help="address put in the name server's own URI")
    p.flag("--log-level", default="INFO", help="TRACE, DEBUG, INFO, WARNING or ERROR")
    add_tls(p)
    p.switch("--failover", help="with --tls-dir: the cluster elects its master (--failover on "
                                "its nodes), so any node's certificate may register "
                                "replog.master, and the node named master may register as "
                                "a secondary")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logs.setup("nameserver", args.log_level)
    tls.FAILOVER = args.failover
    name = rpc.configure(threadpool_size=200, tls_dir=args.tls_dir)
    if name is not None and name != tls.NAMESERVER:
        logger.warning("serving with the certificate of {!r}: nodes expect {!r} and will not "
                       "talk to this name server", name, tls.NAMESERVER)
    nat = rpc.advertised_host(args.host, args.advertise_host)

    def stop(signum, frame):
        raise SystemExit(0)

    # both, explicitly: a shell starting us in the background may have ignored SIGINT
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon, refused = None, False
    try:
        # one try around binding and serving: a signal may come the moment the port is bound
        # (before `daemon` is even assigned), and it must still stop us the same way
        try:
            daemon = NameServerDaemon(host=args.host, port=args.port, nathost=nat,
                                      natport=0 if nat else None)
        except (OSError, Pyro5.errors.CommunicationError) as e:
            logger.error("cannot start: port {}:{} is not available ({}): another name "
                         "server or program listens there; choose another with --port",
                         args.host, args.port, getattr(e, "strerror", None) or e)
            refused = True
            raise SystemExit(1) from None
        logger.info("name server at {}", daemon.uriFor(daemon.nameserver))
        daemon.requestLoop()
    except (SystemExit, KeyboardInterrupt):
        if refused:
            raise
    finally:
        if not refused:
            logger.info("stopping")
        if daemon is not None:
            daemon.close()


if __name__ == "__main__":
    main()
