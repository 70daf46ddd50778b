#!/usr/bin/env bash
# Install what is needed and run every test: unit, integration (real processes), chaos,
# the benchmark's quick mode, and the Docker end-to-end tests when a Docker engine answers.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not docker").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,bench
bash scripts/setup-browser.sh   # Debian's chromium + chromium-driver for tests/browser
if ! docker info >/dev/null 2>&1; then
  echo "############################################################################"
  echo "## NO DOCKER ENGINE ANSWERS: the Docker end-to-end tests will be SKIPPED.  ##"
  echo "## The process-level suite still runs.                                     ##"
  echo "############################################################################"
fi
# Two workers (pytest-xdist): one runs the container tests (docker, swarm) in order, the
# other everything else meanwhile, a module at a time (tests/conftest.py chooses the units).
# REPLOG_TEST_WORKERS=0 runs the suite in one process, in the same order.
workers="${REPLOG_TEST_WORKERS:-2}"
parallel=()
if [ "$workers" != 0 ]; then
  parallel=(-n "$workers" --no-loadscope-reorder)
fi
exec .venv/bin/python -m pytest -ra "${parallel[@]}" "$@"
