"""Mutual TLS on the node plane: who may do what, by the name in a peer's certificate.

The rules are plain functions (unit-tested); the rest turns Pyro5's built-in SSL on with
contexts of our own (rpc.configure calls install()). See docs/security.md.

Names: a node's certificate carries its replog name as subject common name (nodes.certs
makes them): `nameserver`, `master`, a secondary's name, or `client-...` for a client.
"""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from loguru import logger

from .names import MASTER_NAME, NAMESERVER_OBJECT, NODE_PREFIX, SECONDARY_PREFIX

MASTER = "master"
NAMESERVER = "nameserver"
CLIENT_PREFIX = "client-"
FILES = ("ca.crt", "node.crt", "node.key")
ANY_NODE = "any node of the cluster"   # owner_of/expected_peer: whichever node is master

# With failover (a cluster started with --failover) any node may be master: replog.master
# is then any node's, and a node named master may be a secondary. Set by the failover
# nodes, the name server's --failover and, for clients, REPLOG_FAILOVER=1.
FAILOVER = False


# -- the rules (pure) -------------------------------------------------------------------------
def may_be_secondary(name: str | None) -> bool:
    """A certificate name that can stand for a secondary: not a role, not a client."""
    return bool(name) and name not in (MASTER, NAMESERVER) and not name.startswith(CLIENT_PREFIX)


def is_node(name: str | None) -> bool:
    """A certificate name of a node of the cluster (the master or a secondary)."""
    return name == MASTER or may_be_secondary(name)


def owner_of(pyro_name: object) -> str | None:
    """The certificate name that may register (or remove) pyro_name in the name server;
    ANY_NODE: any node's (replog.master with failover); None: nobody may (over the
    network)."""
    if not isinstance(pyro_name, str):
        return None
    if pyro_name == MASTER_NAME:
        return ANY_NODE if FAILOVER else MASTER
    if pyro_name.startswith(SECONDARY_PREFIX):
        name = pyro_name[len(SECONDARY_PREFIX):]
        return name if may_be_secondary(name) or (FAILOVER and name == MASTER) else None
    if pyro_name.startswith(NODE_PREFIX):
        name = pyro_name[len(NODE_PREFIX):]
        return name if is_node(name) else None
    return None


def allows(owner: str | None, cert: str | None) -> bool:
    """Does the certificate `cert` satisfy owner_of()'s (or expected_peer()'s) answer?"""
    return owner is not None and (cert == owner or (owner == ANY_NODE and is_node(cert)))


def expected_peer(object_id: str) -> str | None:
    """The certificate name the server of a Pyro5 object must present; None: any cluster
    certificate will do (objects outside replog's names)."""
    if object_id == NAMESERVER_OBJECT:
        return NAMESERVER
    return owner_of(object_id)


def name_of(cert: dict | None) -> str | None:
    """The subject common name in ssl.getpeercert()'s dictionary."""
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


# -- files and contexts ---------------------------------------------------------------------
class TlsDirError(Exception):
    pass


def files(tls_dir: str | Path) -> dict[str, Path]:
    d = Path(tls_dir)
    paths = {f: d / f for f in FILES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise TlsDirError(f"--tls-dir {d}: missing {', '.join(missing)} (make them with "
                          "python -m nodes.certs, see docs/security.md)")
    return paths


def own_name(tls_dir: str | Path) -> str | None:
    """The name in this node's own certificate."""
    from .certs import cert_name, load_cert
    return cert_name(load_cert(files(tls_dir)["node.crt"])) or None


def contexts(tls_dir: str | Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: TLS 1.2+, a certificate from the cluster CA required on
    both sides. Host names are not checked: the node name in the certificate is (by the
    proxies and daemons in nodes.rpc), whatever address a node is reached at.

    The server side does its TLS handshake lazily, in the connection's own worker (see
    rpc's daemon), not in the daemon's accept loop, so that a silent client stalls nobody."""
    p = files(tls_dir)

    class LazyServerContext(ssl.SSLContext):   # ssl.SSLContext: gevent's in a node process
        def wrap_socket(self, sock: Any, server_side: bool = False, **kw: Any) -> Any:
            if server_side:
                kw["do_handshake_on_connect"] = False
            return super().wrap_socket(sock, server_side=server_side, **kw)

    server = LazyServerContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(p["node.crt"]), str(p["node.key"]))
        ctx.load_verify_locations(cafile=str(p["ca.crt"]))
        ctx.verify_mode = ssl.CERT_REQUIRED
    client.check_hostname = False
    return server, client


def install(tls_dir: str | Path) -> str | None:
    """Turn Pyro5's SSL on for this process (server and client side) with our contexts;
    returns this process's certificate name."""
    from Pyro5 import config, socketutil
    p = files(tls_dir)
    server, client = contexts(tls_dir)
    config.SSL = True
    config.SSL_REQUIRECLIENTCERT = True
    config.SSL_CACERTS = str(p["ca.crt"])
    config.SSL_SERVERCERT = config.SSL_CLIENTCERT = str(p["node.crt"])
    config.SSL_SERVERKEY = config.SSL_CLIENTKEY = str(p["node.key"])
    # Pyro5 builds each context once and caches it in these module globals: fill the cache.
    vars(socketutil)["__ssl_server_context"] = server
    vars(socketutil)["__ssl_client_context"] = client
    return own_name(tls_dir)


def uninstall() -> None:
    """Back to plain TCP (tests that switch within one process)."""
    from Pyro5 import config, socketutil
    config.SSL = False
    config.SSL_REQUIRECLIENTCERT = False
    vars(socketutil)["__ssl_server_context"] = None
    vars(socketutil)["__ssl_client_context"] = None


def enabled() -> bool:
    from Pyro5 import config
    return bool(config.SSL)


# -- the current remote call's peer ----------------------------------------------------------
def caller() -> tuple[str, str | None]:
    """(address, certificate name) of the peer of the Pyro5 call being served."""
    import Pyro5.api
    ctx = Pyro5.api.current_context
    addr = getattr(ctx, "client_sock_addr", None)
    where = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else "a local caller"
    conn = getattr(ctx, "client", None)
    cert = conn.getpeercert() if conn is not None and hasattr(conn, "getpeercert") else None
    return where, name_of(cert)


def require_caller(allowed: str | frozenset[str], what: str) -> None:
    """With TLS on, refuse (PermissionError, one log line) a call whose peer's certificate
    is not `allowed`'s (one name, or a set: a failover cluster's nodes). Without TLS every
    caller passes (the startup warning said so)."""
    if not enabled():
        return
    where, name = caller()
    if name != allowed and not (isinstance(allowed, frozenset) and name in allowed):
        who = allowed if isinstance(allowed, str) else f"a node of {sorted(allowed)}"
        logger.warning("refused {} from {} (certificate {!r}): only {!r} may call it", what,
                       where, name, who)
        raise PermissionError(f"{what}: only {who} may call this")


UNAUTHENTICATED = ("the node plane is UNAUTHENTICATED: any process that reaches this node's "
                   "Pyro5 port (or the name server) can call it; start with --tls-dir (see "
                   "docs/security.md) on any network you do not fully trust")
