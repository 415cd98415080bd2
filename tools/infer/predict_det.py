"""`python tools/infer/predict_det.py --det_model_dir DIR --image_dir DIR_OR_FILE [--use_gpu false]`"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppdistill.utils.cpu import setup_tool_process  # noqa: E402

setup_tool_process()  # before paddle is imported: MKL code path, no ccache warning

from ppdistill.infer.text_detector import main  # noqa: E402

if __name__ == "__main__":
    main()
