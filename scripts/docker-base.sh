#!/usr/bin/env bash
# Build the local base image (default replog-base:bookworm) from Debian packages, for machines
# that cannot pull from a container registry. Idempotent: does nothing when the image exists
# (pass --force to rebuild).
#
#   scripts/docker-base.sh [--force] [--image NAME:TAG]
#
# Environment: REPLOG_BASE_IMAGE (image name), REPLOG_DEBIAN_MIRROR (default
# http://deb.debian.org/debian), REPLOG_DEBIAN_SUITE (default bookworm). debootstrap works in a
# fresh scratch folder under ${TMPDIR:-/var/tmp}, removed afterwards.
set -euo pipefail

image="${REPLOG_BASE_IMAGE:-replog-base:bookworm}"
mirror="${REPLOG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="${REPLOG_DEBIAN_SUITE:-bookworm}"
force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=1 ;;
        --image) image="$2"; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "docker-base.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[docker-base] %s\n' "$*" >&2; }

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    log "base image $image already exists; skipping debootstrap"
    exit 0
fi

if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
    echo "docker-base.sh: building $image with debootstrap needs root on Linux; run it with" \
         "sudo, or build FROM a public image: scripts/docker-build.sh --public-base" >&2
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "docker-base.sh: debootstrap is missing and there is no apt-get to install it;" \
             "install debootstrap, or use scripts/docker-build.sh --public-base" >&2
        exit 1
    fi
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || log "apt-get update reported errors (continuing)"
    apt-get install -y -qq debootstrap >/dev/null
fi

rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/replog-rootfs.XXXXXX")"
cleanup() { rm -rf --one-file-system "$rootfs"; }
trap cleanup EXIT

# minbase + what the image needs: python3 with venv/ensurepip (pip comes from the bundled wheel),
# CA certificates (for installing from PyPI when wheels/ is empty). No init (tini) is needed:
# every node runs as PID 1 and installs its own SIGTERM and SIGINT handlers.
packages="python3,python3-venv,ca-certificates"
log "debootstrap $suite (minbase + $packages) into $rootfs from $mirror"
start=$(date +%s)
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
log "debootstrap took $(( $(date +%s) - start ))s"

# Slim it down: package caches, lists, docs, man pages, non-English locales.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.cache
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'en*' ! -name 'locale.alias' \
     -exec rm -rf {} + 2>/dev/null || true
# Point the image's apt at the same mirror (so `apt-get` works inside on a normal machine).
printf 'deb %s %s main\n' "$mirror" "$suite" >"$rootfs"/etc/apt/sources.list

log "importing $rootfs as $image"
tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "replog base: debootstrap $suite minbase + $packages" \
    - "$image" >/dev/null
log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
