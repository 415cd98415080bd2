"""Side by side latency of several exported models in one process: alternating blocks of runs.

    python benchmark/infer_ab.py ./inference/rec_v3/Student ./inference/rec_v4/Student
    python benchmark/infer_ab.py A B --kind det --threads 1 --rounds 10 --block 5

Fresh processes on a shared host differ by ±30 % from one minute to the next, more than the
difference between two exports of the same student. Here every model gets its own
``InferenceModel`` (as ``tools/infer/predict_*.py`` build it) in one process started as those
tools start, and the models take turns: ``--rounds`` rounds of ``--block`` timed runs each, so a
slow minute hits all of them alike. Prints the CPU model, then per model the 10th percentile and
the median of all its runs (ms per image) and, from the second model on, the median's ratio to
the first model's. ``benchmark/infer_latency.py`` gives the absolute rows of one export.
"""
import argparse
import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
sys.path.insert(1, os.path.dirname(BENCH_DIR))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dirs", nargs="+", help="export directories (inference.*)")
    parser.add_argument("--kind", choices=("det", "rec"), default="rec",
                        help="input shape and image: det 1x3x544x960, rec 1x3x48x320")
    parser.add_argument("--batch", type=int, default=1, help="images per run")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each predictor")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=int, default=20, help="timed runs per model per round")
    parser.add_argument("--no-onednn", action="store_true", help="paddle's plain CPU kernels")
    parser.add_argument("--data-dir", default="",
                        help="benchmark data (run.py's) for a real image; seeded noise without")
    args = parser.parse_args(argv)
    for name in ("batch", "threads", "rounds", "block"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    missing = [d for d in args.model_dirs if not os.path.isdir(d)]
    if missing:
        parser.error(f"no such model directory: {missing[0]}")
    return args


def compare(models, x, rounds, block):
    """``{name: [seconds per run, ...]}``: ``models`` (name -> callable on ``x``) in turns."""
    times = {name: [] for name in models}
    for name, model in models.items():  # warm-up (oneDNN builds its primitives here)
        for _ in range(2):
            model(x)
    for _ in range(rounds):
        for name, model in models.items():
            for _ in range(block):
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return times


def summary_lines(times, images_per_run):
    """One line per model: p10 and median ms per image, the median's ratio to the first's."""
    import numpy as np
    lines, first = [], None
    for name, seconds in times.items():
        per_image = np.asarray(seconds) * 1000.0 / images_per_run
        median = float(np.median(per_image))
        ratio = "" if first is None else f"  ×{median / first:.3f} of the first"
        first = median if first is None else first
        lines.append(f"{name}: p10 {np.percentile(per_image, 10):.2f} ms, median {median:.2f} ms "
                     f"per image ({len(per_image)} runs){ratio}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    from ppdistill.utils.cpu import setup_tool_process
    setup_tool_process()
    from ppdistill.engine.host_memory import keep_freed_host_memory
    keep_freed_host_memory()  # as tools/infer/predict_*.py do
    from infer_latency import SHAPES, inference_input
    from sysinfo import machine_info
    from ppdistill.infer.predictor import InferenceModel
    shape = [args.batch] + SHAPES[args.kind][1:]
    x = inference_input(args.kind, shape, args.data_dir)
    models = {}
    for directory in args.model_dirs:
        label = directory if directory not in models else f"{directory} #{len(models) + 1}"
        models[label] = InferenceModel(directory, use_gpu=False, cpu_threads=args.threads,
                                       enable_mkldnn=not args.no_onednn)
    machine = machine_info()
    print(f"CPU: {machine['cpu']} (family/model/stepping {machine['cpu_family_model_stepping']}, "
          f"{machine['nproc']} cores); {args.threads} thread(s), input {shape}, "
          f"oneDNN {'off' if args.no_onednn else 'on'}; {args.rounds} rounds of {args.block} "
          f"runs per model, alternating")
    for line in summary_lines(compare(models, x, args.rounds, args.block), args.batch):
        print(line)


if __name__ == "__main__":
    main()
