"""LocalCluster: name server, master and secondaries as real processes on loopback."""
from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from .procs import Proc, _flags, free_port, wait_until

PROBE_CERT = "client-launcher"   # the certificate of the launcher's own readiness probes
PROBE_TOKEN = "launcher"         # the token (role read) of its HTTP readiness probes


class LocalCluster:
    """Name server, master and secondaries as real processes on free loopback ports."""

    def __init__(self, workdir: str | Path | None = None, python: str = sys.executable,
                 log_level: str = "INFO", logs_to_files: bool = True,
                 tls_dir: str | Path | None = None, https: bool = False,
                 tokens: str | Path | None = None) -> None:
        """tls_dir: run the node plane over mutual TLS with the certificates in
        tls_dir/NAME (python -m nodes.certs layout); whatever is missing there (the CA, a
        node's certificate) is made on the spot.
        https: every node serves HTTPS with its certificate from tls_dir (or, without it,
        from WORKDIR/https-certs); tokens: every node checks this token file, and the
        cluster adds a token `launcher` (role read) to it for its readiness probes."""
        self.tls_dir = Path(tls_dir) if tls_dir else None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="replog-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.log_level = log_level
        self.logs_to_files = logs_to_files
        self.procs: dict[str, Proc] = {}
        self.ns_port: int | None = None
        self.https_dir = (self.tls_dir or self.workdir / "https-certs") if https else None
        self.tokens = Path(tokens) if tokens else None
        self.probe_token: str | None = None
        if self.tokens is not None:
            from .. import tokens as tk
            if self.tokens.exists():
                tk.revoke(self.tokens, PROBE_TOKEN)
            self.probe_token = tk.add(self.tokens, PROBE_TOKEN, ["read"])

    @property
    def ca(self) -> Path | None:
        """The CA file of the nodes' HTTPS certificates (None without HTTPS)."""
        if self.https_dir is None:
            return None
        from ..certs import ensure
        return ensure(self.https_dir, []) / "ca.crt"

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def certs(self, name: str) -> Path:
        """The --tls-dir of `name` (made if missing); needs tls_dir."""
        assert self.tls_dir is not None, "LocalCluster without tls_dir"
        from ..certs import ensure
        return ensure(self.tls_dir, [name]) / name

    def _spawn(self, name: str, module: str, options: dict[str, Any],
               http_port: int | None) -> Proc:
        if self.tls_dir is not None and "tls_dir" not in options:
            options = {**options, "tls_dir": self.certs(name)}
        if http_port is not None and self.https_dir is not None and "https_dir" not in options:
            from ..certs import ensure
            options = {**options, "https_dir": ensure(self.https_dir, [name]) / name}
        if http_port is not None and self.tokens is not None and "tokens" not in options:
            options = {**options, "tokens": self.tokens}
        argv = [self.python, "-m", module] + _flags(options)
        log = self.workdir / f"{name}.log" if self.logs_to_files else None
        proc = Proc(name, argv, log, http_port)
        if options.get("https_dir"):
            proc.scheme, proc.ca = "https", Path(options["https_dir"]) / "ca.crt"
        if options.get("tokens"):
            proc.token = self.probe_token
        proc.start()
        self.procs[name] = proc
        return proc

    def start_nameserver(self, port: int | None = None, failover: bool = False) -> Proc:
        """failover: the nodes elect their master (with TLS any node may hold replog.master)."""
        self.ns_port = port or free_port()
        options: dict[str, Any] = {"port": self.ns_port, "log_level": self.log_level,
                                   "failover": failover}
        proc = self._spawn("nameserver", "nameserver", options, None)
        wait_until(lambda: self._accepts(self.ns_port), 15, what="the name server")
        return proc

    def _accepts(self, port: int) -> bool:
        """Does the node on `port` take connections? With TLS the probe completes a handshake
        with a client certificate of this cluster: a bare TCP connect is a stranger to a TLS
        node, which logs it as a refused connection ("no valid certificate") and so would
        greet every start with what looks like an intrusion."""
        with socket.create_connection(("127.0.0.1", port), 0.5) as sock:
            if self.tls_dir is not None:
                from ..tls import contexts
                client = contexts(self.certs(PROBE_CERT))[1]
                client.wrap_socket(sock).close()   # raises unless the handshake succeeds
        return True

    def _node_options(self, http_port: int | None, flags: dict[str, Any]) -> tuple[int, dict]:
        port = http_port or free_port()
        options = {"http_port": port, "ns_port": self.ns_port, "log_level": self.log_level}
        # issue 11: local clusters are for tests and demos, so fault injection is on
        # (pass allow_faults=False to see a production-like node)
        options["allow_faults"] = True
        options.update(flags)
        return port, options

    def start_master(self, secondaries: list[str] | tuple[str, ...] = (),
                     http_port: int | None = None, wait: bool = True, **flags: Any) -> Proc:
        port, options = self._node_options(http_port, flags)
        if secondaries:
            options["secondaries"] = list(secondaries)
        proc = self._spawn("master", "nodes.master_node", options, port)
        return proc.wait_ready() if wait else proc

    def start_secondary(self, name: str, http_port: int | None = None, wait: bool = True,
                        **flags: Any) -> Proc:
        port, options = self._node_options(http_port, flags)
        options["name"] = name
        proc = self._spawn(name, "nodes.secondary_node", options, port)
        return proc.wait_ready() if wait else proc

    @property
    def master(self) -> Proc:
        return self.procs["master"]

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.resume()
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout=5)
