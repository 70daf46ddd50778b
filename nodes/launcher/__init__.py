"""Start a whole cluster as local processes: for development, demos, tests and benchmarks.

    python -m nodes.launcher                 # name server, master, two secondaries
    python -m nodes.launcher --secondaries 3 --delay 2
    python -m nodes.launcher --restart always --base-port 6000 --ns-port 9190 --fresh
    python -m nodes.launcher --failover      # every node may become master (an election)

The launcher checks its ports before it starts anything, gives every node a data directory
under --data-root, and keeps the cluster running when a node dies or is paused: it logs it,
prints the one-line command that starts the node again (also in DATA_ROOT/commands.sh), and
with --restart always starts it again itself. With --failover every node is started with
--failover --cluster master,secondary1,...; the launcher reads every node's /health
"failover" object, shows which node is master in its table, and logs each lost master, the
election's winner and a node back as a secondary (roles.py).

LocalCluster is the same thing as a library: real processes on free loopback ports, with
kill -9, SIGSTOP/SIGCONT and restart, used by the integration tests, the chaos test and
the benchmark.

The parts: procs (one node process, wait_until, http_json), cluster (LocalCluster), ports
(who holds a port, a process's state), roles (who is master, with --failover),
supervisor (the launcher's watch over its nodes),
cli (flags and main; python -m nodes.launcher runs __main__).
"""
from .cluster import LocalCluster
from .cli import main, parser
from .ports import check_ports, listener_of, listener_pid, port_taken, proc_state
from .procs import ROOT, Proc, free_port, http_json, wait_until
from .supervisor import Launcher

__all__ = ["LocalCluster", "Launcher", "Proc", "ROOT", "check_ports", "free_port", "http_json",
           "listener_of", "listener_pid", "main", "parser", "port_taken", "proc_state",
           "wait_until"]
