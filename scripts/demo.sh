#!/usr/bin/env bash
# Fresh machine -> the whole distillation journey on CPU (5.3 min measured on 2 cores, plus the first install):
# sets up ./.venv, generates the demo data if missing, then det (teacher -> CML students -> eval ->
# export -> predict_det PNG -> student extraction) and rec (v3 distillation -> eval -> export ->
# predict_rec -> extraction), ending with a summary table. Extra args go to scripts/demo.py
# (e.g. --quick, --task det).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/demo.py "$@"
