#!/usr/bin/env bash
# Installs headless Chromium and a Korean font (Debian's `chromium`, `fonts-nanum`) for
# tests/test_report_browser.py, when no Chromium is on PATH and apt-get is usable (root, or
# sudo without a password). It never fails the set-up: where nothing can be installed it says
# so and the browser test skips with that reason.
set -uo pipefail
for browser in chromium chromium-browser google-chrome google-chrome-stable; do
    command -v "$browser" >/dev/null 2>&1 && exit 0
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no Chromium and no apt-get: tests/test_report_browser.py will skip" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "setup: no Chromium, and apt-get needs root: tests/test_report_browser.py will skip" >&2
    exit 0
fi
install() { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q chromium fonts-nanum >/dev/null 2>&1; }
echo "setup: installing chromium for the report's browser test (apt-get)" >&2
if ! install && ! { "${sudo[@]}" apt-get update -q >/dev/null 2>&1 && install; }; then
    echo "setup: apt-get install chromium failed: tests/test_report_browser.py will skip" >&2
fi
exit 0
