#!/usr/bin/env bash
# The fast test suite on paddle 2.6 (the oldest paddle ppdistill supports; numpy < 2).
#
# Creates a venv OUTSIDE the checkout, installs paddlepaddle 2.6.2 + ppdistill[test] into it from
# the package index without pip's cache, and runs pytest -m "not slow" there (extra args go to
# pytest). Measured on the 2-core CI machine: 0.5-1 min install + 3-4.5 min tests.
#
#   bash scripts/test_paddle26.sh                          # fresh venv in a temp dir, removed after
#   PADDLE26_VENV=/tmp/venv26 bash scripts/test_paddle26.sh  # keep/reuse this venv (developers)
#   PYTHON=python3.11 bash scripts/test_paddle26.sh        # interpreter (paddle 2.6: 3.8 - 3.12)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON_BIN=${PYTHON:-python3}
PADDLE_VERSION=${PADDLE26_VERSION:-2.6.2}

if [ -n "${PADDLE26_VENV:-}" ]; then
  venv=$PADDLE26_VENV
else
  venv=$(mktemp -d "${TMPDIR:-/tmp}/ppdistill-paddle26.XXXXXX")
  trap 'rm -rf "$venv"' EXIT
fi

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON_BIN" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --no-cache-dir)
"${pip[@]}" "paddlepaddle==$PADDLE_VERSION" "numpy<2"
# numpy<2 again: the test extra (onnxruntime, matplotlib, opencv) must not pull numpy 2 back in
"${pip[@]}" -e ".[test]" "numpy<2"
"$venv/bin/python" -c "import numpy, paddle; print('paddle', paddle.__version__, '| numpy', numpy.__version__)" 2>/dev/null
installed=$(date +%s)
echo "paddle $PADDLE_VERSION venv installed in $(( installed - start )) s"

status=0
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$venv/bin/python" -m pytest -q -ra -m "not slow" "$@" \
  || status=$?
echo "paddle $PADDLE_VERSION tests ran in $(( $(date +%s) - installed )) s"
exit $status
