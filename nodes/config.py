"""Command-line flags with environment-variable fallbacks: --ns-host <- REPLOG_NS_HOST."""
from __future__ import annotations

import argparse
import os
from typing import Any, Callable

ENV_PREFIX = "REPLOG_"


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


class _FromEnv:
    """A flag's default taken from the environment, still as text: parse_args converts and
    checks it as it would the flag's own value. (Not a str: argparse would convert a str
    default itself, but skip the choices check and not name the variable in its error.)"""

    def __init__(self, env: str, text: str) -> None:
        self.env, self.text = env, text

    def __str__(self) -> str:       # what --help shows as the default
        return self.text


class Parser(argparse.ArgumentParser):
    """argparse whose every flag also reads REPLOG_<FLAG> from the environment.

    A value from the environment goes through the flag's type and choices like one given on
    the command line, and a bad one is the same clean error (exit status 2) naming the
    variable: "argument --http-port (from REPLOG_HTTP_PORT): invalid int value: 'abc'". A
    flag on the command line wins; the variable is then not looked at."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kw)

    def flag(self, flag: str, type: Callable[[str], Any] = str, default: Any = None,
             help: str = "", env: str | None = None, **kw: Any) -> None:
        """env: the variable to read (default REPLOG_<FLAG>)."""
        env = env or env_name(flag)
        if env in os.environ:
            default = _FromEnv(env, os.environ[env])
        self.add_argument(flag, type=type, default=default, help=f"{help} [env {env}]", **kw)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(namespace, action.dest, None)
            if isinstance(value, _FromEnv):
                setattr(namespace, action.dest, self._from_env(action, value))
        return namespace, extras

    def _from_env(self, action: argparse.Action, value: _FromEnv) -> Any:
        try:
            # argparse's own steps for a command-line value, hence its own messages
            converted = self._get_value(action, value.text)
            self._check_value(action, converted)
        except argparse.ArgumentError as e:
            self.error(f"argument {'/'.join(action.option_strings)} (from {value.env}): "
                       f"{e.message}")
        return converted

    def switch(self, flag: str, help: str = "") -> None:
        """An on/off flag with its negation (--failover, --no-failover); REPLOG_<FLAG> gives
        the default: 1, true, yes or on; 0, false, no, off or empty. Anything else is the
        same clean error as a bad value of any other flag."""
        env = env_name(flag)
        default: Any = False
        if os.environ.get(env, "").strip():
            default = _FromEnv(env, os.environ[env])
        self.add_argument(flag, action=argparse.BooleanOptionalAction, type=on_off,
                          default=default, help=f"{help} [env {env}]")


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def on_off(text: str) -> bool:
    """A switch's value from the environment: True, False, or ArgumentTypeError."""
    word = text.strip().lower()
    if word in _ON or word in _OFF:
        return word in _ON
    raise argparse.ArgumentTypeError(f"{text!r} is not on or off (1, true, yes, on; 0, false, "
                                     "no, off)")

def add_common(p: Parser) -> None:
    p.flag("--host", default="127.0.0.1", help="address to bind Pyro5 and HTTP to")
    p.flag("--advertise-host", default="",
           help="address put in the Pyro5 URI in the name server (NAT host); empty: the "
                "bind address, or this host's IP when binding 0.0.0.0")
    p.flag("--pyro-port", type=int, default=0, help="Pyro5 port (0: any free)")
    p.flag("--ns-host", default="127.0.0.1", help="name server host")
    p.flag("--ns-port", type=int, default=9090, help="name server port")
    p.flag("--ns-wait", type=float, default=30.0,
           help="seconds to keep trying to reach the name server at startup")
    p.flag("--log-level", default="INFO", help="TRACE, DEBUG, INFO, WARNING or ERROR")
    p.flag("--max-body", type=int, default=1 << 20, help="largest HTTP request body in bytes")
    p.flag("--max-connections", type=int, default=10_000,
           help="most HTTP (and Pyro5) connections served at once; each is a greenlet")
    add_tls(p)
    add_client_security(p)


def add_client_security(p: Parser) -> None:
    """The client plane: HTTPS, tokens, and the bounds against a hostile client
    (nodes/edge.py, nodes/auth.py, docs/security.md)."""
    p.flag("--https-dir", default="",
           help="serve HTTPS on --http-port with DIR/node.crt and DIR/node.key (a folder made "
                "by python -m nodes.certs, e.g. the node's --tls-dir)")
    p.flag("--https-cert", default="", help="serve HTTPS with this certificate (PEM chain)")
    p.flag("--https-key", default="", help="... and this private key (PEM)")
    p.flag("--plain-http-port", type=int, default=None,
           help="with HTTPS: also serve plain HTTP on this port (0: any free); off by default")
    p.flag("--tokens", default="",
           help="token file (python -m nodes.tokens add NAME --roles ... --file FILE): every "
                "request needs Authorization: Bearer TOKEN with the route's role; changes are "
                "picked up within 2 s; empty: the client API is open (a warning)")
    p.flag("--append-rate", type=float, default=20_000.0,
           help="appends (POST /messages) per second per token (per client address without "
                "--tokens); over it: 429 with Retry-After; 0: no limit")
    p.flag("--append-burst", type=float, default=0.0,
           help="appends a token may send at once above --append-rate (0: one second's worth)")
    p.flag("--max-held", type=int, default=1024,
           help="long-polls and streams one token (or address) may hold open at once; 0: no "
                "limit")
    p.flag("--header-timeout", type=float, default=10.0,
           help="seconds a client has for a request's line and headers (and a TLS handshake) "
                "from its first byte; over: 408 and the connection closes")
    p.flag("--body-timeout", type=float, default=30.0,
           help="seconds a client has to send a request's whole body; over: 408")
    p.flag("--idle-timeout", type=float, default=60.0,
           help="seconds a kept-alive connection may wait for its next request")
    p.flag("--write-timeout", type=float, default=60.0,
           help="seconds a client has to take each send of an answer (a response, an event "
                "of a stream) once the node's socket buffer is full; over: the connection "
                "is dropped; 0: no limit")


def add_tls(p: Parser) -> None:
    p.flag("--tls-dir", default="",
           help="directory with ca.crt, node.crt, node.key (python -m nodes.certs makes "
                "them): every Pyro5 connection is mutual TLS and callers are authorized by "
                "their certificate's name; empty: plain TCP, unauthenticated (a warning)")


def add_storage(p: Parser) -> None:
    p.flag("--data-dir", default="",
           help="directory of this node's durable log (created if missing); empty: keep the "
                "log in memory only")
    p.flag("--fsync", default="always", choices=["always", "interval", "never"],
           help="always: on disk (fdatasync, shared by concurrent writes) before a message "
                "counts as held; interval: synced every --fsync-interval ms; never: the OS "
                "decides")
    p.flag("--fsync-interval", type=float, default=100.0,
           help="milliseconds between syncs with --fsync interval")


def add_master_tuning(p: Parser) -> None:
    """How a master replicates and judges health: the master's flags, and a failover
    secondary's (it may become master)."""
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


def add_failover(p: Parser) -> None:
    """Failover (nodes/failover, docs/failover.md): any node of the cluster can be master."""
    p.switch("--failover", help="elect the master: any node of --cluster may become master "
                                "when the master is lost (docs/failover.md); every node of "
                                "the cluster must be started with it")
    p.flag("--cluster", type=comma_list, default=[],
           help="with --failover: the names of every node of the cluster, this one included "
                "(they and only they vote; a majority is more than half of them); the master "
                "entry point is named 'master' (default: master and --secondaries)")
    p.flag("--election-min", type=float, default=0.6,
           help="with --failover: seconds without a master before a node stands, at least "
                "(each node draws its timeout anew per try between this and --election-max)")
    p.flag("--election-max", type=float, default=1.2,
           help="with --failover: ... and at most")
    p.flag("--lease", type=float, default=0.5,
           help="with --failover: a master writes only while a majority answered a heartbeat "
                "it sent within this many seconds; must end before --election-min even with "
                "clocks running 1%% apart")
    p.flag("--advertise-url", default="",
           help="with --failover: the URL clients reach this node's HTTP port at (307s of "
                "the other nodes point there); empty: http(s)://host:port as bound")


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
