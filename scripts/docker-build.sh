#!/usr/bin/env bash
# Build the replog image (default tag replog:latest) with no container registry needed.
# Idempotent, and what CI calls. Steps:
#   1. base image: replog-base:bookworm from Debian packages (scripts/docker-base.sh; skipped when
#      it already exists), or python:3.11-slim with --public-base;
#   2. wheels: `pip download` of [project].dependencies of pyproject.toml into wheels/ (skipped
#      when wheels/ already satisfies them);
#   3. docker build with --build-arg BASE_IMAGE=<base>, tagged replog:latest;
#   4. smoke check: every role's entry point starts (--help) in the image.
#
#   scripts/docker-build.sh [--public-base] [--base IMAGE] [--tag TAG] [--no-wheels]
#                           [--rebuild-base] [--no-cache] [--quiet]
#
#   --public-base   FROM python:3.11-slim (pulled from a registry) instead of the local base
#   --base IMAGE    FROM IMAGE (skips the local base build)
#   --tag TAG       image tag (default replog:latest, or $REPLOG_IMAGE)
#   --no-wheels     do not download wheels (the build installs from wheels/ if it holds any,
#                   else from PyPI)
#   --rebuild-base  rebuild the local base image even when it exists
#   --no-cache      docker build --no-cache
#   --quiet         only print errors and the final line
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

tag="${REPLOG_IMAGE:-replog:latest}"
local_base="${REPLOG_BASE_IMAGE:-replog-base:bookworm}"
public_base="python:3.11-slim"
base=""
wheels=1
rebuild_base=0
no_cache=()
quiet=0
while [ $# -gt 0 ]; do
    case "$1" in
        --public-base) base="$public_base" ;;
        --base) base="$2"; shift ;;
        --tag) tag="$2"; shift ;;
        --no-wheels) wheels=0 ;;
        --rebuild-base) rebuild_base=1 ;;
        --no-cache) no_cache=(--no-cache) ;;
        -q|--quiet) quiet=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "docker-build.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

t0=$(date +%s)
log() { [ "$quiet" = 1 ] || printf '[docker-build] %s\n' "$*" >&2; }
run_quiet() {  # run a command; in quiet mode show its output only when it fails
    if [ "$quiet" = 1 ]; then
        local out; out="$(mktemp)"
        if ! "$@" >"$out" 2>&1; then cat "$out" >&2; rm -f "$out"; return 1; fi
        rm -f "$out"
    else
        "$@" >&2
    fi
}

if ! docker info >/dev/null 2>&1; then
    echo "docker-build.sh: no Docker engine answers ('docker info' failed)" >&2
    exit 1
fi

# 1. base image ---------------------------------------------------------------------------------
if [ -z "$base" ]; then
    base="$local_base"
    base_args=(--image "$base")
    [ "$rebuild_base" = 1 ] && base_args+=(--force)
    run_quiet "$repo/scripts/docker-base.sh" "${base_args[@]}"
fi
log "base image: $base"

# 2. wheels --------------------------------------------------------------------------------------
mkdir -p wheels
if [ "$wheels" = 1 ]; then
    py="$(command -v python3 || command -v python)"
    reqs="$(mktemp)"
    trap 'rm -f "$reqs"' EXIT
    # The pins are [project].dependencies of pyproject.toml, as in the Dockerfile.
    "$py" - "$reqs" <<'PY'
import sys
deps = []
try:
    import tomllib
    with open("pyproject.toml", "rb") as f:
        deps = tomllib.load(f).get("project", {}).get("dependencies", [])
except (FileNotFoundError, ImportError) as e:   # no pyproject.toml, or Python < 3.11
    sys.exit(f"cannot read [project].dependencies from pyproject.toml: {e}")
if not deps:
    sys.exit("pyproject.toml lists no [project].dependencies")
with open(sys.argv[1], "w") as f:
    f.write("\n".join(deps) + "\n")
PY
    # Wheels for the image's interpreter (CPython 3.11), whatever the host runs.
    target=(--only-binary=:all: --python-version 3.11 --implementation cp)
    if "$py" -m pip download --quiet --no-index --find-links wheels -d wheels "${target[@]}" \
            -r "$reqs" >/dev/null 2>&1; then
        log "wheels/ already has every dependency; no download"
    else
        log "downloading wheels into wheels/: $(tr '\n' ' ' <"$reqs")"
        run_quiet "$py" -m pip download --disable-pip-version-check -d wheels "${target[@]}" -r "$reqs"
    fi
fi

# 3. image ---------------------------------------------------------------------------------------
log "docker build -t $tag --build-arg BASE_IMAGE=$base ."
t1=$(date +%s)
run_quiet docker build ${no_cache[@]+"${no_cache[@]}"} --build-arg "BASE_IMAGE=$base" -t "$tag" .
log "docker build took $(( $(date +%s) - t1 ))s"
# Drop the untagged images that earlier builds of this Dockerfile left behind (ours only).
docker image prune -f --filter dangling=true --filter label=org.opencontainers.image.title=replog \
    >/dev/null 2>&1 || true

# 4. smoke check ---------------------------------------------------------------------------------
# The entry points import every dependency; fail here rather than in a container that restarts.
for module in nameserver nodes.master_node nodes.secondary_node; do
    docker run --rm --network none "$tag" python -m "$module" --help >/dev/null
done
printf '[docker-build] built %s (FROM %s) in %ss\n' "$tag" "$base" "$(( $(date +%s) - t0 ))"
