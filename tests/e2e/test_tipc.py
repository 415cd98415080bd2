"""TIPC lite_train_lite_infer chains (prepare + train/eval/export/infer) for the shipped configs."""
import os
import subprocess
import sys

import pytest
from journey import REPO

sys.path.insert(0, os.path.join(REPO, "test_tipc"))
from tipc_params import TipcParams  # noqa: E402


def test_params_parser(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("===========================train_params===========================\n"
                    "model_name:m\nnull:null\n##\n"
                    "Global.epoch_num:lite_train_lite_infer=1|whole_train_whole_infer=500\n"
                    "===========================infer_params===========================\n"
                    "--cpu_threads:1|2\n--use_gpu:False\n--det_model_dir:\n")
    params = TipcParams.parse(str(path))
    assert params.value("train_params", "model_name", "lite_train_lite_infer") == "m"
    assert params.value("train_params", "Global.epoch_num", "lite_train_lite_infer") == "1"
    assert params.value("train_params", "Global.epoch_num", "whole_train_whole_infer") == "500"
    grid = list(params.flag_grid("infer_params", "lite_train_lite_infer"))
    assert grid == [{"--cpu_threads": "1", "--use_gpu": "False"},
                    {"--cpu_threads": "2", "--use_gpu": "False"}]
    bad = tmp_path / "bad.txt"
    bad.write_text("model_name:m\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        TipcParams.parse(str(bad))


def _checkout_outputs():
    """Files under the checkout's output folders (./output, ./train_data, test_tipc/output)."""
    found = set()
    for folder in ("output", "train_data", os.path.join("test_tipc", "output")):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            found.update(os.path.join(root, name) for name in files)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ch_PP-OCRv3_det_cml", "ch_PP-OCRv3_rec_distillation"])
def test_lite_train_lite_infer(model, tmp_path):
    params = os.path.join("test_tipc", "configs", model, "train_infer_python.txt")
    env = dict(os.environ, PYTHON=sys.executable, TIPC_OUTPUT=str(tmp_path))  # not the checkout
    in_checkout = _checkout_outputs()
    subprocess.run(["bash", "test_tipc/prepare.sh", params, "lite_train_lite_infer"], cwd=REPO,
                   env=env, check=True, capture_output=True, timeout=600)
    result = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", params,
                             "lite_train_lite_infer"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=1800)
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "Run failed" not in result.stdout
    assert (tmp_path / "train_data").is_dir() and (tmp_path / model / "lite_train_lite_infer"
                                                   / "logs").is_dir()
    assert _checkout_outputs() - in_checkout == set()  # nothing written into the checkout
    # train, eval, export and the two-value --cpu_threads grid (x2 for rec's batch sizes)
    expected = 3 + (2 if "det" in model else 4)
    assert result.stdout.count("Run successfully with command - ") == expected
