"""The README's main job (scripts/demo.py) in its --quick form, in a scratch directory."""
import os
import subprocess
import sys

import pytest
from journey import REPO


@pytest.mark.slow
def test_demo_quick(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--quick",
                             "--workdir", str(tmp_path)], capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    out = result.stdout
    assert "ppdistill demo finished" in out
    for row in ("det   Teacher   hmean", "det   Student2  hmean", "rec   Teacher   acc"):
        assert row in out
    assert (tmp_path / "inference_results/det/det_res_img_1.png").is_file()
    assert (tmp_path / "output/det_student.pdparams").is_file()
    assert (tmp_path / "output/rec_student.pdparams").is_file()
    assert (tmp_path / "inference/rec_distill/Student/inference.pdiparams").is_file()
