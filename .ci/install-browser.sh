#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the browser tests (tests/browser), once.
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (or passwordless sudo);
# without it, exits 3 with a reason, and the browser tests skip with that reason.
# Never downloads a browser of its own: only Debian's packages.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install-browser: /usr/bin/chromium is missing and this user cannot install Debian" \
         "packages (not root, no passwordless sudo); run as root:" \
         "apt-get install -y chromium chromium-driver" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
test -x /usr/bin/chromium
