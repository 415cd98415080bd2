"""Two CPU processes under paddle.distributed.launch end with identical weights."""
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_two_process_cpu_launch(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "dist_train_script.py")
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
           "--log_dir", str(tmp_path / "log"), script, str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    logs = "".join(p.read_text() for p in (tmp_path / "log").glob("workerlog.*"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    assert int(ranks[0]["world"]) == 2
    # 8 samples, batch 2 per card, 2 cards -> 2 steps per epoch on each rank
    assert int(ranks[0]["steps"]) == int(ranks[1]["steps"]) == 2
    # trainable weights are all-reduced; BN running statistics stay per-rank (no SyncBN)
    names = [k for k in ranks[0].files if k.startswith("Student.")
             and not k.endswith(("._mean", "._variance"))]
    assert len(names) == 6
    for name in names:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
