#!/usr/bin/env bash
# Install what is needed and start a local cluster: name server :9090, master :5000,
# secondary1 :5001, secondary2 :5002 (pass --delay 2 to slow secondary2). Ctrl-C stops all.
# A node that dies or is paused leaves the rest running; see --help (--restart, --base-port,
# --ns-port, --data-root, --fresh) and README's "Faults on the local cluster". --failover:
# every node may become master; kill -9 the master and the launcher logs who is elected.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m nodes.launcher "$@"
