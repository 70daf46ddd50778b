"""How the master's shell reaches the other nodes: Pyro5 here, a fake in tests/harness.

A Transport makes proxies with a timeout on every call (a proxy belongs to the thread that
made it), vets a secondary's registration (with TLS: the endpoint must show that
secondary's certificate) and lists the secondaries registered in the name server."""
from __future__ import annotations

import threading
from typing import Any, Callable, Protocol

import Pyro5.core

from .. import rpc, tls


class Transport(Protocol):
    def connect(self, uri: str, timeout: float) -> Any:
        """A proxy: replicate, sync, heartbeat, history, read (see SecondaryAPI)."""

    def release(self, proxy: Any) -> None: ...

    def registered(self) -> dict[str, str] | None:
        """name -> uri of every registered secondary; None without a name server.
        Raises when the name server cannot be asked."""

    def vet(self, name: str, uri: str, timeout: float) -> str | None:
        """"" when uri may stand for secondary `name`, else why not; None: cannot tell yet."""


class PyroTransport:
    def __init__(self, ns_factory: Callable[[], Any] | None) -> None:
        self._ns_factory = ns_factory
        self._local = threading.local()     # one name-server proxy per thread

    def connect(self, uri: str, timeout: float) -> Any:
        return rpc.proxy(uri, timeout)

    def release(self, proxy: Any) -> None:
        proxy._pyroRelease()

    def registered(self) -> dict[str, str] | None:
        if self._ns_factory is None:
            return None
        ns = getattr(self._local, "ns", None)
        try:
            ns = ns or self._ns_factory()
            listed = ns.list(prefix=rpc.SECONDARY_PREFIX)
        except Exception:
            self._local.ns = None
            raise
        self._local.ns = ns
        return {full[len(rpc.SECONDARY_PREFIX):]: uri for full, uri in listed.items()}

    def vet(self, name: str, uri: str, timeout: float) -> str | None:
        if not tls.enabled():
            return ""
        parsed = Pyro5.core.URI(uri)
        if tls.owner_of(rpc.SECONDARY_PREFIX + name) != name \
                or parsed.object != rpc.SECONDARY_PREFIX + name:
            return f"{uri} cannot stand for secondary {name!r}"
        # the daemon there (whatever objects it serves) must show name's certificate
        p = rpc.proxy(f"PYRO:{Pyro5.core.DAEMON_NAME}@{parsed.location}", timeout, expect=name)
        try:
            p._pyroBind()
            return ""
        except rpc.PeerMismatch as e:
            return str(e)
        except Exception:   # not reachable (yet): look again next time
            return None
        finally:
            p._pyroRelease()
