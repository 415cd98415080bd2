"""test_tipc writes under its own output folder ($TIPC_OUTPUT), never into ./train_data."""
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "test_tipc"))
import tipc_runner  # noqa: E402


def test_data_paths_are_redirected_into_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TIPC_OUTPUT", str(tmp_path))
    assert tipc_runner.output_root() == str(tmp_path)
    assert tipc_runner.redirect("./train_data/rec/val/") == f"{tmp_path}/train_data/rec/val/"
    assert tipc_runner.redirect("/data/x") == "/data/x"
    overrides = tipc_runner.dataset_overrides("configs/det/ch_PP-OCRv3_det_cml.yml")
    data = str(tmp_path / "train_data" / "icdar2015" / "text_localization")
    assert f"Train.dataset.data_dir={data}/" in overrides
    assert f"Eval.dataset.label_file_list=[{data}/test_icdar2015_label.txt]" in overrides
    params = os.path.join(REPO, "test_tipc", "configs", "ch_PP-OCRv3_det_cml",
                          "train_infer_python.txt")
    runner = tipc_runner.ChainRunner(params, "lite_train_lite_infer")
    assert runner.out_dir.startswith(str(tmp_path))
    train = runner.script("train_params", "norm_train")
    assert train[-len(overrides) - 1:] == ["-o", *overrides]
    assert not any("./train_data" in arg for arg in train)
