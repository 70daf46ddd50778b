#!/usr/bin/env bash
# Make the access tokens deploy/swarm/stack.yml (and stack-failover.yml) reads as Swarm secrets: a token file (SHA-256
# digests only, what every node checks: REPLOG_TOKENS) and two tokens, each in a file of its
# own (mode 0600), printed nowhere:
#
#   DIR/tokens.json   the token file              -> secret `tokens`, on every node
#   DIR/admin.token   roles append,read,metrics,admin: yours (curl -H "Authorization: Bearer $(cat ...)")
#   DIR/probe.token   role read: the healthchecks -> secret `probe-token`, on every node
#
#   deploy/swarm/make-tokens.sh [--out DIR] [--image IMAGE]
#
#   --out DIR      where the files go (default deploy/swarm/tokens, next to stack.yml, which
#                  is what the stack reads unless REPLOG_TOKENS_DIR says otherwise; git-ignored)
#   --image IMAGE  the replog image that runs `python -m nodes.tokens` (default
#                  $REPLOG_IMAGE or replog:latest), so nothing but Docker is needed
#
# Idempotent: a token that exists is kept. More tokens (e.g. one per client, with only the
# roles it needs) go into the same file with `python -m nodes.tokens add NAME --roles ...
# --file DIR/tokens.json`; a Swarm secret cannot change, so a changed file takes a
# `docker stack deploy` under a new secret name (docs/deploy.md, "Tokens on Swarm").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/tokens"
image="${REPLOG_IMAGE:-replog:latest}"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift ;;
        --image) image="$2"; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
chmod 0700 "$out"
out="$(cd "$out" && pwd)"

add() {   # add NAME ROLES: the token into DIR/NAME.token, unless NAME is already in the file
    local name="$1" roles="$2"
    if [ -s "$out/$name.token" ]; then
        echo "kept    $name ($out/$name.token)"
        return
    fi
    umask 077
    docker run --rm --user "$(id -u):$(id -g)" -v "$out:/tokens" "$image" \
        python -m nodes.tokens add "$name" --roles "$roles" --file /tokens/tokens.json \
        > "$out/$name.token.tmp"
    mv "$out/$name.token.tmp" "$out/$name.token"
    echo "created $name ($roles) in $out/$name.token"
}
add admin append,read,metrics,admin
add probe read
