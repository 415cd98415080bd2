#!/usr/bin/env bash
# PaddleOCR-style TIPC entry: bash test_tipc/test_train_inference_python.sh PARAMS_FILE MODE
# Trains, evaluates (if configured), exports and runs python inference; exits non-zero on failure.
set -eo pipefail
cd "$(dirname "$0")/.."
PYTHON_BIN=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PYTHON_BIN" test_tipc/tipc_runner.py "$1" "${2:-lite_train_lite_infer}"
