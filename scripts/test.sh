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
exec .venv/bin/python -m pytest -ra "$@"
