"""The PP-OCRv4 detection journey on tiny generated data, through the real tools: train CML,
eval every sub-model, resume, export the re-parameterised Student, predict_det on it, extract the
Student and fine-tune ch_PP-OCRv4_det_student.yml from it; and PP-OCRv5 mobile det train ->
export -> predict_det."""
import json

import numpy as np
import pytest
from journey import config, det_overrides, export_difference, gen_demo_data, run_tool, \
    save_well_scaled

from ppdistill.utils.safe_load import safe_load

CML = config("det/ch_PP-OCRv4_det_cml.yml")
STUDENT = config("det/ch_PP-OCRv4_det_student.yml")
V5 = config("det/PP-OCRv5_mobile_det.yml")
IMAGES = "train_data/icdar2015/text_localization/ch4_test_images"
FUSED = "28 re-parameterised layers fused"   # PPLCNetV3 x0.75 det: 28 LearnableRepLayers


def predict_det(tmp_path, model_dir, results):
    """predict_det.py on the demo test image; returns its one result line's boxes."""
    log = run_tool(["tools/infer/predict_det.py", "--det_model_dir", model_dir,
                    "--image_dir", tmp_path / IMAGES, "--use_gpu", "false",
                    "--det_limit_side_len", "64", "--draw_img_save_dir", results], tmp_path)
    assert "ms/image" in log
    lines = (results / "det_results.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("img_1.jpg\t")
    assert (results / "det_res_img_1.jpg").is_file()
    return json.loads(lines[0].split("\t")[1])


@pytest.mark.slow
def test_v4_det_cml_journey(tmp_path):
    gen_demo_data(tmp_path, "det", num_train=2, num_test=1)
    small = det_overrides(crop_index=3, batch_size=1)
    out = tmp_path / "output"
    log = run_tool(["tools/train.py", "-c", CML, "-o", *small, "Global.epoch_num=1",
                    f"Global.save_model_dir={out}", "Global.eval_batch_step=[0,2]"], tmp_path)
    assert ("loss = 1 * DistillationDilaDBLoss(dila_dbloss) + 1 * DistillationDMLLoss(dml) "
            "+ 1 * DistillationDBLoss(db)") in log
    assert "frozen sub-models (eval-mode BatchNorm/Dropout, no gradient graph, not trained): " \
           "Teacher" in log
    for key in ("epoch: [1/1], global_step: 2", "dila_dbloss_Student_Teacher",
                "dila_dbloss_Student2_Teacher", "dml_thrink_maps_0", "db_Student2_loss_shrink_maps",
                "cur metric, precision:"):
        assert key in log, key
    for prefix in ("latest", "best_accuracy"):
        for ext in (".pdparams", ".pdopt", ".states"):
            assert (out / (prefix + ext)).is_file()
    assert len(safe_load(str(out / "best_model_student.pdparams"))) == 905

    # eval reports every sub-model
    log = run_tool(["tools/eval.py", "-c", CML, "-o", *small,
                    f"Global.checkpoints={out}/latest"], tmp_path)
    for key in ("precision:", "hmean:", "Student2_hmean:", "Teacher_hmean:"):
        assert key in log, key

    # resume from latest: epoch 2 continues at global step 3
    log = run_tool(["tools/train.py", "-c", CML, "-o", *small, "Global.epoch_num=2",
                    f"Global.save_model_dir={out}", f"Global.checkpoints={out}/latest",
                    "Global.eval_batch_step=[0,100]"], tmp_path)
    assert "loaded 2126/2126 tensors; missing 0, unexpected 0, shape-mismatched 0" in log
    assert "resume from" in log and "epoch: [2/2], global_step: 3" in log
    assert safe_load(str(out / "latest.states"))["global_step"] == 4

    # export the Student (re-parameterised) and deploy it with predict_det
    inference = tmp_path / "inference"
    log = run_tool(["tools/export_model.py", "-c", CML, "-o", "Global.use_gpu=false",
                    f"Global.checkpoints={out}/latest", f"Global.save_inference_dir={inference}",
                    "--models", "Student"], tmp_path)
    assert f"inference model Student saved to {inference}/Student (input [None, 3, -1, -1], " \
           f"{FUSED})" in log
    assert "deploy the 'Student' sub-model" in log
    assert isinstance(predict_det(tmp_path, inference / "Student", tmp_path / "det_res"), list)

    # extract the Student; fine-tune the student config from it
    log = run_tool(["tools/extract_submodel.py", "--checkpoint", out / "latest.pdparams",
                    "--name", "Student", "--out", tmp_path / "student.pdparams"], tmp_path)
    assert "wrote 905 tensors of 'Student'" in log
    log = run_tool(["tools/train.py", "-c", STUDENT, "-o", *det_overrides(4, batch_size=1),
                    "Global.epoch_num=1", "Global.max_iters=1",
                    f"Global.save_model_dir={tmp_path}/student_out",
                    f"Global.pretrained_model={tmp_path}/student"], tmp_path)
    assert "loaded 905/905 tensors; missing 0, unexpected 0, shape-mismatched 0" in log, log[-2000:]
    assert (tmp_path / "student_out/latest.pdparams").is_file()

    # the fused export computes the training form's function: the extracted Student with
    # well-scaled statistics (not saturated), exported by the tool, against its eval forward
    weights = tmp_path / "well_scaled"
    save_well_scaled(STUDENT, ["Global.use_gpu=false",
                               f"Global.pretrained_model={tmp_path}/student"], weights)
    log = run_tool(["tools/export_model.py", "-c", STUDENT, "-o", "Global.use_gpu=false",
                    f"Global.pretrained_model={weights}",
                    f"Global.save_inference_dir={tmp_path}/student_inference"], tmp_path)
    assert FUSED in log
    image = np.random.RandomState(0).uniform(-1, 1, (1, 3, 64, 96)).astype("float32")
    difference, expected = export_difference(
        STUDENT, ["Global.use_gpu=false", f"Global.pretrained_model={weights}"],
        tmp_path / "student_inference", image)
    assert expected.shape == (1, 1, 64, 96) and expected.std() > 0.05  # not saturated
    assert difference < 1e-5


@pytest.mark.slow
def test_v5_mobile_det_train_export_predict(tmp_path):
    gen_demo_data(tmp_path, "det", num_train=1, num_test=1)
    out = tmp_path / "output"
    log = run_tool(["tools/train.py", "-c", V5, "-o", *det_overrides(4, batch_size=1),
                    "Global.epoch_num=1", "Global.max_iters=1",
                    f"Global.save_model_dir={out}"], tmp_path)
    assert "epoch: [1/1], global_step: 1" in log and "loss_shrink_maps" in log
    inference = tmp_path / "inference"
    log = run_tool(["tools/export_model.py", "-c", V5, "-o", "Global.use_gpu=false",
                    f"Global.checkpoints={out}/latest",
                    f"Global.save_inference_dir={inference}"], tmp_path)
    assert f"inference model model saved to {inference} (input [None, 3, -1, -1], {FUSED})" \
           in log
    assert isinstance(predict_det(tmp_path, inference, tmp_path / "det_res"), list)
