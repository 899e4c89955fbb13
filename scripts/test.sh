#!/usr/bin/env bash
# Set up a virtual environment with Trainpad and its dev tools, then run the whole test suite (all but `gpu`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q -m "not gpu" "$@"
