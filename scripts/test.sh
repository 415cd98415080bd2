#!/usr/bin/env bash
# Fresh machine -> whole test suite: sets up ./.venv, installs, runs pytest (extra args go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m pytest -q -ra "$@"
