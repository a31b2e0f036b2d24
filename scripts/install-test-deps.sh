#!/usr/bin/env bash
# Install the system packages the test suite uses, where they are missing and can be installed.
#
# Today: Debian's `chromium` and `chromium-driver` (headless browser check of the HTML report,
# tests/test_report_browser.py). Idempotent: does nothing when both are present. Never fails the build:
# without root or apt-get it prints why it did nothing, and the browser test then skips with that reason.
set -u

have_browser() {
    { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } &&
        command -v chromedriver >/dev/null 2>&1
}

if have_browser; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-test-deps: chromium/chromedriver missing and not root: browser test will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: chromium/chromedriver missing and no apt-get: browser test will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing chromium and chromium-driver with apt-get" >&2
if ! apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 ||
        echo "install-test-deps: apt-get could not install chromium chromium-driver: browser test will be skipped" >&2
fi
have_browser || echo "install-test-deps: chromium/chromedriver still missing: browser test will be skipped" >&2
exit 0
