"""A Master from the command line's flags (config.add_master_tuning): for the master entry
point, and for a failover node that wins an election."""
from __future__ import annotations

from typing import Any

from ..config import Parser
from ..core.calls import Pipeline
from ..core.health import HealthPolicy
from ..core.progress import Backoff
from ..serve import locate_ns_factory
from ..storage.store import Store
from .node import Master
from .shell import Timing
from .transport import PyroTransport


def check_master_tuning(p: Parser, args: Any) -> None:
    """The checks of add_master_tuning's flags that argparse cannot make (p.error: exit 2)."""
    try:
        HealthPolicy(args.suspect_after, args.unhealthy_after)
    except ValueError as e:
        p.error(str(e))
    if args.max_in_flight < 1 or args.pipeline_after < 0:
        p.error("--max-in-flight must be at least 1 and --pipeline-after at least 0")


def make_master(args: Any, store: Store | None, named: list[str], heartbeat: float | None = None,
                heartbeat_timeout: float | None = None, new_log: bool = False) -> Master:
    """A Master from add_master_tuning's flags (heartbeat*: failover's, if given)."""
    return Master(named, HealthPolicy(args.suspect_after, args.unhealthy_after),
                  Backoff(args.retry_base, args.retry_cap),
                  Timing(args.rpc_timeout, heartbeat or args.heartbeat_interval,
                         heartbeat_timeout or args.heartbeat_timeout,
                         args.discovery_interval, args.startup_wait),
                  PyroTransport(locate_ns_factory(args)), max_batch=args.max_batch, store=store,
                  new_log=new_log, max_keys=args.max_keys,
                  pipeline=Pipeline(args.max_in_flight, args.pipeline_after / 1000,
                                    args.max_batch))
