#!/usr/bin/env bash
# Install the system packages the test suite uses, where they are missing and can be installed.
#
# - Debian's `chromium` and `chromium-driver`: headless browser check of the HTML report (tests/test_report_browser.py).
# - `xvfb` and the X/GL libraries PyQt5's xcb platform and napari's OpenGL canvas load: the headless napari
#   screenshot (tests/test_project.py; Qt's "offscreen" platform has no OpenGL context for napari's canvas, so the
#   test runs napari under Xvfb with Mesa's software renderer).
# Idempotent: does nothing when everything is present. Never fails the build: without root or apt-get it prints why
# it did nothing, and the tests that need the missing programs skip with that reason.
set -u

have_browser() {
    { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } &&
        command -v chromedriver >/dev/null 2>&1
}

have_display() {
    command -v xvfb-run >/dev/null 2>&1 && command -v xauth >/dev/null 2>&1 &&
        ldconfig -p 2>/dev/null | grep -q libxcb-icccm.so.4 && ldconfig -p 2>/dev/null | grep -q libxcb-xinerama.so.0
}

packages=()
have_browser || packages+=(chromium chromium-driver)
have_display || packages+=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0 libgl1 libegl1
    libgl1-mesa-dri libglx-mesa0 libxcb-cursor0 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0
    libxcb-xfixes0 libxcb-xkb1 libfontconfig1 libdbus-1-3)
if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-test-deps: ${packages[*]} missing and not root: the browser/napari tests that need them will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: ${packages[*]} missing and no apt-get: the browser/napari tests that need them will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing ${packages[*]} with apt-get" >&2
if ! apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null 2>&1 ||
        echo "install-test-deps: apt-get could not install ${packages[*]}: the tests that need them will be skipped" >&2
fi
have_browser || echo "install-test-deps: chromium/chromedriver still missing: browser test will be skipped" >&2
have_display || echo "install-test-deps: xvfb or the Qt xcb libraries still missing: napari screenshot test will be skipped" >&2
exit 0
