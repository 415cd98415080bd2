"""The measured distillation gain on released weights: student alone vs student + teacher.

    python benchmark/distill_gain.py --workdir /tmp/gain           # rec and det, seeds 1 2
    python benchmark/distill_gain.py --workdir /tmp/gain --scenario rec --rec_iters 40 \\
        --rec_eval 300                                # the numbers in benchmark/RESULTS.md
    python benchmark/distill_gain.py --workdir /tmp/gain --scenario rec --rec_labels gt

Scenarios (configs from :mod:`ppdistill.demo.scenarios`, the demo's at a larger budget):

- **rec**: adapt the released PP-OCRv3 rec model to a new domain (Debian documentation pages
  degraded like scans, ``tools/make_real_data.py --degrade 2``) against the frozen released
  PP-OCRv4 mobile rec export. ``--rec_labels unlabelled`` (default, the demo's scenario): the
  train crops without labels; arm ``alone`` self-trains on the pseudo-labels of its own
  released export (CTC), arm ``distill`` learns the teacher's pseudo-labels plus DML.
  ``--rec_labels gt``: the labelled train crops; ``alone``: CTC on the labels, ``distill``: the
  same plus DML. Evaluated on the held-out degraded crops (new domain) and on the held-out
  clean crops (the original rendering: forgetting).
- **det**: the same with the released PP-OCRv3 det model, the DB loss on the labelled train
  tiles, and DML on the shrink maps to the released PP-OCRv4 mobile det export.

Both arms of a scenario get the same data, steps, batch, learning-rate schedule and seed; only
the teacher's loss differs. No arm sees the held-out pages (the split is by page). Per seed and
arm the script prints the metrics, then the mean gain (distill - alone), the seed spread (the
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
    return run(["tools/eval.py", "-c", config, "-o", f"Global.checkpoints={checkpoint}",
                f"Eval.dataset.data_dir={data_dir}",
                f"Eval.dataset.label_file_list=[{label_file}]"], workdir, capture_metrics=True)


def run_scenario(task, args, released, data_root, workdir, run, log):
    """Train and evaluate every (seed, arm); return ``{arm: {seed: {domain_metric: value}}}``."""
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
    student = demo_real.import_student(run, task, released["student"], workdir)
    build = scenarios.rec_config if task == "rec" else scenarios.det_config
    unlabelled = task == "rec" and args.rec_labels == "unlabelled"
    train_list = os.path.join(variant["new"], "train" if unlabelled else "train_label.txt")
    results = {"alone": {}, "distill": {}}
    for seed in args.seeds:
        for arm in ("alone", "distill"):
            save_dir = os.path.join(out_root, f"{arm}_seed{seed}")
            extra = {}
            if unlabelled:  # alone: self-training on its own pseudo-labels; distill: teacher's
                extra = {"labels": "self" if arm == "alone" else "teacher",
                         "student_export": released["student"]["model"]}
            config = scenarios.write_config(build(
                student, released["teacher"]["model"], variant["new"], train_list,
                variant["new"], held_out["new"], save_dir, iters=getattr(args, f"{task}_iters"),
                batch=getattr(args, f"{task}_batch"), lr=getattr(args, f"{task}_lr"), seed=seed,
                teacher=arm == "distill", **dict({"labels": "gt"}, **extra)),
                os.path.join(save_dir, "config.yml"))
            log(f"{task} seed {seed} arm {arm}: train {getattr(args, f'{task}_iters')} steps")
            started = time.time()
            run(["tools/train.py", "-c", config], workdir)
            row = {"train_s": int(round(time.time() - started))}
            for domain in ("new", "clean"):
                metrics = _eval(run, config, f"{save_dir}/latest", variant[domain],
                                held_out[domain], workdir)
                for name in METRICS[task]:
                    row[f"{domain}_{name}"] = metrics.get(name)
            results[arm][seed] = row
            print(f"RESULT {task} seed={seed} arm={arm} " + " ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True)
    return results


def summarise(task, results):
    """Mean gain, seed spread and verdict per domain metric; returns printable lines + dict."""
    lines, summary = [], {}
    for domain in ("new", "clean"):
        for name in METRICS[task]:
            key = f"{domain}_{name}"
            arms = {arm: [row[key] for row in results[arm].values()] for arm in results}
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
    parser.add_argument("--workdir", required=True, help="data, weights, runs and results go here")
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
    parser.add_argument("--det_iters", type=int, default=150)
    parser.add_argument("--det_batch", type=int, default=4)
    parser.add_argument("--det_lr", type=float, default=1e-4)
    parser.add_argument("--det_eval", type=int, default=50, help="held-out tiles per domain")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("at least 2 seeds: the gain is compared with the seed spread")
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    run, log = demo_script.run, demo_script.log
    try:
        released = demo_real.fetch_released(log)
        data_root = os.path.dirname(demo_real.make_data(run, workdir))
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
        results = run_scenario(task, args, released[task], data_root, workdir, run, log)
        task_lines, summary = summarise(task, results)
        lines += task_lines
        report["scenarios"][task] = {"per_seed": results, "summary": summary}
        with open(os.path.join(workdir, "distill_gain.json"), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1, default=str)
    print("\n" + "=" * 100)
    print(f"{report['command']}\n{report['machine']}, python {report['python']}, "
          f"paddle {report['paddle']}")
    for task, entry in report["scenarios"].items():
        for arm, seeds in entry["per_seed"].items():
            for seed, row in seeds.items():
                print(f"{task} {arm:<8} seed {seed}: " + "  ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in row.items()))
    print("\n".join(lines))
    print(f"results: {os.path.join(workdir, 'distill_gain.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
