"""Compare CPU settings (threads, oneDNN, MKL code path, DataLoader workers) with benchmark/run.py.

    python benchmark/sweep.py --task det --set cpu --rounds 2 --iters 3 --warmup 1
    python benchmark/sweep.py --task det --set workers

Configurations run interleaved (round 1: A B C ..., round 2: A B C ...) in fresh processes, so a
change of the load from other users of the machine hits all of them alike. Prints a markdown
table: median s/iter (min-max over rounds), images/s, main-process CPU seconds per iteration,
peak RSS, the load from other processes during the timed steps, and the largest difference of
the first steps' loss values from the first configuration.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def _opts(threads, mkl_avx2, onednn=0, workers=0):
    """run.py options; KMP_BLOCKTIME is left alone so only the named setting changes."""
    return ["--threads", str(threads), "--onednn", str(onednn), "--mkl-avx2", str(mkl_avx2),
            "--kmp-blocktime", "-1", "--workers", str(workers)]


DEFAULTS = "paddle defaults (1 thread, MKL generic path)"
SETS = {
    "cpu": [
        (DEFAULTS, _opts(1, 0)),
        ("2 threads", _opts(2, 0)),
        ("MKL AVX2 path, 1 thread", _opts(1, 1)),
        ("MKL AVX2 path, 2 threads", _opts(2, 1)),
        ("MKL AVX2 path, 2 threads, oneDNN", _opts(2, 1, onednn=1)),
    ],
    "cpu-short": [
        (DEFAULTS, _opts(1, 0)),
        ("MKL AVX2 path, 1 thread", _opts(1, 1)),
        ("MKL AVX2 path, 2 threads", _opts(2, 1)),
    ],
    "workers": [(f"MKL AVX2 path, 2 threads, workers {n}", _opts(2, 1, workers=n))
                for n in (0, 1, 2)],
}


def run_config(task, extra, args, json_out):
    cmd = [sys.executable, os.path.join(BENCH_DIR, "run.py"), "--task", task, "--no-infer",
           "--iters", str(args.iters), "--warmup", str(args.warmup), "--json-out", json_out,
           "--show-losses", str(args.show_losses)] + extra
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    with open(json_out) as handle:
        return json.loads(handle.readlines()[-1])


def loss_diff(a, b):
    worst = 0.0
    for step_a, step_b in zip(a["first_losses"], b["first_losses"]):
        for key, value in step_a.items():
            worst = max(worst, abs(value - step_b.get(key, float("inf"))))
    return worst


def fmt_range(values, fmt):
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["det", "rec"], default="det")
    parser.add_argument("--set", choices=sorted(SETS), default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--show-losses", type=int, default=3)
    parser.add_argument("--json-out", default=None, help="append every run's result here")
    args = parser.parse_args(argv)
    configs = SETS[args.set]
    results = {label: [] for label, _ in configs}
    scratch = tempfile.mkdtemp(prefix="ppdistill_sweep_")
    for round_index in range(args.rounds):
        for index, (label, extra) in enumerate(configs):
            json_out = os.path.join(scratch, f"{index}_{round_index}.jsonl")
            result = run_config(args.task, extra, args, json_out)
            result["label"] = label
            results[label].append(result)
            print(f"round {round_index + 1} {label}: {result['s_per_iter']:.2f} s/iter, "
                  f"others {result['cpu_load']['other_cores']} cores", flush=True)
            if args.json_out:
                with open(args.json_out, "a") as handle:
                    handle.write(json.dumps(result) + "\n")
    base = results[configs[0][0]][0]
    print(f"\n{args.task}: warm-up {args.warmup}, {args.iters} timed iterations, "
          f"{args.rounds} rounds\n")
    print("| configuration | s/iter | img/s | main CPU s/iter | own cores | other load (cores) "
          "| peak RSS main (GiB) | workers RSS (MiB) | step split (s) | max loss diff vs first |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, _ in configs:
        runs = results[label]
        split = runs[0]["phases_s"]
        split_text = ", ".join(f"{k.replace('fwd ', '')} {v:.2f}" for k, v in split.items()
                               if v >= 0.05)
        print(f"| {label} | {fmt_range([r['s_per_iter'] for r in runs], '{:.2f}')} "
              f"| {fmt_range([r['img_per_s'] for r in runs], '{:.3f}')} "
              f"| {fmt_range([r['cpu_s_per_iter_main'] for r in runs], '{:.1f}')} "
              f"| {fmt_range([r['cpu_load']['own_cores'] for r in runs], '{:.2f}')} "
              f"| {fmt_range([r['cpu_load']['other_cores'] for r in runs], '{:.2f}')} "
              f"| {fmt_range([r['peak_rss_main_mib'] / 1024 for r in runs], '{:.2f}')} "
              f"| {runs[0]['peak_rss_workers_mib'] or '-'} | {split_text} "
              f"| {max(loss_diff(base, r) for r in runs):.2g} |")


if __name__ == "__main__":
    main()
