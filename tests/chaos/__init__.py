"""Chaos testing for the replicated log (issue 6).

A seeded nemesis injects faults (kill -9 / restart with the node's data directory, SIGSTOP /
SIGCONT, error injection, delays) into the secondaries of a local cluster, and kills / restarts
or pauses its master, while concurrent clients append unique messages. Every operation, fault and list sample is recorded in a :class:`History`, which
:func:`check` examines once the cluster has healed and converged.

Run it with ``.venv/bin/python -m tests.chaos --seed N --duration S``; see docs/chaos.md.
"""

from .history import (  # noqa: F401
    FaultEvent,
    FinalState,
    History,
    Op,
    ReplicaSample,
)
from .checker import Anomaly, check  # noqa: F401
