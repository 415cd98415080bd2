"""The measured distillation gain on released weights: student alone vs student + teacher.

    python benchmark/distill_gain.py --workdir /tmp/gain           # rec and det, seeds 1 2
    python benchmark/distill_gain.py --workdir /tmp/gain --scenario rec --rec_iters 40 \\
        --rec_eval 300                                # the numbers in benchmark/RESULTS.md
    python benchmark/distill_gain.py --workdir /tmp/gain --scenario rec --rec_labels gt
    python benchmark/distill_gain.py --workdir /tmp/gain --scenario det --seeds 1 2 \\
        --jobs 2                                      # the det numbers in benchmark/RESULTS.md

Scenarios (configs from :mod:`ppdistill.demo.scenarios`, the demo's at a larger budget):

- **rec**: adapt the released PP-OCRv3 rec model to a new domain (Debian documentation pages
  degraded like scans, ``tools/make_real_data.py --degrade 2``) against the frozen released
  PP-OCRv4 mobile rec export. ``--rec_labels unlabelled`` (default, the demo's scenario): the
  train crops without labels; arm ``alone`` self-trains on the pseudo-labels of its own
  released export (CTC), arm ``distill`` learns the teacher's pseudo-labels plus DML.
  ``--rec_labels gt``: the labelled train crops; ``alone``: CTC on the labels, ``distill``: the
  same plus DML. Evaluated on the held-out degraded crops (new domain) and on the held-out
  clean crops (the original rendering: forgetting).
- **det** (``--det_labels unlabelled``, default): the released PP-OCRv3 det model adapted to
  the same new domain from UNLABELLED page tiles (``tools/make_real_data.py --pages 20
  --degrade 2``: ~100 train and 100 held-out tiles) against the frozen released PP-OCRv4 mobile
  det export. Arm ``alone`` self-trains: the DB loss on the pseudo-boxes of the student's own
  released export; arm ``distill``: the DB loss on the teacher's pseudo-boxes plus DML on the
  shrink maps. The released det exports lack the DB threshold branch (fresh after import), so
  each seed first warms up only that branch (``--det_warmup`` steps, everything else frozen, on
  the student's own pseudo-boxes: no teacher) and both arms of the seed start from the result;
  BatchNorm statistics stay the released ones (``freeze_bn_stats``). Both arms are evaluated
  with the same student-only config on every held-out tile of both domains.
  ``--det_labels gt``: the labelled train tiles; ``alone``: DB loss, ``distill``: + DML.

Both arms of a scenario get the same data, steps, batch, learning-rate schedule, seed and
starting weights; only the teacher's part differs (its pseudo-labels and its DML term). No
arm sees the held-out pages (the split is by page). Per seed and arm the script prints the
metrics, then the mean gain (distill - alone), the seed spread (the
largest max - min over seeds within an arm) and whether the gain exceeds it; everything is
also written to ``<workdir>/distill_gain.json``. Needs the registries once (PyPI wheels of the
released models, Debian packages of the PDFs); afterwards everything is cached.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "scripts")]

import demo as demo_script  # noqa: E402  (scripts/demo.py: run(), log())
import demo_real  # noqa: E402
from ppdistill.demo import scenarios  # noqa: E402

METRICS = {"rec": ("acc", "norm_edit_dis"), "det": ("hmean",)}
MAIN = {"rec": "acc", "det": "hmean"}


def _eval(run, config, checkpoint, data_dir, label_file, workdir):
    overrides = [f"Global.checkpoints={checkpoint}"] if checkpoint else []
    return run(["tools/eval.py", "-c", config, "-o", *overrides,
                f"Eval.dataset.data_dir={data_dir}",
                f"Eval.dataset.label_file_list=[{label_file}]"], workdir, capture_metrics=True)


def make_det_data(run, workdir, pages):
    """The det data: the demo's (``pages`` 10, shared with rec) or ``tools/make_real_data.py
    --pages N --degrade 2`` into ``<workdir>/real_data_p<N>`` (once); returns its root."""
    if pages == 10:
        return os.path.dirname(demo_real.make_data(run, workdir))
    root = os.path.join(workdir, f"real_data_p{pages}")
    if not os.path.isfile(os.path.join(root, "degraded_l2", "det", "eval_label.txt")):
        try:
            run(["tools/make_real_data.py", "--out_dir", root, "--pages", str(pages),
                 "--degrade", "2", "--force"], workdir)
        except SystemExit as exc:
            raise demo_real.Unavailable(f"tools/make_real_data.py failed ({exc})") from None
    return root


def _labels_of(task, args, arm):
    """``labels`` of an arm's training set: gt, or (unlabelled) self / teacher."""
    if getattr(args, f"{task}_labels") == "gt":
        return "gt"
    return "self" if arm == "alone" else "teacher"


def _format_row(row):
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items())


def run_seed(task, args, seed, ctx):
    """Train and evaluate both arms of one seed (det: after the shared threshold warm-up);
    returns ``{arm: row}``."""
    run, log, out_root = ctx["run"], ctx["log"], ctx["out_root"]
    variant, held_out, released = ctx["variant"], ctx["held_out"], ctx["released"]
    build = scenarios.rec_config if task == "rec" else scenarios.det_config
    student_export = released["student"]["model"]
    common = dict(iters=getattr(args, f"{task}_iters"), batch=getattr(args, f"{task}_batch"),
                  seed=seed, student_export=student_export)
    student = ctx["student"]
    rows = {}
    if task == "det" and args.det_warmup > 0:
        # the same warm-up for both arms: only the fresh threshold branch trains, on the
        # student's own pseudo-boxes (unlabelled) or the labels (gt); no teacher
        save_dir = os.path.join(out_root, f"warmup_seed{seed}")
        config = scenarios.write_config(build(
            student, released["teacher"]["model"], variant["new"], ctx["train_list"],
            variant["new"], held_out["new"], save_dir, teacher=False,
            labels="gt" if args.det_labels == "gt" else "self",
            lr=args.det_warmup_lr, **dict(common, iters=args.det_warmup)),
            os.path.join(save_dir, "config.yml"))
        warmed = os.path.join(save_dir, "student_warm.pdparams")
        log(f"det seed {seed}: threshold-branch warm-up, {args.det_warmup} steps")
        started = time.time()
        run(["benchmark/distill_gain.py", "--warm_up", config, warmed], ctx["workdir"])
        rows["warmup_s"] = int(round(time.time() - started))
        student = warmed[:-len(".pdparams")]
    for arm in ("alone", "distill"):
        save_dir = os.path.join(out_root, f"{arm}_seed{seed}")
        config = scenarios.write_config(build(
            student, released["teacher"]["model"], variant["new"], ctx["train_list"],
            variant["new"], held_out["new"], save_dir, lr=getattr(args, f"{task}_lr"),
            teacher=arm == "distill", labels=_labels_of(task, args, arm), **common),
            os.path.join(save_dir, "config.yml"))
        eval_config = config
        if task == "det":  # the student alone: the same evaluation for both arms
            eval_config = scenarios.write_config(build(
                student, None, variant["new"], ctx["train_list"], variant["new"],
                held_out["new"], save_dir, teacher=False, labels="gt", **common),
                os.path.join(save_dir, "eval.yml"))
        log(f"{task} seed {seed} arm {arm}: train {common['iters']} steps")
        started = time.time()
        run(["tools/train.py", "-c", config], ctx["workdir"])
        row = {"train_s": int(round(time.time() - started))}
        for domain in ("new", "clean"):
            metrics = _eval(run, eval_config, f"{save_dir}/latest", variant[domain],
                            held_out[domain], ctx["workdir"])
            for name in METRICS[task]:
                row[f"{domain}_{name}"] = metrics.get(name)
        rows[arm] = row
        print(f"RESULT {task} seed={seed} arm={arm} {_format_row(row)}", flush=True)
    return rows


def evaluate_before(task, ctx):
    """The released student and the teacher on the held-out sets (no training)."""
    build = scenarios.rec_config if task == "rec" else scenarios.det_config
    save_dir = os.path.join(ctx["out_root"], "before")
    config = scenarios.write_config(build(
        ctx["student"], ctx["released"]["teacher"]["model"], ctx["variant"]["new"],
        ctx["train_list"], ctx["variant"]["new"], ctx["held_out"]["new"], save_dir,
        teacher=True, labels="gt"), os.path.join(save_dir, "config.yml"))
    row = {}
    for domain in ("new", "clean"):
        metrics = _eval(ctx["run"], config, None, ctx["variant"][domain],
                        ctx["held_out"][domain], ctx["workdir"])
        for name in METRICS[task]:
            row[f"{domain}_{name}"] = metrics.get(name)
            row[f"{domain}_teacher_{name}"] = metrics.get(f"Teacher_{name}")
    print(f"RESULT {task} before {_format_row(row)}", flush=True)
    return row


def run_scenario(task, args, released, data_root, workdir, run, log):
    """Train and evaluate every (seed, arm); return ``{arm: {seed: {domain_metric: value}}}``
    (plus ``before``: the untrained student and the teacher, with ``--before``)."""
    from concurrent.futures import ThreadPoolExecutor
    variant = {"new": os.path.join(data_root, "degraded_l2", task),
               "clean": os.path.join(data_root, "clean", task)}
    out_root = os.path.join(workdir, "output", f"gain_{task}")
    os.makedirs(out_root, exist_ok=True)
    held_out = {}
    for domain, folder in variant.items():
        held_out[domain] = os.path.join(out_root, f"heldout_{domain}.txt")
        scenarios.subset_label_file(os.path.join(folder, "eval_label.txt"), held_out[domain],
                                    getattr(args, f"{task}_eval"), seed=0,
                                    max_label_chars=scenarios.MAX_REC_LABEL, rec=task == "rec")
    unlabelled = getattr(args, f"{task}_labels") == "unlabelled"
    ctx = {"run": run, "log": log, "out_root": out_root, "variant": variant,
           "held_out": held_out, "released": released, "workdir": workdir,
           "student": demo_real.import_student(run, task, released["student"], workdir),
           "train_list": os.path.join(variant["new"],
                                      "train" if unlabelled else "train_label.txt")}
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        per_seed = dict(zip(args.seeds, pool.map(lambda seed: run_seed(task, args, seed, ctx),
                                                 args.seeds)))
    results = {arm: {seed: rows[arm] for seed, rows in per_seed.items()}
               for arm in ("alone", "distill")}
    for seed, rows in per_seed.items():
        if "warmup_s" in rows:
            results.setdefault("warmup_s", {})[seed] = rows["warmup_s"]
    if args.before:
        results["before"] = evaluate_before(task, ctx)
    return results


def summarise(task, results):
    """Mean gain, seed spread and verdict per domain metric; returns printable lines + dict."""
    lines, summary = [], {}
    for domain in ("new", "clean"):
        for name in METRICS[task]:
            key = f"{domain}_{name}"
            arms = {arm: [row[key] for row in results[arm].values()]
                    for arm in ("alone", "distill")}
            if any(v is None for values in arms.values() for v in values):
                continue
            means = {arm: statistics.mean(values) for arm, values in arms.items()}
            spread = max(max(values) - min(values) for values in arms.values())
            gain = means["distill"] - means["alone"]
            summary[key] = {"alone": arms["alone"], "distill": arms["distill"],
                            "mean_gain": gain, "spread": spread,
                            "gain_exceeds_spread": gain > spread}
            lines.append(f"{task} {key:<18} alone {means['alone']:.4f}  distill "
                         f"{means['distill']:.4f}  gain {gain:+.4f}  spread {spread:.4f}  "
                         f"{'GAIN > SPREAD' if gain > spread else 'gain within the spread'}")
    return lines, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="data, weights, runs and results go here (required)")
    parser.add_argument("--scenario", nargs="+", choices=["rec", "det"], default=["rec", "det"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rec_iters", type=int, default=300)
    parser.add_argument("--rec_batch", type=int, default=16)
    parser.add_argument("--rec_lr", type=float, default=1e-4)
    parser.add_argument("--rec_eval", type=int, default=1000, help="held-out crops per domain")
    parser.add_argument("--rec_labels", choices=["gt", "unlabelled"], default="unlabelled",
                        help="gt: both arms learn the train labels (+ DML in distill); "
                             "unlabelled: the train crops without labels, alone = self-training "
                             "on the student's own pseudo-labels, distill = the teacher's "
                             "pseudo-labels + DML (the demo's scenario)")
    parser.add_argument("--det_labels", choices=["gt", "unlabelled"], default="unlabelled",
                        help="unlabelled (default): alone = DB loss on the student's own "
                             "pseudo-boxes (self-training), distill = DB loss on the teacher's "
                             "pseudo-boxes + DML on the shrink maps; gt: the train labels "
                             "(+ DML in distill)")
    parser.add_argument("--det_iters", type=int, default=200,
                        help="training steps of each det arm (the RESULTS.md headline: 200)")
    parser.add_argument("--det_batch", type=int, default=4)
    parser.add_argument("--det_lr", type=float, default=1e-4)
    parser.add_argument("--det_warmup", type=int, default=50,
                        help="steps training only the student's fresh DB threshold branch "
                             "before each seed's arms (shared by both arms; 0: none)")
    parser.add_argument("--det_warmup_lr", type=float, default=1e-3)
    parser.add_argument("--det_pages", type=int, default=20,
                        help="pages per PDF source of the det data (10: the demo's data)")
    parser.add_argument("--det_teacher", default=scenarios.RELEASED["det"]["teacher"],
                        choices=["ppocrv4_mobile_det", "ppocrv4_mobile_det_onnx",
                                 "ppocrv5_mobile_det"],
                        help="the released det export used as the frozen teacher")
    parser.add_argument("--det_eval", type=int, default=0,
                        help="held-out tiles per domain (0: all)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds trained at once (each in its own processes)")
    parser.add_argument("--before", action="store_true",
                        help="also evaluate the untrained student and the teacher")
    parser.add_argument("--warm_up", nargs=2, metavar=("CONFIG", "OUT"),
                        help=argparse.SUPPRESS)  # internal: one det threshold warm-up
    args = parser.parse_args(argv)
    if args.warm_up:
        return warm_up(*args.warm_up)
    if not args.workdir:
        parser.error("the following argument is required: --workdir")
    if len(args.seeds) < 2:
        parser.error("at least 2 seeds: the gain is compared with the seed spread")
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    run, log = demo_script.run, demo_script.log
    try:
        released = demo_real.fetch_released(log)
        if args.det_teacher != scenarios.RELEASED["det"]["teacher"]:
            released["det"]["teacher"] = demo_real.fetch_one(log, "det", "teacher",
                                                             args.det_teacher)
        data_roots = {}
        if "rec" in args.scenario:
            data_roots["rec"] = os.path.dirname(demo_real.make_data(run, workdir))
        if "det" in args.scenario:
            data_roots["det"] = make_det_data(run, workdir, args.det_pages)
    except demo_real.Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import paddle
    report = {"command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "python": platform.python_version(), "paddle": paddle.__version__,
              "options": vars(args), "scenarios": {}}
    lines = []
    for task in args.scenario:
        results = run_scenario(task, args, released[task], data_roots[task], workdir,
                               run, log)
        task_lines, summary = summarise(task, results)
        lines += task_lines
        report["scenarios"][task] = {"per_seed": results, "summary": summary}
        with open(os.path.join(workdir, "distill_gain.json"), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1, default=str)
    print("\n" + "=" * 100)
    print(f"{report['command']}\n{report['machine']}, python {report['python']}, "
          f"paddle {report['paddle']}")
    for task, entry in report["scenarios"].items():
        if "before" in entry["per_seed"]:
            print(f"{task} before (untrained student, teacher): "
                  + _format_row(entry["per_seed"]["before"]))
        for arm in ("alone", "distill"):
            for seed, row in entry["per_seed"][arm].items():
                print(f"{task} {arm:<8} seed {seed}: " + "  ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in row.items()))
    print("\n".join(lines))
    print(f"results: {os.path.join(workdir, 'distill_gain.json')}")
    return 0


def warm_up(config_path, out_path):
    """``--warm_up CONFIG OUT``: one det threshold warm-up (its own process, like the tools)."""
    from ppdistill.utils.cpu import setup_tool_process
    setup_tool_process()
    from ppdistill.utils.config import load_with_overrides
    trained = scenarios.warm_up_threshold_head(load_with_overrides(config_path, []), out_path)
    print(f"warm-up: trained {len(trained)} threshold-branch tensors -> {out_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
