"""A failover node's process: one data directory, one Pyro5 daemon, one HTTP port, and the
role (Secondary or Master) that the election gives it. Both entry points come here with
--failover (nodes/master_node.py as the node named "master")."""
from __future__ import annotations

import threading
from typing import Any

from loguru import logger

from .. import logs, rpc, tls
from ..core import election as el
from ..master.build import make_master
from ..secondary import Secondary
from ..names import MASTER_NAME, NODE_PREFIX, SECONDARY_PREFIX
from ..serve import configure_rpc, fatal, log_config, run_node
from ..storage.store import CorruptLog, DataDirError, Store
from ..web import master_app, secondary_app
from .api import Front, MasterFacade, NodeAPI, SecondaryFacade
from .node import FailoverNode, _mastering
from .votes import VoteFile


class Registrations:
    """Keeps the name server's entries of this node as its role wants them: replog.node.NAME
    always (run_node keeps that one), replog.secondary.NAME while a secondary, replog.master
    while master; an entry of ours that the role does not want is removed (an entry naming
    another node is never touched). Also reads every node's address into node.peers, which
    stay known while the name server is down. Checks every interval, and at once on poke()."""

    def __init__(self, args: Any, node: FailoverNode, interval: float = 0.5) -> None:
        self.args, self.node, self.interval = args, node, interval
        self.uris: dict[str, str] = {}
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._ns: Any = None

    def attach(self, daemon: Any, node_uri: str) -> None:
        name = self.node.name
        for pyro_name, obj in ((SECONDARY_PREFIX + name, SecondaryFacade(self.node)),
                               (MASTER_NAME, MasterFacade(self.node))):
            self.uris[pyro_name] = str(daemon.register(obj, objectId=pyro_name))
        self.node.peers[name] = node_uri
        threading.Thread(target=self._loop, name="registrations", daemon=True).start()

    def poke(self) -> None:
        self._poke.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception as e:
                logger.debug("name server check failed: {}", e)
                self._ns = None
            self._poke.wait(self.interval)
            self._poke.clear()

    def _wanted(self) -> set[str]:
        return {MASTER_NAME} if _mastering(self.node.role) else {SECONDARY_PREFIX + self.node.name}

    def reconcile(self, leaving: bool = False) -> None:
        ns = self._ns = self._ns or rpc.locate_ns(self.args.ns_host, self.args.ns_port, 2.0)
        listed = ns.list(prefix="replog.")
        for full, uri in listed.items():
            if full.startswith(NODE_PREFIX):
                self.node.peers[full[len(NODE_PREFIX):]] = uri
        wanted = set() if leaving else self._wanted()
        for pyro_name, uri in self.uris.items():
            if pyro_name in wanted and listed.get(pyro_name) != uri:
                ns.register(pyro_name, uri, safe=False, metadata={f"http={self.node.url}"})
                logger.info("registered {} as {}", pyro_name, uri)
            elif pyro_name not in wanted and listed.get(pyro_name) == uri:
                ns.remove(pyro_name)
                logger.info("unregistered {}", pyro_name)

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        try:
            self._ns = None
            self.reconcile(leaving=True)
        except Exception as e:
            logger.warning("could not unregister from the name server: {}", e)


def run(p: Any, args: Any, name: str, cluster: list[str], prefer: bool = False) -> None:
    """prefer: this node stands first (the master entry point)."""
    if name not in cluster or len(set(cluster)) != len(cluster):
        p.error(f"--cluster must name every node once, this one ({name}) included; got "
                f"{cluster}")
    try:
        timing = el.Timing(args.election_min, args.election_max,
                           heartbeat=min(args.heartbeat_interval, args.lease / 4),
                           lease=args.lease)
        timing.check()
    except ValueError as e:
        p.error(f"--election-min/--election-max/--lease: {e}")
    logs.setup(name, args.log_level)
    log_config(args)
    tls.FAILOVER = True     # with TLS: whichever node is master holds replog.master
    configure_rpc(args, NODE_PREFIX + name)
    store = Store(args.data_dir, args.fsync, args.fsync_interval, offload=True) \
        if args.data_dir else None
    if store is None:
        logger.warning("failover without --data-dir: this node forgets its votes when it "
                       "restarts (it then waits one election timeout before it votes again)")
    def make_secondary(loaded: Any = None, commit: int = 0) -> Secondary:
        return Secondary(name, getattr(args, "delay", 0.0), getattr(args, "error_rate", 0.0),
                         store=store, max_ahead=getattr(args, "max_ahead", 10_000),
                         allow_faults=getattr(args, "allow_faults", False), loaded=loaded,
                         commit=commit, max_keys=args.max_keys)

    def make_master_role() -> Any:
        master = make_master(args, store, [n for n in cluster if n != name],
                             heartbeat=timing.heartbeat, heartbeat_timeout=timing.lease)
        master.shell.me = name
        return master

    try:
        initial = make_secondary()
        votes = VoteFile(args.data_dir or None)
        node = FailoverNode(el.Cluster(name, frozenset(cluster)), timing, votes, "",
                            initial, make_master_role, make_secondary, rpc.proxy,
                            first=prefer)
    except (DataDirError, ValueError) as e:
        fatal("{}{}", "the log is corrupt: " if isinstance(e, CorruptLog) else "", e)
    registrations = Registrations(args, node)
    node.on_role_change = registrations.poke

    def app_for(role: Any) -> Any:
        if _mastering(role):
            return master_app(role, args.max_body, args.allow_faults, args.max_batch)
        return secondary_app(role, args.max_body)

    def start() -> None:
        scheme = "https" if (args.https_dir or args.https_cert) else "http"
        node.url = args.advertise_url or \
            f"{scheme}://{args.advertise_host or args.host}:{args.bound_http_port}"
        logger.info("failover on: cluster {}, majority {}, election timeout {:g}-{:g} s, lease "
                    "{:g} s, heartbeat {:g} s; clients reach this node at {}",
                    sorted(cluster), node.cluster.majority, timing.election_min,
                    timing.election_max, timing.lease, timing.heartbeat, node.url)
        threading.Thread(target=node.loop, name="election", daemon=True).start()

    def stop() -> None:
        node.stop()
        registrations.stop()
        role = node.role
        if _mastering(role):
            role.stop()
        elif store is not None:
            store.close()

    run_node(args, NodeAPI(node), NODE_PREFIX + name, Front(node, app_for), on_stop=stop,
             on_bound=start, on_registered=registrations.attach)
