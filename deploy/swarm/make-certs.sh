#!/usr/bin/env bash
# Make the node-plane certificates deploy/swarm/stack.yml reads as Swarm secrets: one CA and
# a certificate for nameserver, master and secondary1..secondaryN (N = 5 by default: the
# stack as written mounts secondary1..5, its largest scale; stack-failover.yml uses nameserver,
# master, secondary1 and secondary2 of the same folder). Run once, on the manager you
# deploy from; `docker stack deploy` turns every file into a secret (docs/deploy.md).
#
#   deploy/swarm/make-certs.sh [--out DIR] [--secondaries N] [--image IMAGE]
#
#   --out DIR        where the files go (default deploy/swarm/certs, next to stack.yml, which
#                    is what the stack reads unless REPLOG_CERTS_DIR says otherwise)
#   --secondaries N  secondary1..secondaryN (default 5)
#   --image IMAGE    the replog image that runs `python -m nodes.certs` (default
#                    $REPLOG_IMAGE or replog:latest), so nothing but Docker is needed
#   --hosts LIST     names and IPs clients use to reach the nodes' HTTPS ports, put in every
#                    certificate (default localhost,127.0.0.1; add the hosts' names or IPs)
#
# Idempotent: what exists is kept (nodes.certs), so running it again with a larger N adds
# certificates under the same CA. DIR/ca.key is the CA's key: it never becomes a secret;
# keep it (and DIR) on the manager only, or move it away once the certificates exist.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/certs"
n=5
image="${REPLOG_IMAGE:-replog:latest}"
hosts="localhost,127.0.0.1"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift ;;
        --secondaries) n="$2"; shift ;;
        --image) image="$2"; shift ;;
        --hosts) hosts="$2"; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$n" in ''|*[!0-9]*) echo "--secondaries takes a number, not '$n'" >&2; exit 2 ;; esac

names="nameserver,master"
for i in $(seq 1 "$n"); do names="$names,secondary$i"; done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# As the caller's user, so that the files (keys: mode 0600) are readable by the `docker` CLI
# that reads them at deploy time.
docker run --rm --user "$(id -u):$(id -g)" -v "$out:/certs" "$image" \
    python -m nodes.certs --out /certs --names "$names" --hosts "$hosts"
echo "certificates for $names in $out"
