"""`python tools/export_model.py -c CONFIG -o Global.checkpoints=... Global.save_inference_dir=...`

A DistillationModel is written as one inference model per sub-model:
``<save_inference_dir>/<Name>/inference.*``; ``--models Student`` exports only the named ones.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppdistill.utils.cpu import setup_tool_process  # noqa: E402

setup_tool_process()  # before paddle is imported: MKL code path, no ccache warning

from ppdistill.engine.export import export_main  # noqa: E402

if __name__ == "__main__":
    export_main()
