#!/usr/bin/env bash
# Creates .venv with CPU torch 2.13.0 and nanovla (editable) plus the extras named in $1
# (default "test", which holds every extra's packages, matplotlib for `nanovla train`'s loss
# plot included; a lean install names its own, e.g. `bash scripts/setup.sh plots`).
# Idempotent: a second run only checks. The constraints file pins torch so that no
# requirement can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
fi
stamp=".venv/.nanovla-setup-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
    touch "$stamp"
fi
if [[ ",$extras," == *",test,"* ]]; then
    bash scripts/browser.sh  # headless Chromium for the report's browser test, where installable
fi
