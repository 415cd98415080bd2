"""Training step time with a black-box (exported) teacher vs the same teacher as a native model.

    python benchmark/exported_teacher.py                    # 2 rounds, forms native,paddle,onnx
    python benchmark/exported_teacher.py --rounds 3 --iters 12 --warmup 3
    python benchmark/exported_teacher.py --forms native,onnx
    python benchmark/exported_teacher.py --precision fp32,bf16 --tasks det,rec --rounds 2

Issue 10 ("Any teacher, any data") §2. A PP-OCRv4 mobile rec Student
(``configs/rec/ch_PP-OCRv4_rec.yml``'s architecture, trained from scratch) is distilled from the
same architecture as Teacher in three forms that compute the same function:

- ``native``: a frozen sub-model of the DistillationModel (``freeze_params: true``) whose
  ``pretrained`` weights are the released PP-OCRv4 mobile rec imported with
  ``tools/import_weights.py`` (ppdistill's frozen-teacher speed-ups as shipped);
- ``paddle``: those weights exported with ``tools/export_model.py`` and given as
  ``inference_model: <dir>`` (run by paddle.inference);
- ``onnx``: the released ONNX itself (``python -m ppdistill.released fetch
  ppocrv4_mobile_rec_onnx``) given as ``inference_model: <file>.onnx`` (run by onnxruntime).

The losses are those of ``configs/rec/PP-OCRv5_mobile_rec_distill.yml`` (DistillCTCLogits
Student/Teacher on ``head_out`` + the Student's CTC and NRTR losses), which an exported teacher
supports. Data: the generated rec set of ``benchmark/run.py`` (batch 8, 3x48x320). Every form
runs in a fresh process, alternating per round (A B C, C B A, ...); each child runs
``--warmup`` steps then ``--iters`` timed steps and reports the median step time and the
median teacher-forward time (``run.py``'s PhaseTimer). Each child also saves the Teacher's
CTC probabilities on 8 fixed validation images; the parent prints the max |difference|
between the forms. Threads are the defaults of each runtime (printed), nothing is forced.

``--precision fp32,bf16`` (issue 11) measures instead the released PP-OCRv4 mobile det and rec
Paddle exports (``python -m ppdistill.released fetch ppocrv4_mobile_det|ppocrv4_mobile_rec``,
``.pdmodel``) as ``inference_model:`` teachers with ``precision: fp32`` vs ``bf16``: per task, a
small student (det: ``ch_PP-OCRv3_det_student.yml``'s architecture, batch 4 at 320x320, losses
of ``PP-OCRv5_mobile_det_distill.yml``; rec: ``ch_PP-OCRv3_rec.yml``'s, batch 8 at 3x48x320,
DML on the CTC output + the student's CTC loss) trains ``--steps`` steps from the same seed on
the same data in a fresh process per precision, alternating (fp32 bf16 / bf16 fp32 ...). Each
child reports the teacher's forward ms/batch alone (training mode, ``--forward-reps`` runs on
the fixed inputs, median) and inside the training steps (``run.py``'s PhaseTimer, median),
the total loss at the last step and the mean of the last 10, and saves the teacher's
training-mode output on 8 fixed images; the parent prints max/mean |diff| bf16 vs fp32 of those
outputs and of the losses (and fp32 vs fp32 across rounds: the run-to-run noise).
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)
sys.path.insert(1, REPO)

import compare  # noqa: E402  (benchmark/compare.py: round orders)
import run  # noqa: E402  (benchmark/run.py: data, overrides, PhaseTimer)
import sysinfo  # noqa: E402  (benchmark/sysinfo.py)

TASK = "rec_v4_teacher_forms"
ARCH_CONFIG = "configs/rec/ch_PP-OCRv4_rec.yml"
LOSS_CONFIG = "configs/rec/PP-OCRv5_mobile_rec_distill.yml"  # losses for an exported teacher
RELEASED_ID = "ppocrv4_mobile_rec_onnx"
FORMS = ("native", "paddle", "onnx")
FORM_TEXT = {"native": "native frozen sub-model (imported weights)",
             "paddle": "tools/export_model.py export, paddle.inference",
             "onnx": "released ONNX, onnxruntime"}
BATCH = 8
run.TASKS[TASK] = {"config": ARCH_CONFIG, "batch": BATCH, "iters": 10,
                   "infer_shape": [1, 3, 48, 320]}


BF16_TASKS = {  # task -> released export, student architecture, losses, batch
    "det": {"released": "ppocrv4_mobile_det", "student": "configs/det/ch_PP-OCRv3_det_student.yml",
            "losses": "configs/det/PP-OCRv5_mobile_det_distill.yml", "batch": 4,
            "shape": [3, 320, 320]},
    "rec": {"released": "ppocrv4_mobile_rec", "student": "configs/rec/ch_PP-OCRv3_rec.yml",
            "losses": None, "batch": 8, "shape": [3, 48, 320]},
}
for _task, _spec in BF16_TASKS.items():
    run.TASKS[f"{_task}_bf16teacher"] = {"config": _spec["student"], "batch": _spec["batch"],
                                         "iters": 50, "infer_shape": [1] + _spec["shape"]}
PRECISIONS = ("fp32", "bf16")
REC_DML_LOSSES = [
    {"DistillationDMLLoss": {"weight": 1.0, "act": "softmax", "use_log": True,
                             "model_name_pairs": [["Student", "Teacher"]], "key": "head_out",
                             "multi_head": True, "dis_head": "ctc", "name": "dml_ctc"}},
    {"DistillationCTCLoss": {"weight": 1.0, "model_name_list": ["Student"], "key": "head_out",
                             "multi_head": True}}]


# ------------------------------------------------------------------------ teacher files
def prepare_teacher(work_root):
    """Released ONNX, its weights imported to .pdparams, and their Paddle export (cached)."""
    from ppdistill.released import fetch
    onnx_path = fetch(RELEASED_ID)["model"]
    os.makedirs(work_root, exist_ok=True)
    weights = os.path.join(work_root, "teacher_v4rec.pdparams")
    export_dir = os.path.join(work_root, "teacher_v4rec_infer")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not os.path.isfile(weights):
        subprocess.run([sys.executable, "tools/import_weights.py", "-c", ARCH_CONFIG,
                        "--source", onnx_path, "--out", weights], cwd=REPO, env=env, check=True)
    if not os.path.isdir(export_dir):
        subprocess.run([sys.executable, "tools/export_model.py", "-c", ARCH_CONFIG, "-o",
                        f"Global.pretrained_model={weights[:-len('.pdparams')]}",
                        f"Global.save_inference_dir={export_dir}"],
                       cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return {"onnx": onnx_path, "weights": weights, "export_dir": export_dir}


def teacher_section(form, arch, teacher, dict_path):
    """``Architecture.Models.Teacher`` of ``form`` (``arch``: the single-model architecture)."""
    if form == "native":
        section = copy.deepcopy(arch)
        section.update(pretrained=teacher["weights"], freeze_params=True, return_all_feats=True)
        return section
    return {"model_type": "rec",
            "inference_model": teacher["export_dir"] if form == "paddle" else teacher["onnx"],
            "character_dict_path": dict_path, "use_space_char": True,
            "output_keys": ["head_out", "ctc"], "input": {"shape": [3, 48, 320]}}


def distill_config(form, data_dir, work_dir, teacher):
    """The single-model v4 rec config turned into Student + Teacher(form) distillation."""
    from ppdistill.utils.config import load_with_overrides
    config = load_with_overrides(os.path.join(REPO, ARCH_CONFIG),
                                 run.overrides(TASK, data_dir, work_dir, 0))
    losses = load_with_overrides(os.path.join(REPO, LOSS_CONFIG), [])
    arch = config["Architecture"]
    student = copy.deepcopy(arch)
    student.update(freeze_params=False, return_all_feats=True)
    config["Architecture"] = {
        "model_type": "rec", "name": "DistillationModel", "algorithm": "Distillation",
        "Models": {"Teacher": teacher_section(form, arch, teacher,
                                              config["Global"]["character_dict_path"]),
                   "Student": student}}
    for section in ("Loss", "PostProcess", "Metric"):
        config[section] = copy.deepcopy(losses[section])
    return config


def fixed_images(data_dir, count=BATCH):
    """``count`` different validation images (3x48x320, rec normalisation): the output check."""
    import numpy as np
    return np.concatenate([_val_image(data_dir, index) for index in range(count)])


def _val_image(data_dir, index):
    import cv2
    import numpy as np
    image = cv2.imread(os.path.join(data_dir, "val", f"word_{index}.png"))
    image = cv2.resize(image, (320, 48)).astype("float32") / 255.0
    return ((image - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32)


def teacher_probabilities(model, images):
    """The Teacher's CTC probabilities ``[N, T, C]`` on ``images`` (eval-mode forward)."""
    import paddle
    teacher = model.sub_model("Teacher")
    x = paddle.to_tensor(images)
    with paddle.no_grad():
        if hasattr(teacher, "probabilities"):  # an exported teacher
            return teacher.probabilities(x).numpy()
        teacher.eval()  # native: MultiHead's eval output is the CTC softmax
        out = teacher(x)
    while isinstance(out, dict):
        out = out.get("head_out", out.get("ctc"))
    return out.numpy()


def runtime_threads(form, model):
    """Threads the Teacher's runtime uses (each runtime's default, nothing forced here)."""
    if form == "native":
        return f"paddle {run.apply_cpu_settings(0, -1)['paddle_threads']}"
    if form == "onnx":
        options = model.sub_model("Teacher").runner.session.get_session_options()
        return f"onnxruntime {options.intra_op_num_threads}"
    # ExportedModel's default cpu_threads: OMP_NUM_THREADS (paddle pins it to 1 at import)
    return f"paddle.inference {os.environ.get('OMP_NUM_THREADS', '1')}"


# ------------------------------------------------------------- bf16 vs fp32 exported teacher
def bf16_config(task, precision, teacher_dir, data_dir, work_dir):
    """Student (``BF16_TASKS[task]``) + the released export as Teacher with ``precision``."""
    from ppdistill.utils.config import load_with_overrides
    spec, name = BF16_TASKS[task], f"{task}_bf16teacher"
    config = load_with_overrides(os.path.join(REPO, spec["student"]),
                                 run.overrides(name, data_dir, work_dir, 0))
    student = copy.deepcopy(config["Architecture"])
    student.update(freeze_params=False)
    teacher = {"model_type": task, "inference_model": teacher_dir, "precision": precision,
               "input": {"shape": spec["shape"]}}
    if task == "rec":
        student["return_all_feats"] = True
        teacher.update(character_dict_path=config["Global"]["character_dict_path"],
                       use_space_char=True, output_keys=["head_out", "ctc"])
        config["Loss"] = {"name": "CombinedLoss", "loss_config_list": REC_DML_LOSSES}
        config["PostProcess"] = {"name": "DistillationCTCLabelDecode", "model_name": ["Student"],
                                 "key": "head_out", "multi_head": True}
        config["Metric"] = {"name": "DistillationMetric", "base_metric_name": "RecMetric",
                            "main_indicator": "acc", "key": "Student"}
    else:
        losses = load_with_overrides(os.path.join(REPO, spec["losses"]), [])
        for section in ("Loss", "PostProcess", "Metric"):
            config[section] = copy.deepcopy(losses[section])
    config["Architecture"] = {"model_type": task, "name": "DistillationModel",
                              "algorithm": "Distillation",
                              "Models": {"Teacher": teacher, "Student": student}}
    return config


def bf16_fixed_images(task, data_dir):
    """8 fixed inputs of the teacher: rec validation words; det 320x320 crops of the test pages
    (ImageNet normalisation)."""
    import cv2
    import numpy as np
    if task == "rec":
        return fixed_images(data_dir)
    images = []
    folder = os.path.join(data_dir, "ch4_test_images")
    for name in sorted(os.listdir(folder))[:2]:
        page = cv2.imread(os.path.join(folder, name)).astype("float32") / 255.0
        for top, left in ((0, 0), (0, 320), (200, 400), (400, 0)):
            crop = page[top:top + 320, left:left + 320]
            crop = (crop - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
            images.append(crop.transpose(2, 0, 1)[None].astype(np.float32))
    return np.concatenate(images)


def run_bf16_child(args):
    import numpy as np
    from ppdistill.utils.cpu import setup_tool_process
    setup_tool_process()
    import paddle
    from ppdistill.engine.launch import prepare_run
    from ppdistill.engine.run import build_trainer

    task, precision = args.bf16_child.split(":")
    config = bf16_config(task, precision, args.teacher, args.data_dir, args.work_dir)
    logger = prepare_run(config, "benchmark")
    trainer = build_trainer(config, logger)
    model = getattr(trainer.model, "_layers", trainer.model)
    teacher = model.sub_model("Teacher")
    trainer.model.train()
    images = paddle.to_tensor(bf16_fixed_images(task, args.data_dir)[:BF16_TASKS[task]["batch"]])
    forward_s = []
    for _ in range(args.forward_reps + 2):  # the teacher alone, training mode, 2 warm-up runs
        start = time.perf_counter()
        with paddle.no_grad():
            teacher(images)
        forward_s.append(time.perf_counter() - start)
    phases = run.PhaseTimer(trainer)
    stream, losses, teacher_s, steps = run.batches(trainer.train_loader), [], [], []
    for step in range(args.steps):
        batch = next(stream)
        start = time.perf_counter()
        terms = trainer.train_step(batch)
        steps.append(time.perf_counter() - start)
        times, _ = phases.take()
        teacher_s.append(times.get("fwd Teacher", 0.0))
        losses.append(terms["loss"])
        if (step + 1) % 10 == 0 or step == 0:
            print(f"[{task} {precision}] step {step + 1}/{args.steps}: {steps[-1]:.3f} s, teacher "
                  f"{1000 * teacher_s[-1]:.1f} ms, " + ", ".join(
                      f"{k} {v:.6f}" for k, v in terms.items() if k != "lr"), flush=True)
    with paddle.no_grad():  # training mode: the forward the losses see (log p for rec)
        out = teacher(paddle.to_tensor(bf16_fixed_images(task, args.data_dir)))
    while isinstance(out, dict):
        out = next(iter(out.values()))
    out_path = os.path.join(args.work_dir, f"teacher_out_{task}_{precision}.npy")
    np.save(out_path, np.exp(out.numpy()) if task == "rec" else out.numpy())
    timed = teacher_s[2:] or teacher_s  # the first steps warm the predictors up
    low = teacher.low_runner
    result = {"task": task, "precision": precision,
              "bf16_ops": (list(low.bf16_ops) if low.bf16_ops else "all") if low else None,
              "bf16_active": teacher.low_runner is not None,
              "teacher_ms_median": 1000 * statistics.median(timed),
              "forward_ms_median": 1000 * statistics.median(forward_s[2:]),
              "step_s_median": statistics.median(steps[2:] or steps),
              "loss_last": losses[-1], "loss_last10": statistics.mean(losses[-10:]),
              "losses": losses, "out": out_path, "versions": sysinfo.versions()}
    print(run.RESULT_TAG + json.dumps(result), flush=True)


def run_bf16(args):
    """The ``--precision`` experiment (module docstring)."""
    import numpy as np
    from ppdistill.released import fetch
    results = {}
    for task in args.tasks:
        data_dir = run.make_data(task, os.path.join(args.data_root, task))
        teacher_dir = fetch(BF16_TASKS[task]["released"])["model"]
        print(f"teacher {task}: {teacher_dir}", flush=True)
        for index, order in enumerate(compare.round_orders(args.precision, args.rounds)):
            for precision in order:
                print(f"=== {task}, round {index + 1}/{args.rounds}, teacher {precision}",
                      flush=True)
                work_dir = os.path.join(args.work_root, f"bf16_{task}_{precision}_{index}")
                os.makedirs(work_dir, exist_ok=True)
                cmd = [sys.executable, os.path.abspath(__file__), "--bf16-child",
                       f"{task}:{precision}", "--data-dir", data_dir, "--work-dir", work_dir,
                       "--teacher", teacher_dir, "--steps", str(args.steps),
                       "--forward-reps", str(args.forward_reps)]
                result = _child_result(cmd, f"[{task} {precision}]")
                results.setdefault((task, precision), []).append(result)
                print(f"  -> teacher alone {result['forward_ms_median']:.1f} ms/batch, in "
                      f"training {result['teacher_ms_median']:.1f} ms/batch, step "
                      f"{result['step_s_median']:.3f} s, loss@{args.steps} "
                      f"{result['loss_last']:.6f} (bf16 ops: {result['bf16_ops']})", flush=True)
    print("versions:", json.dumps(next(iter(results.values()))[0]["versions"]))
    print(f"uptime : {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"\n| task | teacher | forward alone ms/batch (runs) | forward in training ms/batch "
          f"(runs) | step s (median) | loss @{args.steps} (runs) | mean loss "
          f"{args.steps - 9}-{args.steps} | bf16 ops |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (task, precision), rs in results.items():
        print(f"| {task} | {precision} | "
              f"{statistics.median(r['forward_ms_median'] for r in rs):.1f} "
              f"({', '.join('%.1f' % r['forward_ms_median'] for r in rs)}) | "
              f"{statistics.median(r['teacher_ms_median'] for r in rs):.1f} "
              f"({', '.join('%.1f' % r['teacher_ms_median'] for r in rs)}) | "
              f"{statistics.median(r['step_s_median'] for r in rs):.3f} | "
              f"{', '.join('%.6f' % r['loss_last'] for r in rs)} | "
              f"{statistics.mean(r['loss_last10'] for r in rs):.6f} | {rs[0]['bf16_ops']} |")
    print("\nteacher outputs on 8 fixed inputs (rec: CTC probabilities; det: probability map):")
    for task in args.tasks:
        fp32 = results.get((task, "fp32"), [])
        for precision, rs in ((p, results.get((task, p), [])) for p in args.precision):
            if not fp32 or not rs:
                continue
            for i, r in enumerate(rs):
                ref = fp32[0] if (precision != "fp32" or i > 0) else None
                if ref is None:
                    continue
                out, ref_out = np.load(r["out"]), np.load(ref["out"])
                diff = np.abs(out - ref_out)
                loss_diff = np.abs(np.array(r["losses"]) - np.array(ref["losses"]))
                extra = ""
                if task == "rec":  # what DML/KL see: log p; and the greedy path
                    logs = np.abs(np.log(np.maximum(out, 1e-30))
                                  - np.log(np.maximum(ref_out, 1e-30)))
                    agree = (out.argmax(-1) == ref_out.argmax(-1)).mean()
                    extra = (f"; |diff of log p| mean {logs.mean():.3g}, argmax agrees on "
                             f"{100 * agree:.2f}% of steps")
                else:
                    extra = (f"; pixels crossing 0.3: "
                             f"{100 * ((out > 0.3) != (ref_out > 0.3)).mean():.3f}%")
                print(f"  {task} {precision} run {i + 1} vs fp32 run 1: output |diff| max "
                      f"{diff.max():.3g} mean {diff.mean():.3g}{extra}; loss |diff| over the "
                      f"steps max {loss_diff.max():.3g}, at the last step {loss_diff[-1]:.3g}")


def _child_result(cmd, tag):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(run.RESULT_TAG):
            result = json.loads(line[len(run.RESULT_TAG):])
        elif line.startswith(tag):
            print("  " + line, flush=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        if ".precision:" in line:  # the teacher's precision decision
            print("  " + line.strip()[:400], flush=True)
    if proc.returncode != 0 or result is None:
        sys.stdout.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{tag}: benchmark child failed (exit {proc.returncode})")
    return result


# ---------------------------------------------------------------------------- the child
def run_child(args):
    import numpy as np
    from ppdistill.utils.cpu import setup_tool_process
    setup_tool_process()
    from ppdistill.engine.launch import prepare_run
    from ppdistill.engine.run import build_trainer

    form = args.child
    teacher = json.loads(args.teacher)
    config = distill_config(form, args.data_dir, args.work_dir, teacher)
    logger = prepare_run(config, "benchmark")
    trainer = build_trainer(config, logger)
    model = getattr(trainer.model, "_layers", trainer.model)
    phases = run.PhaseTimer(trainer)
    trainer.model.train()
    load = sysinfo.CpuLoad()
    stream, steps, teacher_s = run.batches(trainer.train_loader), [], []
    for step in range(args.warmup + args.iters):
        if step == args.warmup:
            load.start()
        batch = next(stream)
        start = time.perf_counter()
        trainer.train_step(batch)
        wall = time.perf_counter() - start
        times, _ = phases.take()
        if step >= args.warmup:
            steps.append(wall)
            teacher_s.append(times.get("fwd Teacher", 0.0))
        print(f"[{form}] step {step + 1}/{args.warmup + args.iters}"
              f"{' (warm-up)' if step < args.warmup else ''}: {wall:.3f} s, teacher "
              f"{times.get('fwd Teacher', 0.0):.3f} s", flush=True)
    cpu_load = load.stop()
    probs = teacher_probabilities(model, fixed_images(args.data_dir))
    probs_path = os.path.join(args.work_dir, f"teacher_probs_{form}.npy")
    np.save(probs_path, probs)
    result = {"form": form, "step_s_median": statistics.median(steps),
              "step_s_min": min(steps), "step_s_max": max(steps),
              "teacher_s_median": statistics.median(teacher_s),
              "teacher_share": statistics.median(t / s for t, s in zip(teacher_s, steps)),
              "threads": runtime_threads(form, model), "cpu_load": cpu_load,
              "probs": probs_path, "versions": sysinfo.versions()}
    print(run.RESULT_TAG + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- the parent
def run_once(form, args, teacher):
    work_dir = os.path.join(args.work_root, form)
    os.makedirs(work_dir, exist_ok=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", form, "--data-dir",
           args.data_dir, "--work-dir", work_dir, "--teacher", json.dumps(teacher),
           "--warmup", str(args.warmup), "--iters", str(args.iters)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(run.RESULT_TAG):
            result = json.loads(line[len(run.RESULT_TAG):])
        elif line.startswith(f"[{form}]") or "CPU: " in line:
            print("  " + line, flush=True)
    if proc.returncode != 0 or result is None:
        sys.stdout.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{form}: benchmark child failed (exit {proc.returncode})")
    return result


def output_differences(results):
    """Max |difference| of the Teacher probabilities between each pair of forms."""
    import numpy as np
    probs = {form: np.load(rs[0]["probs"]) for form, rs in results.items()}
    forms = list(probs)
    return {f"{a} vs {b}": float(np.abs(probs[a] - probs[b]).max())
            for i, a in enumerate(forms) for b in forms[i + 1:]}


def print_table(results):
    reference = "native" if "native" in results else next(iter(results))
    ref = statistics.median(r["step_s_median"] for r in results[reference])
    print(f"\n| teacher form | step s (median of runs) | runs | teacher fwd s | teacher share "
          f"| step vs {reference} | teacher threads | others' load (cores) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for form, rs in results.items():
        step = statistics.median(r["step_s_median"] for r in rs)
        fwd = statistics.median(r["teacher_s_median"] for r in rs)
        share = statistics.median(r["teacher_share"] for r in rs)
        runs = ", ".join(f"{r['step_s_median']:.3f}" for r in rs)
        load = ", ".join(f"{r['cpu_load']['other_cores']}" for r in rs)
        print(f"| {form}: {FORM_TEXT[form]} | {step:.3f} | {runs} | {fwd:.3f} | {100 * share:.0f}% "
              f"| {step / ref:.2f}x | {rs[0]['threads']} | {load} |")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", default=",".join(FORMS),
                        type=lambda value: [f for f in value.split(",") if f],
                        help="comma-separated teacher forms: native, paddle, onnx")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per form")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--data-root", default=os.path.join(tempfile.gettempdir(),
                                                            "ppdistill_bench_data"))
    parser.add_argument("--work-root", default=os.path.join(tempfile.gettempdir(),
                                                            "ppdistill_bench_teacher"))
    parser.add_argument("--precision", default=None,
                        type=lambda value: [p for p in value.split(",") if p],
                        help="e.g. fp32,bf16: the released PP-OCRv4 det/rec exports as teachers "
                             "in these precisions (instead of the teacher forms)")
    parser.add_argument("--tasks", default="det,rec",
                        type=lambda value: [t for t in value.split(",") if t],
                        help="with --precision: det, rec")
    parser.add_argument("--steps", type=int, default=50, help="with --precision: training steps")
    parser.add_argument("--forward-reps", type=int, default=10,
                        help="with --precision: timed forwards of the teacher alone per process")
    parser.add_argument("--bf16-child", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=FORMS, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    parser.add_argument("--teacher", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def print_header():
    """The machine, CPU flags, revision, load and command line, printed before any run."""
    print("machine:", json.dumps(sysinfo.machine_info()))
    print("cpu flags:", sysinfo.cpu_flags_all())
    print("repo   :", REPO, "git", sysinfo.git_revision(REPO))
    print("uptime :", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"command: {' '.join(sys.argv)}")


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    if args.bf16_child:
        return run_bf16_child(args)
    if args.precision:
        bad = [p for p in args.precision if p not in PRECISIONS] + [
            t for t in args.tasks if t not in BF16_TASKS]
        if bad:
            raise SystemExit(f"error: --precision/--tasks: unknown value(s) {', '.join(bad)} "
                             f"(known: {', '.join(PRECISIONS)}; {', '.join(BF16_TASKS)})")
        print_header()
        return run_bf16(args)
    unknown = [f for f in args.forms if f not in FORMS]
    if unknown:
        raise SystemExit(f"error: --forms: unknown form(s) {', '.join(unknown)} "
                         f"(known: {', '.join(FORMS)})")
    print_header()
    args.data_dir = run.make_data("rec", os.path.join(args.data_root, "rec"))
    teacher = prepare_teacher(os.path.join(args.work_root, "teacher"))
    print("teacher:", json.dumps(teacher))
    results = {form: [] for form in args.forms}
    for index, order in enumerate(compare.round_orders(args.forms, args.rounds)):
        for form in order:
            print(f"=== round {index + 1}/{args.rounds}, teacher {form}", flush=True)
            result = run_once(form, args, teacher)
            results[form].append(result)
            print(f"  -> median step {result['step_s_median']:.3f} s, teacher "
                  f"{result['teacher_s_median']:.3f} s ({100 * result['teacher_share']:.0f}%), "
                  f"others' load {result['cpu_load']['other_cores']} cores", flush=True)
    print("versions:", json.dumps(next(iter(results.values()))[0]["versions"]))
    print(f"uptime : {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"\nbatch {BATCH} x 3x48x320, warm-up {args.warmup}, {args.iters} timed steps per "
          f"process, {args.rounds} rounds (fresh processes, alternating order)")
    print_table(results)
    print("\nmax |difference| of the Teacher's CTC probabilities on 8 validation images:")
    for pair, value in output_differences(results).items():
        print(f"  {pair}: {value:.3g}")


if __name__ == "__main__":
    main()
