"""Latency per image of an exported model run by ``paddle.inference`` (CPU), in a fresh process.

    python benchmark/infer_latency.py --model-dir ./inference/det_cpu/Student --kind det
    python benchmark/infer_latency.py --model-dir ./inference/rec_cpu/Student --kind rec \\
        --data-dir /tmp/ppdistill_bench_data/rec

The process starts as ``tools/infer/predict_*.py`` do (``setup_tool_process``: MKL's AVX2 path on
AMD CPUs; ``keep_freed_host_memory``; no training-time thread settings such as
``KMP_BLOCKTIME=0``), so the numbers are what
a deployment of the export gets. ``benchmark/run.py`` runs it after each training benchmark on
the Student it exported, in the arm's environment. Rows (each: 2 warm-up runs, then the median,
min and max of ``--runs`` timed runs, per image):

- ``default``: every core (``--threads``), oneDNN as ``InferenceModel`` decides (on, or off
  with ``PPDISTILL_ONEDNN=0``); ``default_onednn_on`` / ``default_onednn_off``: the other choice;
- ``1_thread``: one thread (when there are more cores); ``default_batch8`` (rec): 8 lines a batch.

The input is a real generated image (``--data-dir``: ``ch4_test_images/img_1.jpg`` for det,
``val/word_0.png`` for rec, as ``benchmark/run.py`` generates them), or seeded noise without one.
Prints ``LATENCY_RESULT {json}`` as its last line.
"""
import argparse
import json
import os
import statistics
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
sys.path.insert(1, os.path.dirname(BENCH_DIR))

RESULT_TAG = "LATENCY_RESULT "
SHAPES = {"det": [1, 3, 544, 960], "rec": [1, 3, 48, 320]}


def inference_input(model_kind, shape, data_dir):
    """``shape`` (N, C, H, W) float32: the benchmark's generated image resized and normalised as
    the predictors do, repeated N times; seeded noise in [0, 1) when there is no image."""
    import cv2
    import numpy as np
    _, _, height, width = shape
    name = ("ch4_test_images", "img_1.jpg") if model_kind == "det" else ("val", "word_0.png")
    path = os.path.join(data_dir, *name) if data_dir else ""
    if not os.path.isfile(path):
        return np.random.RandomState(0).rand(*shape).astype("float32")
    image = cv2.resize(cv2.imread(path), (width, height)).astype("float32") / 255.0
    if model_kind == "det":
        image = (image - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    else:
        image = (image - 0.5) / 0.5
    chw = image.transpose(2, 0, 1).astype("float32")
    return np.ascontiguousarray(np.stack([chw] * shape[0]))


def measure(model_dir, x, threads, enable_mkldnn, runs=10):
    """Median / min / max ms per image of ``runs`` timed runs after 2 warm-up runs, and whether
    oneDNN ran (``InferenceModel`` falls back when it cannot run the program)."""
    from ppdistill.infer.predictor import InferenceModel
    model = InferenceModel(model_dir, use_gpu=False, cpu_threads=max(threads, 1),
                           enable_mkldnn=enable_mkldnn)
    for _ in range(2):
        model(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - start) / x.shape[0])
    return {"ms_per_image_median": round(1000 * statistics.median(times), 2),
            "ms_per_image_min": round(1000 * min(times), 2),
            "ms_per_image_max": round(1000 * max(times), 2),
            "input": list(x.shape), "threads": max(threads, 1), "onednn_asked": enable_mkldnn,
            "onednn": model.onednn}


def measure_rows(model_dir, model_kind, shape, data_dir, threads, runs=10):
    """The rows of the module docstring, as a dict."""
    x = inference_input(model_kind, shape, data_dir)
    out = {"default": measure(model_dir, x, threads, None, runs)}
    other = not out["default"]["onednn"]
    out["default_onednn_" + ("on" if other else "off")] = measure(model_dir, x, threads, other,
                                                                  runs)
    if threads > 1:
        out["1_thread"] = measure(model_dir, x, 1, None, runs)
    if model_kind == "rec":
        batch8 = inference_input(model_kind, [8] + list(shape[1:]), data_dir)
        out["default_batch8"] = measure(model_dir, batch8, threads, None, runs)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="inference.json/.pdmodel + .pdiparams")
    parser.add_argument("--kind", choices=sorted(SHAPES), required=True)
    parser.add_argument("--shape", default=None, help="N,C,H,W (default: 1,3,544,960 for det, "
                        "1,3,48,320 for rec)")
    parser.add_argument("--data-dir", default=None, help="the benchmark's generated data set")
    parser.add_argument("--threads", type=int, default=0, help="0 = every available core")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mkl-avx2", type=int, default=-1, choices=[-1, 0, 1],
                        help="as benchmark/run.py's --mkl-avx2")
    parser.add_argument("--kmp-blocktime", type=int, default=-1,
                        help="as benchmark/run.py's --kmp-blocktime")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from run import set_cpu_environment  # benchmark/run.py
    set_cpu_environment(args.mkl_avx2, args.kmp_blocktime)
    from ppdistill.utils.cpu import setup_tool_process
    setup_tool_process()  # before paddle is imported, as tools/infer/predict_*.py do
    from ppdistill.engine.host_memory import keep_freed_host_memory
    keep_freed_host_memory()  # as tools/infer/predict_*.py do
    shape = ([int(v) for v in args.shape.split(",")] if args.shape
             else list(SHAPES[args.kind]))
    threads = args.threads if args.threads > 0 else len(os.sched_getaffinity(0))
    rows = measure_rows(args.model_dir, args.kind, shape, args.data_dir, threads, args.runs)
    for name, row in rows.items():
        print(f"{name}: {row['ms_per_image_median']} ms per image (oneDNN "
              f"{'on' if row['onednn'] else 'off'}, {row['threads']} threads, batch "
              f"{row['input'][0]})")
    print(RESULT_TAG + json.dumps(rows), flush=True)


if __name__ == "__main__":
    main()
