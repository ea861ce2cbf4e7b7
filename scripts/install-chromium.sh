#!/usr/bin/env bash
# Debian's Chromium for the web UI's browser tests (Playwright drives it with executable_path: no
# browser download). Installed when missing and apt-get can (root); otherwise the browser tests say
# why they cannot run (and fail under FLOWPORT_REQUIRE_SERVICES=1).
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "chromium is not installed and apt-get is not usable here: install Debian's chromium package" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "chromium could not be installed: the browser tests will say so" >&2
exit 0
