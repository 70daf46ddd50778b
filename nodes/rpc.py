"""Pyro5 plumbing shared by every node: settings, daemons, name-server access, proxies.

TLS: configure(tls_dir=...) turns Pyro5's SSL on for the whole process (Pyro5's config is
process-wide), so every proxy and daemon made afterwards, here or anywhere else, speaks
mutual TLS. The proxies made here also check that the server presents the certificate of
the node it stands for (see nodes.tls).
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import Pyro5.api
from Pyro5 import config as pyro_config
import Pyro5.core
import Pyro5.errors
from loguru import logger

from . import tls
from .config import on_off
from .names import MASTER_NAME, SECONDARY_PREFIX  # noqa: F401 (the nodes use rpc.*)

# Between nodes: marshal is the fastest serializer Pyro5 has for lists of strings.
NODE_SERIALIZER = "marshal"


TLS_HANDSHAKE_TIMEOUT = 10.0   # seconds a connecting peer has to finish its TLS handshake
_ROLE = "client"   # "node" once a node called configure(): only clients probe (see _explain)


def configure(threadpool_size: int = 80, tls_dir: str | Path = "",
              role: str = "node") -> str | None:
    """Process-wide Pyro5 settings. Remote-call timeouts are set per proxy, not here.
    With tls_dir (ca.crt, node.crt, node.key) every Pyro5 connection of this process, in
    and out, is mutual TLS; returns the certificate's name. Without it, a `role` other than
    "client" logs one warning that its node plane is unauthenticated."""
    global _ROLE
    _ROLE = role
    pyro_config.SERVERTYPE = "thread"
    pyro_config.THREADPOOL_SIZE = threadpool_size
    pyro_config.SOCK_NODELAY = True   # small replies must not wait for Nagle's algorithm
    pyro_config.DETAILED_TRACEBACK = False
    if not tls_dir:
        tls.uninstall()
        if role != "client":
            logger.warning(tls.UNAUTHENTICATED)
        return None
    try:
        name = tls.install(tls_dir)
    except (tls.TlsDirError, OSError, ValueError) as e:
        raise SystemExit(f"cannot use --tls-dir {tls_dir}: {e}") from None
    if role != "client":
        logger.info("node plane: mutual TLS with certificate {!r} from {}", name, tls_dir)
    return name


def configure_client(tls_dir: str | Path = "", failover: bool | None = None) -> str | None:
    """For Python clients of a cluster (tests, benchmarks, scripts): TLS with the client
    certificate in tls_dir (e.g. certs/client-alice), or plain TCP when empty. failover
    (default: REPLOG_FAILOVER=1 in the environment): the cluster elects its master, so
    replog.master may show any node's certificate."""
    if failover is None:
        failover = on_off(os.environ.get("REPLOG_FAILOVER", ""))
    tls.FAILOVER = failover
    return configure(tls_dir=tls_dir, role="client")


class TlsHandshakeFirst:
    """Daemon mixin: with TLS, finish the handshake in the connection's worker, with a
    timeout, and log a refused one (no certificate, another CA) as one line."""

    def _handshake(self, conn: Any, denied_reason: Any = None) -> bool:
        sock = conn.sock
        if tls.enabled() and hasattr(sock, "do_handshake") and not denied_reason:
            try:
                addr = "%s:%s" % sock.getpeername()[:2]
            except OSError:
                addr = "?"
            old = sock.gettimeout()
            try:
                sock.settimeout(TLS_HANDSHAKE_TIMEOUT)
                sock.do_handshake()
                sock.settimeout(old)
            except (OSError, ValueError) as e:
                logger.warning("refused a connection from {} (no valid certificate): TLS "
                               "handshake failed: {}", addr, e)
                return False
        return super()._handshake(conn, denied_reason)  # type: ignore[misc]


class NodeDaemon(TlsHandshakeFirst, Pyro5.api.Daemon):
    pass


class PeerMismatch(Pyro5.errors.SecurityError):
    """The server's certificate names another node than the one we meant to reach."""


class ClientCertificateRequired(Pyro5.errors.CommunicationError):
    """A client without TLS reached a node (or name server) whose node plane is mutual TLS.
    Pyro5 itself only says "Failed to locate the nameserver" or "receiving: not enough
    data"; this says what is missing."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"{host}:{port} requires a client certificate: the cluster's node plane is mutual "
            "TLS. Get one issued by the cluster's CA (`python -m nodes.certs --out certs "
            "--names client-NAME`, run where the CA key is) and call "
            "nodes.rpc.configure_client('certs/client-NAME') before making proxies; "
            "see docs/security.md")
        self.host, self.port = host, port


def speaks_tls(host: str, port: int, timeout: float = 2.0) -> bool:
    """Does host:port answer a TLS ClientHello with a ServerHello? (A plain Pyro5 server
    drops the connection at the first bytes it cannot parse.)"""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout) as sock:
            with ctx.wrap_socket(sock) as tls_sock:
                tls_sock.do_handshake()
        return True
    except ssl.SSLError as e:
        # the server spoke TLS but wanted our certificate (TLS 1.2 refuses in the handshake)
        return "CERTIFICATE" in str(e).upper() or "HANDSHAKE_FAILURE" in str(e).upper()
    except OSError:
        return False


def _explain(error: Exception, host: str | None, port: int | None) -> None:
    """Raise ClientCertificateRequired instead of `error` when that is what went wrong."""
    if _ROLE != "client" or tls.enabled() or not host or not port:
        return   # nodes never probe: a dead peer must not cost them a second connection
    if speaks_tls(host, port):
        raise ClientCertificateRequired(host, port) from error


class NodeProxy(Pyro5.api.Proxy):
    """A proxy that, with TLS on, accepts a connection only when the server's certificate
    names the node the URI stands for (replog.master: master, replog.secondary.X: X, the
    name server: nameserver), or `expect` when given. Without TLS, reaching a TLS node
    raises ClientCertificateRequired."""

    def _Proxy__pyroCreateConnection(self, replaceUri: bool = False,
                                     connected_socket: Any = None) -> Any:
        try:
            return super()._Proxy__pyroCreateConnection(replaceUri, connected_socket)
        except Pyro5.errors.PyroError as e:
            uri = self._pyroUri
            if not isinstance(e, ClientCertificateRequired):
                _explain(e, uri.host, uri.port)   # PYRONAME: the name server's host:port
            raise

    def _pyroValidateHandshake(self, response: Any) -> None:
        if not tls.enabled():
            return
        expected = self.__dict__.get("_replog_expect") or tls.expected_peer(self._pyroUri.object)
        if expected is None:
            return
        got = tls.name_of(self._pyroConnection.getpeercert())
        if not tls.allows(expected, got):
            where = f"{self._pyroUri.host}:{self._pyroUri.port}"
            self._pyroRelease()
            raise PeerMismatch(f"{where} presented the certificate of {got!r}, not of "
                               f"{expected!r}")


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
        return NodeDaemon(host=host, port=port, nathost=nat, natport=0)
    return NodeDaemon(host=host, port=port)


def proxy(uri: str, timeout: float, serializer: str | None = NODE_SERIALIZER,
          expect: str | None = None) -> Pyro5.api.Proxy:
    """A proxy with a timeout on every call. A proxy belongs to the thread that uses it.
    With TLS it checks the server's certificate name (see NodeProxy)."""
    p = NodeProxy(uri)
    if expect:
        object.__setattr__(p, "_replog_expect", expect)
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
            ns = NodeProxy(f"PYRO:{Pyro5.core.NAMESERVER_NAME}@{host}:{port}")
            ns._pyroTimeout = timeout
            ns.ping()
            return ns
        except ClientCertificateRequired:
            raise                      # no point waiting: it will not change
        except Pyro5.errors.PyroError as e:
            if time.monotonic() >= deadline:
                raise
            logger.info("name server {}:{} not reachable yet ({}); retrying", host, port, e)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
