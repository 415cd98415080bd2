"""Training step time with a black-box (exported) teacher vs the same teacher as a native model.

    python benchmark/exported_teacher.py                    # 2 rounds, forms native,paddle,onnx
    python benchmark/exported_teacher.py --rounds 3 --iters 12 --warmup 3
    python benchmark/exported_teacher.py --forms native,onnx

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
    parser.add_argument("--child", choices=FORMS, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    parser.add_argument("--teacher", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    unknown = [f for f in args.forms if f not in FORMS]
    if unknown:
        raise SystemExit(f"error: --forms: unknown form(s) {', '.join(unknown)} "
                         f"(known: {', '.join(FORMS)})")
    print("machine:", json.dumps(sysinfo.machine_info()))
    print("cpu flags:", sysinfo.cpu_flags_all())
    print("repo   :", REPO, "git", sysinfo.git_revision(REPO))
    print("uptime :", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"command: {' '.join(sys.argv)}")
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
