"""The PP-OCRv4 recognition distillation journey on tiny generated data, through the real tools:
train ch_PP-OCRv4_rec_distill.yml (frozen SVTRNet teacher, PPLCNetV3 student, DKD + CTC + NRTR
+ CTC-logits losses), eval, resume, export both sub-models (the Student re-parameterised, the
Teacher at its fixed 48x320 input), predict_rec on both, extract the Student and fine-tune
ch_PP-OCRv4_rec.yml from it; and PP-OCRv5 mobile rec train -> export -> predict_rec."""
import shutil

import cv2
import numpy as np
import pytest
from journey import EN_DICT, config, export_difference, gen_demo_data, rec_overrides, \
    run_tool, save_well_scaled

from ppdistill.utils.safe_load import safe_load

DISTILL = config("rec/ch_PP-OCRv4_rec_distill.yml")
STUDENT = config("rec/ch_PP-OCRv4_rec.yml")
V5 = config("rec/PP-OCRv5_mobile_rec.yml")
FUSED = "28 re-parameterised layers fused"   # PPLCNetV3 rec: 28 LearnableRepLayers
CLASSES = 97   # en_dict.txt: 95 characters + space + CTC blank


def predict_rec(tmp_path, model_dir, image_dir, count):
    """predict_rec.py with the Latin dictionary; checks it printed ``count`` predictions."""
    log = run_tool(["tools/infer/predict_rec.py", "--rec_model_dir", model_dir,
                    "--image_dir", image_dir, "--use_gpu", "false", "--rec_batch_num", "2",
                    "--rec_char_dict_path", EN_DICT], tmp_path)
    assert log.count("Predicts of ") == count and "ms/image" in log, log[-2000:]
    return log


@pytest.mark.slow
def test_v4_rec_distillation_journey(tmp_path):
    gen_demo_data(tmp_path, "rec", num_train=4, num_test=2)
    small = rec_overrides(eval_dict_index=1)
    out = tmp_path / "output"
    log = run_tool(["tools/train.py", "-c", DISTILL, "-o", *small, "Global.epoch_num=1",
                    f"Global.save_model_dir={out}", "Global.eval_batch_step=[0,2]"], tmp_path)
    assert ("loss = 0.1 * DistillationDKDLoss(dkd) + 1 * DistillationCTCLoss(loss_ctc) + "
            "1 * DistillationNRTRLoss(loss_nrtr) + 1 * DistillCTCLogits(ctc_logits)") in log
    assert "frozen sub-models (eval-mode BatchNorm/Dropout, no gradient graph, not trained): " \
           "Teacher" in log
    for key in ("epoch: [1/1], global_step: 2", "dkd_0", "loss_ctc_Student_0",
                "loss_nrtr_Student_0", "ctc_logits_0", "cur metric, acc:"):
        assert key in log, key
    student = safe_load(str(out / "best_model_student.pdparams"))
    assert len(student) == 968 and student["head.ctc_head.fc.weight"].shape[-1] == CLASSES

    # eval: DistillationCTCLabelDecode on the MultiHead (CTC + NRTR) outputs of both models
    log = run_tool(["tools/eval.py", "-c", DISTILL, "-o", *small,
                    f"Global.checkpoints={out}/best_accuracy"], tmp_path)
    for key in ("acc:", "norm_edit_dis:", "Teacher_acc:", "Teacher_norm_edit_dis:"):
        assert key in log, key

    # resume from latest: epoch 2 continues at global step 3
    log = run_tool(["tools/train.py", "-c", DISTILL, "-o", *small, "Global.epoch_num=2",
                    "Global.max_iters=3", f"Global.save_model_dir={out}",
                    f"Global.checkpoints={out}/latest", "Global.eval_batch_step=[0,100]"],
                   tmp_path)
    assert "loaded 1259/1259 tensors; missing 0, unexpected 0, shape-mismatched 0" in log
    assert "resume from" in log and "epoch: [2/2], global_step: 3" in log
    assert safe_load(str(out / "latest.states"))["global_step"] == 3

    # export both: the Student fused, the SVTRNet Teacher at its fixed input size
    inference = tmp_path / "inference"
    log = run_tool(["tools/export_model.py", "-c", DISTILL, "-o", *small,
                    f"Global.checkpoints={out}/latest",
                    f"Global.save_inference_dir={inference}"], tmp_path)
    assert f"inference model Student saved to {inference}/Student (input [None, 3, 48, -1], " \
           f"{FUSED})" in log
    assert f"inference model Teacher saved to {inference}/Teacher (input [None, 3, 48, 320])" \
           in log
    val = tmp_path / "train_data/rec/val"
    predict_rec(tmp_path, inference / "Student", val, 2)
    # the Teacher accepts 48x320 only: a crop wider than 320/48 is fitted to it
    crops = tmp_path / "crops"
    crops.mkdir()
    for name in ("word_0.png", "word_1.png"):
        shutil.copy(val / name, crops / name)
    cv2.imwrite(str(crops / "wide.png"), cv2.resize(cv2.imread(str(val / "word_1.png")),
                                                      (400, 32)))
    predict_rec(tmp_path, inference / "Teacher", crops, 3)

    # extract the Student; fine-tune the student config from it
    log = run_tool(["tools/extract_submodel.py", "--checkpoint", out / "latest.pdparams",
                    "--name", "Student", "--out", tmp_path / "student.pdparams"], tmp_path)
    assert "wrote 968 tensors of 'Student'" in log
    student_small = rec_overrides(eval_dict_index=1)
    log = run_tool(["tools/train.py", "-c", STUDENT, "-o", *student_small,
                    "Global.epoch_num=1", "Global.max_iters=1",
                    f"Global.save_model_dir={tmp_path}/student_out",
                    f"Global.pretrained_model={tmp_path}/student"], tmp_path)
    assert "loaded 968/968 tensors; missing 0, unexpected 0, shape-mismatched 0" in log, log[-2000:]
    assert (tmp_path / "student_out/latest.pdparams").is_file()

    # the fused export computes the training form's function: the extracted Student with
    # well-scaled statistics (not saturated), exported by the tool, against its eval forward
    weights = tmp_path / "well_scaled"
    loaded = [*student_small, f"Global.pretrained_model={weights}"]
    save_well_scaled(STUDENT, [*student_small, f"Global.pretrained_model={tmp_path}/student"],
                     weights)
    log = run_tool(["tools/export_model.py", "-c", STUDENT, "-o", *loaded,
                    f"Global.save_inference_dir={tmp_path}/student_inference"], tmp_path)
    assert FUSED in log
    image = np.random.RandomState(0).uniform(-1, 1, (1, 3, 48, 160)).astype("float32")
    difference, expected = export_difference(STUDENT, loaded, tmp_path / "student_inference",
                                             image)
    assert expected.shape == (1, 20, CLASSES) and expected.max() < 0.99  # not saturated
    assert difference < 1e-5


@pytest.mark.slow
def test_v5_mobile_rec_train_export_predict(tmp_path):
    gen_demo_data(tmp_path, "rec", num_train=2, num_test=2)
    small = rec_overrides()
    out = tmp_path / "output"
    log = run_tool(["tools/train.py", "-c", V5, "-o", *small, "Global.epoch_num=1",
                    "Global.max_iters=1", f"Global.save_model_dir={out}"], tmp_path)
    assert "epoch: [1/1], global_step: 1" in log
    inference = tmp_path / "inference"
    log = run_tool(["tools/export_model.py", "-c", V5, "-o", *small,
                    f"Global.checkpoints={out}/latest",
                    f"Global.save_inference_dir={inference}"], tmp_path)
    assert f"inference model model saved to {inference} (input [None, 3, 48, -1], {FUSED})" \
           in log
    predict_rec(tmp_path, inference, tmp_path / "train_data/rec/val", 2)
