#!/usr/bin/env bash
# Runs the test suite (sets up .venv first if the current Python lacks the requirements).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/python_env.sh pytest
"$PY" -m pytest -q tests "$@"
