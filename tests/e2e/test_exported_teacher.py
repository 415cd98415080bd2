"""End to end: distil a student from a teacher given as an ONNX file (the export of a tiny native
model) on unlabelled images, with another dictionary, then export the student; and the two
shipped PP-OCRv5 distillation configs train one step with a tiny exported teacher."""
import os

import cv2
import numpy as np
import paddle
import pytest
import yaml
from exported_teachers import (TinyDetNet, TinyRecNet, block_image, block_teacher, det_onnx,
                               rec_onnx, write_dict)
from journey import REPO, run_tool

from ppdistill.modeling.architectures.exported_model import ExportedModel

pytest.importorskip("onnxruntime")

PATTERNS = ["aa-b-a--bb--a---", "bb--b---a-a-----", "a-b-a-b---------", "aaa--bbb-a------",
            "b-------a-------", "ab--ab--ab------"]   # 64 px wide: "aba", "bbaa"...
DECODE = {"DecodeImage": {"img_mode": "BGR", "channel_first": False}}


def distill_config(tmp_path, teacher_onnx, teacher_dict, student_dict):
    keep = {"KeepKeys": {"keep_keys": ["image", "label", "length"]}}
    resize = {"RecResizeImg": {"image_shape": [3, 32, 64]}}
    return {
        "Global": {"use_gpu": False, "epoch_num": 1, "max_iters": 3, "print_batch_step": 1,
                   "log_smooth_window": 1, "save_model_dir": str(tmp_path / "output"),
                   "save_epoch_step": 1, "eval_batch_step": [0, 3],
                   "cal_metric_during_train": False, "character_dict_path": student_dict,
                   "max_text_length": 8, "use_space_char": False, "seed": 3},
        "Architecture": {"name": "DistillationModel", "model_type": "rec",
                         "algorithm": "Distillation", "Models": {
                             "Teacher": {"model_type": "rec", "inference_model": teacher_onnx,
                                         "character_dict_path": teacher_dict,
                                         "input": {"shape": [3, 32, 64]}},
                             "Student": {"model_type": "rec", "algorithm": "CRNN",
                                         "Backbone": {"name": "MobileNetV1Enhance", "scale": 0.5},
                                         "Neck": {"name": "SequenceEncoder",
                                                  "encoder_type": "reshape"},
                                         "Head": {"name": "CTCHead"}}}},
        "Loss": {"name": "CombinedLoss", "loss_config_list": [
            {"DistillationDMLLoss": {"weight": 1.0, "act": "softmax", "use_log": True,
                                     "model_name_pairs": [["Student", "Teacher"]],
                                     "name": "dml_ctc"}},
            {"DistillationCTCLoss": {"weight": 1.0, "model_name_list": ["Student"]}}]},
        "Optimizer": {"name": "Adam", "lr": {"name": "Const", "learning_rate": 0.001}},
        "PostProcess": {"name": "DistillationCTCLabelDecode", "model_name": ["Student"]},
        "Metric": {"name": "DistillationMetric", "base_metric_name": "RecMetric",
                   "main_indicator": "acc", "key": "Student"},
        "Train": {"dataset": {"name": "ImageFolderDataSet",
                              "label_file_list": [str(tmp_path / "unlabelled")],
                              "pseudo_label": {"inference_model": teacher_onnx,
                                               "character_dict_path": teacher_dict,
                                               "image_shape": [3, 32, 64], "threshold": 0.9},
                              "transforms": [DECODE, {"CTCLabelEncode": None}, resize, keep]},
                  "loader": {"batch_size_per_card": 2, "shuffle": True, "drop_last": True,
                             "num_workers": 0}},
        "Eval": {"dataset": {"name": "SimpleDataSet", "data_dir": str(tmp_path),
                             "label_file_list": [str(tmp_path / "val.txt")],
                             "transforms": [DECODE, {"CTCLabelEncode": None}, resize, keep]},
                 "loader": {"batch_size_per_card": 2, "shuffle": False, "num_workers": 0}}}


@pytest.mark.slow
def test_distil_from_an_onnx_teacher_on_unlabelled_images_then_export(tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for index, pattern in enumerate(PATTERNS):
        cv2.imwrite(str(folder / f"img_{index}.png"), block_image(pattern, height=32))
    cv2.imwrite(str(tmp_path / "val_0.png"), block_image(PATTERNS[0], height=32))
    (tmp_path / "val.txt").write_text("val_0.png\tbab\n", encoding="utf-8")
    teacher_dict = write_dict(tmp_path / "teacher_dict.txt", list("abcd"))
    student_dict = write_dict(tmp_path / "student_dict.txt", list("bax"))   # another dictionary
    teacher = rec_onnx(block_teacher(), tmp_path / "teacher.onnx")
    config_path = tmp_path / "distill.yml"
    config_path.write_text(yaml.safe_dump(distill_config(tmp_path, teacher, teacher_dict,
                                                         student_dict)), encoding="utf-8")

    log = run_tool(["tools/train.py", "-c", config_path], tmp_path)
    assert "teacher covers 2 of the student's 3 characters" in log
    for key in ("dml_ctc_0", "loss_ctc_Student_0", "acc:"):
        assert key in log, key
    assert os.path.isfile(tmp_path / "output" / "latest.pdparams")

    inference = tmp_path / "inference"
    log = run_tool(["tools/export_model.py", "-c", config_path, "-o",
                    f"Global.checkpoints={tmp_path}/output/latest",
                    f"Global.save_inference_dir={inference}"], tmp_path)
    assert "sub-model Teacher is an exported model already" in log
    assert sorted(os.listdir(inference)) == ["Student"]
    # the exported student runs as a teacher itself: 16 steps over blank + "bax"
    student = ExportedModel(str(inference / "Student"), "rec", character_dict_path=student_dict,
                            input={"shape": [3, 32, 64]})
    student.eval()
    assert student(paddle.zeros([1, 3, 32, 64])).shape == [1, 16, 4]


def v5_overrides(teacher):
    return ["Global.use_gpu=false", "Train.loader.batch_size_per_card=2",
            "Train.loader.num_workers=0", "Eval.loader.num_workers=0",
            "Optimizer.lr.warmup_epoch=0",
            f"Architecture.Models.Teacher.inference_model={teacher}"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rec/PP-OCRv5_mobile_rec_distill.yml",
                                  "det/PP-OCRv5_mobile_det_distill.yml"])
def test_shipped_v5_distill_configs_train_one_step(name, tmp_path, monkeypatch):
    from test_shipped_configs import tiny_overrides

    from ppdistill.demo.det_data import make_det_dataset
    from ppdistill.demo.rec_data import make_rec_dataset
    from ppdistill.engine.run import build_trainer
    from ppdistill.utils.config import load_with_overrides
    from ppdistill.utils.logging import get_logger
    path = os.path.join(REPO, "configs", name)
    monkeypatch.chdir(tmp_path)
    if name.startswith("rec"):
        make_rec_dataset(root=str(tmp_path / "train_data/rec"), num_train=4, num_val=2, seed=3,
                         with_lmdb=False)
        # a teacher with the PP-OCRv5 dictionary (+ space): 18385 classes, 8 px per step (T 40)
        teacher = rec_onnx(TinyRecNet(18385, step=8), tmp_path / "teacher.onnx")
        extra = []
    else:
        make_det_dataset(root=str(tmp_path / "train_data/icdar2015/text_localization"),
                         num_train=2, num_test=1, image_size=(96, 64), seed=3)
        teacher = det_onnx(TinyDetNet(), tmp_path / "teacher.onnx")
        extra = ["Architecture.Models.Teacher.input.shape=[3,64,64]"]
    overrides = tiny_overrides(path) + v5_overrides(teacher) + extra
    config = load_with_overrides(path, overrides)
    trainer = build_trainer(config, get_logger())
    terms = trainer.train_step(next(iter(trainer.train_loader)))
    assert np.isfinite(terms["loss"]) and terms["loss"] > 0
