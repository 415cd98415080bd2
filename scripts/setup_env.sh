#!/usr/bin/env bash
# Create ./.venv (once) and install ppdistill with its dependencies into it.
# Usage: source scripts/setup_env.sh   (or bash scripts/setup_env.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON_BIN=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON_BIN" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c "import paddle, ppdistill; print('paddle', paddle.__version__, '| ppdistill', ppdistill.__version__)" 2>/dev/null
