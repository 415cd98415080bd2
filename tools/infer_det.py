"""`python tools/infer_det.py -c CONFIG -o Global.checkpoints=... Global.infer_img=PATH`"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppdistill.utils.cpu import setup_tool_process  # noqa: E402

setup_tool_process()  # before paddle is imported: MKL code path, no ccache warning

from ppdistill.infer.checkpoint import infer_det_main  # noqa: E402

if __name__ == "__main__":
    infer_det_main()
