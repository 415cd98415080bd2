#!/usr/bin/env bash
# bash test_tipc/prepare.sh PARAMS_FILE MODE: make the data the chain needs.
# lite_train_lite_infer: a few synthetic images (detection or recognition, from the params file's
# model name) written by tools/gen_demo_data.py into $TIPC_OUTPUT/train_data/ (default
# test_tipc/output/train_data/, PaddleOCR's layout), never into the repository's ./train_data/.
set -eo pipefail
cd "$(dirname "$0")/.."
PYTHON_BIN=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
params=$1
mode=${2:-lite_train_lite_infer}
model=$(grep -m1 '^model_name:' "$params" | cut -d: -f2)
case "$model" in
  *det*) task=det ;;
  *rec*) task=rec ;;
  *) echo "prepare.sh: cannot tell the task of model '$model'" >&2; exit 2 ;;
esac
data_dir="${TIPC_OUTPUT:-test_tipc/output}/train_data"
if [ "$mode" = "lite_train_lite_infer" ]; then
  "$PYTHON_BIN" tools/gen_demo_data.py --task "$task" --num_train 8 --num_test 2 \
    --out_dir "$data_dir" --layout paddleocr
else
  "$PYTHON_BIN" tools/gen_demo_data.py --task "$task" --out_dir "$data_dir" --layout paddleocr
fi
