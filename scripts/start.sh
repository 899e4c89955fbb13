#!/usr/bin/env bash
# Set up a virtual environment with Trainpad, then start the studio on http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .
exec .venv/bin/python app.py "$@"
