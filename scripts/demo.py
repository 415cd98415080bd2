"""The whole distillation journey on the bundled synthetic demo data, on the CPU.

Run by ``bash scripts/demo.sh`` (which sets up ``.venv`` first), or directly:
``python scripts/demo.py [--quick] [--workdir DIR]``.

Detection: train a teacher briefly, distill it into two students with
``configs/det/ch_PP-OCRv3_det_cml.yml`` (scaled down with ``-o``), evaluate Teacher / Student /
Student2, export, run ``tools/infer/predict_det.py`` on a demo image (boxes drawn into a PNG)
and extract the student weights. Recognition: train
``configs/rec/ch_PP-OCRv3_rec_distillation.yml`` briefly, evaluate Student and Teacher, export,
run ``tools/infer/predict_rec.py`` and extract the student.

This is a smoke-scale run: a few dozen CPU iterations from scratch. The numbers it prints are
what that reaches (recognition from scratch stays on the CTC blank plateau for thousands of
iterations on this hardware); they are not a measurement of what distillation gains.
"""
import argparse
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: (full, --quick) settings
DET_STEPS = {"teacher_iters": (40, 2), "cml_iters": (30, 2), "crop": (128, 64), "batch": (4, 2),
             "eval_side": (256, 64)}
REC_STEPS = {"iters": (30, 2), "batch": (8, 4)}


def log(message):
    print(f"\n=== {message}", flush=True)


def run(args, workdir, capture_metrics=False):
    """Run a tool from the repo with the venv's python, streaming its output; return it."""
    cmd = [sys.executable, os.path.join(REPO, args[0])] + [str(a) for a in args[1:]]
    print("$ " + " ".join(cmd[1:]), flush=True)
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONWARNINGS="ignore")
    process = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    for line in process.stdout:
        if "No ccache found" in line or "warnings.warn(warning_message)" in line:
            continue
        sys.stdout.write(line)
        lines.append(line)
    if process.wait() != 0:
        raise SystemExit(f"demo: step failed: {' '.join(cmd[1:])}")
    output = "".join(lines)
    return parse_metrics(output) if capture_metrics else output


def parse_metrics(output):
    """The ``key:value`` lines tools/eval.py prints after ``metric eval ***``."""
    metrics, started = {}, False
    for line in output.splitlines():
        if "metric eval ***" in line:
            started = True
            continue
        match = re.search(r"INFO: ([A-Za-z0-9_]+):([-0-9.eE]+)$", line.strip())
        if started and match:
            metrics[match.group(1)] = float(match.group(2))
    return metrics


def detection(workdir, quick, summary):
    pick = {k: v[1 if quick else 0] for k, v in DET_STEPS.items()}
    common = ["Global.use_gpu=false", "Global.print_batch_step=5" if not quick else
              "Global.print_batch_step=1", "Train.loader.num_workers=0",
              f"Train.loader.batch_size_per_card={pick['batch']}", "Eval.loader.num_workers=0",
              f"Eval.dataset.transforms.2.DetResizeForTest.limit_side_len={pick['eval_side']}",
              "Eval.dataset.transforms.2.DetResizeForTest.limit_type=max",
              "Global.eval_batch_step=[0,100000]", "Global.epoch_num=1000"]
    crop = f"size=[{pick['crop']},{pick['crop']}]"
    small_teacher = ["Architecture.Backbone.layers=18"]
    out = os.path.join(workdir, "output")

    log(f"detection 1/6: train a ResNet18-vd + LKPAN teacher for {pick['teacher_iters']} "
        f"iterations (ch_PP-OCRv3_det_teacher.yml, ResNet50 scaled down to 18 layers)")
    teacher = os.path.join(REPO, "configs/det/ch_PP-OCRv3_det_teacher.yml")
    run(["tools/train.py", "-c", teacher, "-o", *common,
         *small_teacher, f"Train.dataset.transforms.3.EastRandomCropData.{crop}",
         f"Global.max_iters={pick['teacher_iters']}", f"Global.save_model_dir={out}/det_teacher"],
        workdir)

    cml = os.path.join(REPO, "configs/det/ch_PP-OCRv3_det_cml.yml")
    cml_opts = [*common, f"Train.dataset.transforms.4.EastRandomCropData.{crop}",
                "Architecture.Models.Teacher.Backbone.layers=18",
                f"Architecture.Models.Teacher.pretrained={out}/det_teacher/latest"]
    log(f"detection 2/6: distill the frozen teacher into Student and Student2 with "
        f"{os.path.basename(cml)} for {pick['cml_iters']} iterations")
    run(["tools/train.py", "-c", cml, "-o", *cml_opts, f"Global.max_iters={pick['cml_iters']}",
         f"Global.save_model_dir={out}/det_cml"], workdir)

    log("detection 3/6: evaluate Teacher, Student and Student2 on the demo test set")
    metrics = run(["tools/eval.py", "-c", cml, "-o", *cml_opts,
                   f"Global.checkpoints={out}/det_cml/latest"], workdir, capture_metrics=True)
    for name, prefix in (("Student", ""), ("Student2", "Student2_"), ("Teacher", "Teacher_")):
        summary.append(("det", name, "hmean", metrics.get(prefix + "hmean"),
                        f"{out}/det_cml/latest.pdparams"))

    log("detection 4/6: export every sub-model (deploy the Student)")
    inference = os.path.join(workdir, "inference", "det_cml")
    run(["tools/export_model.py", "-c", cml, "-o", "Global.use_gpu=false",
         "Architecture.Models.Teacher.Backbone.layers=18",
         f"Global.checkpoints={out}/det_cml/latest", f"Global.save_inference_dir={inference}"],
        workdir)

    log("detection 5/6: predict_det with the exported Student on a demo image")
    image = os.path.join(workdir, "train_data/icdar2015/text_localization/ch4_test_images/img_1.jpg")
    drawn = os.path.join(workdir, "inference_results", "det")
    run(["tools/infer/predict_det.py", "--det_model_dir", os.path.join(inference, "Student"),
         "--image_dir", image, "--use_gpu", "false", "--det_limit_side_len", pick["eval_side"],
         "--draw_img_save_dir", drawn], workdir)
    png = os.path.join(drawn, "det_res_img_1.png")
    import cv2
    cv2.imwrite(png, cv2.imread(os.path.join(drawn, "det_res_img_1.jpg")))
    summary.append(("det", "Student", "boxes drawn", None, png))

    log("detection 6/6: extract the student weights")
    student = os.path.join(out, "det_student.pdparams")
    run(["tools/extract_submodel.py", "--checkpoint", f"{out}/det_cml/latest.pdparams",
         "--name", "Student", "--out", student], workdir)
    summary.append(("det", "Student", "weights", None, student))
    summary.append(("det", "Student", "inference model", None, os.path.join(inference, "Student")))


def recognition(workdir, quick, summary):
    pick = {k: v[1 if quick else 0] for k, v in REC_STEPS.items()}
    config = os.path.join(REPO, "configs/rec/ch_PP-OCRv3_rec_distillation.yml")
    out = os.path.join(workdir, "output")
    opts = ["Global.use_gpu=false", "Train.loader.num_workers=0", "Eval.loader.num_workers=0",
            f"Train.loader.batch_size_per_card={pick['batch']}",
            f"Eval.loader.batch_size_per_card={pick['batch']}",
            "Global.print_batch_step=5" if not quick else "Global.print_batch_step=1",
            "Global.eval_batch_step=[0,100000]", "Global.epoch_num=1000"]
    log(f"recognition 1/5: train {os.path.basename(config)} (Teacher and Student, DML + CTC + "
        f"SAR + distance) for {pick['iters']} iterations")
    run(["tools/train.py", "-c", config, "-o", *opts, f"Global.max_iters={pick['iters']}",
         f"Global.save_model_dir={out}/rec_distill"], workdir)

    log("recognition 2/5: evaluate Student and Teacher")
    metrics = run(["tools/eval.py", "-c", config, "-o", *opts,
                   f"Global.checkpoints={out}/rec_distill/latest"], workdir,
                  capture_metrics=True)
    for name, prefix in (("Student", ""), ("Teacher", "Teacher_")):
        summary.append(("rec", name, "acc", metrics.get(prefix + "acc"),
                        f"{out}/rec_distill/latest.pdparams"))
        summary.append(("rec", name, "norm_edit_dis", metrics.get(prefix + "norm_edit_dis"), ""))

    log("recognition 3/5: export the Student")
    inference = os.path.join(workdir, "inference", "rec_distill")
    run(["tools/export_model.py", "-c", config, "-o", "Global.use_gpu=false",
         f"Global.checkpoints={out}/rec_distill/latest", f"Global.save_inference_dir={inference}",
         "--models", "Student"], workdir)

    log("recognition 4/5: predict_rec with the exported Student")
    run(["tools/infer/predict_rec.py", "--rec_model_dir", os.path.join(inference, "Student"),
         "--image_dir", os.path.join(workdir, "train_data/rec/val/word_0.png"),
         "--use_gpu", "false"], workdir)

    log("recognition 5/5: extract the student weights")
    student = os.path.join(out, "rec_student.pdparams")
    run(["tools/extract_submodel.py", "--checkpoint", f"{out}/rec_distill/latest.pdparams",
         "--name", "Student", "--out", student], workdir)
    summary.append(("rec", "Student", "weights", None, student))
    summary.append(("rec", "Student", "inference model", None, os.path.join(inference, "Student")))


def print_summary(summary, seconds, quick):
    print("\n" + "=" * 100)
    scale = "quick smoke run" if quick else "smoke-scale run"
    print(f"ppdistill demo finished in {seconds / 60:.1f} min ({scale}: a few dozen CPU "
          f"iterations from scratch;\nthe metrics show the pipeline working, not the accuracy "
          f"distillation reaches with real data and schedules)")
    print(f"{'task':<5} {'model':<9} {'what':<16} {'value':>9}  where")
    for task, model, what, value, where in summary:
        shown = f"{value:9.4f}" if isinstance(value, float) else f"{'':>9}"
        print(f"{task:<5} {model:<9} {what:<16} {shown}  {where}")
    print("=" * 100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a couple of iterations per step")
    parser.add_argument("--workdir", default=REPO, help="where train_data/, output/, inference/ go")
    parser.add_argument("--task", choices=["det", "rec", "all"], default="all")
    args = parser.parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    log("demo data (generated once into ./train_data)")
    sizes = ["--num_train", "8", "--num_test", "2"] if args.quick else []
    run(["tools/gen_demo_data.py", "--task", args.task, *sizes, "--out_dir", "train_data",
         "--layout", "paddleocr"], workdir)
    summary = []
    if args.task in ("det", "all"):
        detection(workdir, args.quick, summary)
    if args.task in ("rec", "all"):
        recognition(workdir, args.quick, summary)
    print_summary(summary, time.time() - start, args.quick)
    return summary


if __name__ == "__main__":
    main()
