"""The recognition journey on tiny generated data: train PP-OCRv3 distillation, eval, export,
predict_rec on the export, checkpoint inference, extract the student and fine-tune it alone."""
import pytest
from journey import config, run_tool

from ppdistill.demo.rec_data import make_rec_dataset
from ppdistill.utils.safe_load import safe_load

V3 = config("rec/ch_PP-OCRv3_rec_distillation.yml")
SMALL = ["Global.use_gpu=false", "Global.print_batch_step=1", "Train.loader.num_workers=0",
         "Train.loader.batch_size_per_card=4", "Eval.loader.num_workers=0",
         "Eval.loader.batch_size_per_card=4"]


@pytest.mark.slow
def test_rec_v3_distillation_journey(tmp_path):
    make_rec_dataset(root=str(tmp_path / "train_data/rec"), num_train=8, num_val=4, seed=1,
                     with_lmdb=False)
    out = tmp_path / "output"
    log = run_tool(["tools/train.py", "-c", V3, "-o", *SMALL, "Global.epoch_num=1",
                    "Global.max_iters=2", f"Global.save_model_dir={out}",
                    "Global.eval_batch_step=[0,2]"], tmp_path)
    for key in ("dml_ctc_0", "dml_sar_0", "loss_distance_l2_Student_Teacher_0",
                "loss_ctc_Student_0", "loss_ctc_Teacher_1", "loss_sar_Student_0", "acc:"):
        assert key in log, key
    assert "cur metric, acc:" in log and "Teacher_acc" in log
    student = safe_load(str(out / "best_model_student.pdparams"))
    assert student["head.ctc_head.fc.weight"].shape[-1] == 6625

    log = run_tool(["tools/eval.py", "-c", V3, "-o", *SMALL,
                    f"Global.checkpoints={out}/best_accuracy"], tmp_path)
    assert "acc:" in log and "Teacher_acc:" in log and "norm_edit_dis:" in log

    inference = tmp_path / "inference"
    log = run_tool(["tools/export_model.py", "-c", V3, "-o", "Global.use_gpu=false",
                    f"Global.checkpoints={out}/best_accuracy",
                    f"Global.save_inference_dir={inference}", "--models", "Student"],
                   tmp_path)
    assert "input [None, 3, 48, -1]" in log
    log = run_tool(["tools/infer/predict_rec.py", "--rec_model_dir", inference / "Student",
                    "--image_dir", tmp_path / "train_data/rec/val", "--use_gpu", "false",
                    "--rec_batch_num", "2"], tmp_path)
    assert log.count("Predicts of ") == 4 and "ms/image" in log

    log = run_tool(["tools/infer_rec.py", "-c", V3, "-o", *SMALL,
                    f"Global.checkpoints={out}/best_accuracy",
                    f"Global.infer_img={tmp_path}/train_data/rec/val/word_0.png",
                    f"Global.save_res_path={tmp_path}/rec_res.txt"], tmp_path)
    lines = (tmp_path / "rec_res.txt").read_text().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["Student", "Teacher"]

    run_tool(["tools/extract_submodel.py", "--checkpoint", out / "best_accuracy.pdparams",
              "--name", "Student", "--out", tmp_path / "student.pdparams"], tmp_path)
    log = run_tool(["tools/train.py", "-c", config("rec/ch_PP-OCRv3_rec.yml"), "-o", *SMALL,
                    "Global.epoch_num=1", "Global.max_iters=1",
                    f"Global.save_model_dir={tmp_path}/student_out",
                    f"Global.pretrained_model={tmp_path}/student"], tmp_path)
    assert "tensors; missing 0, unexpected 0, shape-mismatched 0" in log, log[-3000:]


@pytest.mark.slow
def test_rec_dictionary_mismatch_fails_at_start(tmp_path):
    make_rec_dataset(root=str(tmp_path / "train_data/rec"), num_train=4, num_val=2, seed=1,
                     with_lmdb=False)
    dict_file = tmp_path / "small_dict.txt"
    dict_file.write_text("".join(f"{c}\n" for c in "abc"))
    log = run_tool(["tools/train.py", "-c", V3, "-o", *SMALL,
                    f"Global.character_dict_path={dict_file}",
                    "Architecture.Models.Student.Head.out_channels_list="
                    "{CTCLabelDecode: 6625, SARLabelDecode: 6627}"], tmp_path, expect_ok=False)
    assert "needs 5 classes, but the config sets 6625" in log and "Traceback" not in log
