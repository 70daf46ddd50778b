#!/usr/bin/env bash
# Install headless Chromium and its WebDriver from Debian's packages when they are missing,
# for the browser tests (tests/browser). Nothing is downloaded by Selenium itself: the tests
# use the chromedriver found on PATH. Needs root (or sudo) and apt-get; otherwise it says so
# and the browser tests skip themselves.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if { have chromium || have chromium-browser; } && have chromedriver; then
  exit 0
fi
if ! have apt-get; then
  echo "setup-browser: no apt-get here; install chromium and chromium-driver to run the browser tests" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if have sudo; then SUDO="sudo -n"; else
    echo "setup-browser: not root and no sudo; the browser tests will be skipped" >&2
    exit 0
  fi
fi
echo "setup-browser: installing chromium and chromium-driver from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
