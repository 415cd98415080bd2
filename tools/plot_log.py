"""`python tools/plot_log.py OUTPUT_DIR [--out PNG]`: draw a run's train_log.jsonl as curves."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppdistill.utils.plot_log import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
