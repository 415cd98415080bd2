"""The detection journey on tiny generated data: train CML, eval, resume, export, extract,
fine-tune the student from the extracted weights, infer from the checkpoint and the export."""
import json
import os

import pytest
from journey import config, run_tool

from ppdistill.demo.det_data import make_det_dataset
from ppdistill.utils.safe_load import safe_load

CML = config("det/ch_PP-OCRv3_det_cml.yml")


def small(crop_index=4):
    """Tiny-run overrides; ``crop_index`` is EastRandomCropData's place in Train.transforms."""
    return ["Global.use_gpu=false", "Global.print_batch_step=1", "Train.loader.num_workers=0",
            "Train.loader.batch_size_per_card=2", "Eval.loader.num_workers=0",
            f"Train.dataset.transforms.{crop_index}.EastRandomCropData.size=[64,64]",
            "Eval.dataset.transforms.2.DetResizeForTest.limit_side_len=64",
            "Eval.dataset.transforms.2.DetResizeForTest.limit_type=max"]


SMALL = small()


@pytest.mark.slow
def test_det_cml_journey(tmp_path):
    make_det_dataset(root=str(tmp_path / "train_data/icdar2015/text_localization"),
                     num_train=4, num_test=2, image_size=(128, 96), seed=1)
    out = tmp_path / "output"
    log = run_tool(["tools/train.py", "-c", CML, "-o", *SMALL, "Global.epoch_num=1",
                    f"Global.save_model_dir={out}", "Global.eval_batch_step=[0,2]"], tmp_path)
    assert "loss = 1 * DistillationDilaDBLoss(dila_dbloss)" in log
    assert "epoch: [1/1], global_step: 2" in log and "dila_dbloss_Student_Teacher" in log
    assert "cur metric, precision:" in log
    for prefix in ("latest", "best_accuracy"):
        for ext in (".pdparams", ".pdopt", ".states"):
            assert (out / (prefix + ext)).is_file()
    student = safe_load(str(out / "best_model_student.pdparams"))
    assert "backbone.conv.conv.weight" in student

    # eval reports every sub-model
    log = run_tool(["tools/eval.py", "-c", CML, "-o", *SMALL,
                    f"Global.checkpoints={out}/latest"], tmp_path)
    for key in ("hmean:", "Student2_hmean:", "Teacher_hmean:"):
        assert key in log

    # resume continues at epoch 2 with the global step restored
    log = run_tool(["tools/train.py", "-c", CML, "-o", *SMALL, "Global.epoch_num=2",
                    f"Global.save_model_dir={out}", f"Global.checkpoints={out}/latest",
                    "Global.eval_batch_step=[0,100]"], tmp_path)
    assert "epoch: [2/2], global_step: 3" in log
    assert safe_load(str(out / "latest.states"))["global_step"] == 4

    # export every sub-model, deploy the Student
    inference = tmp_path / "inference"
    log = run_tool(["tools/export_model.py", "-c", CML, "-o", "Global.use_gpu=false",
                    f"Global.checkpoints={out}/best_accuracy",
                    f"Global.save_inference_dir={inference}"], tmp_path)
    assert "deploy the 'Student' sub-model" in log
    for name in ("Student", "Student2", "Teacher"):
        files = os.listdir(inference / name)
        assert "inference.pdiparams" in files

    # predict_det on the exported Student
    images = tmp_path / "train_data/icdar2015/text_localization/ch4_test_images"
    results = tmp_path / "det_res"
    log = run_tool(["tools/infer/predict_det.py", "--det_model_dir", inference / "Student",
                    "--image_dir", images, "--use_gpu", "false", "--det_limit_side_len", "64",
                    "--draw_img_save_dir", results], tmp_path)
    assert "ms/image" in log
    lines = (results / "det_results.txt").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0].split("\t")[1]) is not None
    assert (results / "det_res_img_1.jpg").is_file()

    # checkpoint inference
    log = run_tool(["tools/infer_det.py", "-c", CML, "-o", *SMALL,
                    f"Global.checkpoints={out}/best_accuracy", f"Global.infer_img={images}",
                    f"Global.save_res_path={tmp_path}/infer/predicts.txt"], tmp_path)
    assert (tmp_path / "infer/predicts.txt").read_text().count("\n") == 2

    # extract the student and fine-tune it alone from those weights
    log = run_tool(["tools/extract_submodel.py", "--checkpoint", out / "best_accuracy.pdparams",
                    "--name", "Student", "--out", tmp_path / "student.pdparams"], tmp_path)
    log = run_tool(["tools/train.py", "-c", config("det/ch_PP-OCRv3_det_student.yml"), "-o",
                    *small(3), "Global.epoch_num=1", "Global.max_iters=1",
                    f"Global.save_model_dir={tmp_path}/student_out",
                    f"Global.pretrained_model={tmp_path}/student"], tmp_path)
    assert "tensors; missing 0, unexpected 0, shape-mismatched 0" in log, log[-2000:]


@pytest.mark.slow
def test_bad_override_is_one_line_error(tmp_path):
    log = run_tool(["tools/train.py", "-c", CML, "-o", "Global.epoch_nums=5"], tmp_path,
                   expect_ok=False)
    assert "error: -o Global.epoch_nums=5: unknown key 'Global.epoch_nums'; did you mean " \
           "'epoch_num'?" in log
    assert "Traceback" not in log
