"""Training speed / memory benchmark of ppdistill on generated data (CPU).

    python benchmark/run.py                       # det CML + rec distillation, defaults below
    python benchmark/run.py --task det --iters 6 --warmup 2 --repeat 3
    python benchmark/run.py --task det --threads 1 --onednn 0 --workers 0   # paddle's defaults
    python benchmark/run.py --task all --arms optimised,baseline --rounds 2 --no-infer  # A/B

With ``--arms`` naming several arms (``benchmark/compare.py``: ``optimised``, ``baseline``,
``baseline-avx2``), each task runs every arm in alternating order for ``--rounds`` rounds
(A B, B A, ...) and the parent prints every round's numbers, the medians and the ratios of
each arm against ``baseline`` measured in the same session (img/s and peak RSS), with the
first-step losses of both. No ratio is taken against figures measured elsewhere.

For each task a fresh child process (so peak memory is per task) builds the trainer from the
shipped config with ``-o``-style overrides, runs ``--warmup`` training steps, then ``--iters``
timed steps (data loading included), and prints: s/iter, images/s, the split of a step
(reader / each sub-model's forward / loss / backward+update / rest), peak resident memory of
the main process (and of DataLoader workers, if any), the loss values of the first steps, and
the latency per image of the exported Student run with ``paddle.inference`` (in a fresh process,
``benchmark/infer_latency.py``). The parent prints
the machine (CPU model, vendor, family/model, ISA flags), the versions and a summary.

By default the child runs with the engine's own CPU settings (``ppdistill.utils.cpu``: MKL's
AVX2 path on AMD CPUs, every core). Overrides for comparisons: ``--threads N`` calls
``paddle.base.core.set_num_threads(N)`` after ``prepare_run`` (paddle pins
``OMP_NUM_THREADS=1`` at import); ``--mkl-avx2 1/0`` sets ``MKL_DEBUG_CPU_TYPE`` to 5 / empty
before ppdistill and paddle are imported (AVX2 kernels / generic path of the MKL 2019 bundled
with paddle); ``--kmp-blocktime MS`` sets ``KMP_BLOCKTIME``; ``--onednn 1`` sets
``FLAGS_use_mkldnn`` (no measurable effect on these dygraph models). ppdistill's own speed-ups
are switched off by the environment: ``PPDISTILL_CPU_KERNELS=0`` (fused CPU kernels,
``ppdistill.ops``) and ``PPDISTILL_FAST_CONV=0`` (shifted-GEMM convs of frozen teachers); the
child inherits the environment, so e.g. ``PPDISTILL_CPU_KERNELS=0 python benchmark/run.py``
measures paddle's ops.
"""
import argparse
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

import sysinfo  # noqa: E402  (benchmark/sysinfo.py)

RESULT_TAG = "BENCH_RESULT "

import compare  # noqa: E402  (benchmark/compare.py: arms and ratios)
import infer_latency  # noqa: E402  (benchmark/infer_latency.py: an export's latency rows)

TASKS = {
    "det": {"config": "configs/det/ch_PP-OCRv3_det_cml.yml", "batch": 4, "iters": 6,
            "infer_shape": [1, 3, 544, 960]},
    "rec": {"config": "configs/rec/ch_PP-OCRv3_rec_distillation.yml", "batch": 32, "iters": 6,
            "infer_shape": [1, 3, 48, 320]},
    "det_v4": {"config": "configs/det/ch_PP-OCRv4_det_cml.yml", "batch": 4, "iters": 6,
               "infer_shape": [1, 3, 544, 960]},
    "rec_v4": {"config": "configs/rec/ch_PP-OCRv4_rec_distill.yml", "batch": 32, "iters": 6,
               "infer_shape": [1, 3, 48, 320]},
}


def kind(task):
    """``det`` or ``rec``: the data set and input layout of a task."""
    return task.split("_")[0]


# ----------------------------------------------------------------------------------- data
def make_data(task, root):
    """Generated data set for ``task`` under ``root`` (kept if already there)."""
    if kind(task) == "det":
        from ppdistill.demo.det_data import make_det_dataset
        # ICDAR2015-sized images: IaaAugment resizes them 0.5-3x before the 320x320 crop.
        make_det_dataset(root=root, num_train=64, num_test=2, image_size=(1280, 720), seed=0)
    else:
        from ppdistill.demo.rec_data import make_rec_dataset
        make_rec_dataset(root=root, num_train=320, num_val=8, seed=0, with_lmdb=False)
    return root


def transform_index(config, section, name):
    for index, entry in enumerate(config[section]["dataset"]["transforms"]):
        if isinstance(entry, dict) and name in entry:
            return index
    raise KeyError(f"{section}.dataset.transforms has no {name}")


def overrides(task, data_root, work_dir, workers):
    """The ``-o`` overrides that turn the shipped config into the benchmark run."""
    from ppdistill.utils.config import load_with_overrides
    spec = TASKS[task]
    base = load_with_overrides(os.path.join(REPO, spec["config"]), [])
    data_root = data_root.rstrip("/") + "/"
    if kind(task) == "det":
        train_label, eval_label = "train_icdar2015_label.txt", "test_icdar2015_label.txt"
    else:
        train_label, eval_label = "train.txt", "val.txt"
    opts = ["Global.use_gpu=false", "Global.distributed=false",
            f"Global.save_model_dir={work_dir}/output", "Global.eval_batch_step=[0,100000000]",
            "Global.print_batch_step=100000000",
            f"Train.loader.batch_size_per_card={spec['batch']}",
            f"Train.loader.num_workers={workers}", "Eval.loader.num_workers=0",
            f"Train.dataset.data_dir={data_root}", f"Eval.dataset.data_dir={data_root}",
            f"Train.dataset.label_file_list=[{data_root}{train_label}]",
            f"Eval.dataset.label_file_list=[{data_root}{eval_label}]"]
    if kind(task) == "det":
        index = transform_index(base, "Train", "EastRandomCropData")
        opts.append(f"Train.dataset.transforms.{index}.EastRandomCropData.size=[320,320]")
    else:
        index = transform_index(base, "Train", "RecResizeImg")
        opts.append(f"Train.dataset.transforms.{index}.RecResizeImg.image_shape=[3,48,320]")
    return opts


# ---------------------------------------------------------------------------- the child
def set_cpu_environment(mkl_avx2, kmp_blocktime):
    """Environment read once by MKL / OpenMP: must run before ppdistill and paddle are imported.

    ``MKL_DEBUG_CPU_TYPE=5`` makes the MKL-ML 2019 bundled with paddle use its AVX2 kernels on
    AMD CPUs instead of a slow generic path (2.5x faster SGEMM here); importing ppdistill sets it
    on AMD CPUs unless it is already in the environment, so ``--mkl-avx2 0`` sets it empty
    (MKL then keeps its generic path). ``KMP_BLOCKTIME=0`` makes idle OpenMP threads sleep at
    once instead of spinning 200 ms (same speed, ~0.6 core less CPU burnt with 2 threads).
    """
    if kmp_blocktime >= 0:
        os.environ["KMP_BLOCKTIME"] = str(kmp_blocktime)
    if mkl_avx2 == 1:
        os.environ["MKL_DEBUG_CPU_TYPE"] = "5"
    elif mkl_avx2 == 0:
        os.environ["MKL_DEBUG_CPU_TYPE"] = ""


def apply_cpu_settings(threads, onednn):
    """After ``prepare_run`` (which sets the engine's thread count): explicit overrides."""
    import paddle
    if threads > 0:
        paddle.base.core.set_num_threads(int(threads))
    if onednn in (0, 1):
        paddle.set_flags({"FLAGS_use_mkldnn": bool(onednn)})
    from ppdistill.modeling.fast_conv import fast_conv_enabled
    from ppdistill.ops import cpu_kernels, unavailable_reason
    from ppdistill.utils import cpu
    kernels = cpu_kernels()
    info = cpu.cpu_info()
    choice = cpu.choose_threads(info["vendor"], info["flags"], cpu.available_cores(),
                                os.environ.get("MKL_DEBUG_CPU_TYPE"), cpu.USER_THREAD_SETTING)
    return {"threads": threads if threads > 0 else "engine default (ppdistill.utils.cpu)",
            "paddle_threads": threads if threads > 0 else (choice.paddle_threads or 1),
            "kernel_threads": cpu.kernel_threads(), "thread_choice": choice.reason,
            "ppdistill_cpu_kernels": ("on" if kernels is not None
                                      else f"off ({unavailable_reason()})"),
            "fast_frozen_convs": fast_conv_enabled(),
            "FLAGS_use_mkldnn": paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"],
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE"),
            "KMP_BLOCKTIME": os.environ.get("KMP_BLOCKTIME")}


class PhaseTimer:
    """Wall time of each sub-model's forward, the loss and backward+update inside train_step."""

    def __init__(self, trainer):
        self.times, self.rss = {}, {}
        model = getattr(trainer.model, "_layers", trainer.model)
        if hasattr(model, "run_sub_model"):
            # per sub-model, whichever way it runs (a bf16 teacher bypasses its layer's hooks)
            run_sub_model = model.run_sub_model

            def timed(name, *args, **kwargs):
                start = time.perf_counter()
                try:
                    return run_sub_model(name, *args, **kwargs)
                finally:
                    self._add(f"fwd {name}", time.perf_counter() - start)
            model.run_sub_model = timed
        for name in [] if hasattr(model, "run_sub_model") else (
                getattr(model, "model_name_list", None) or []):
            sub = getattr(model, name)
            sub.register_forward_pre_hook(self._pre(name))
            sub.register_forward_post_hook(self._post(name))
        loss_fn, step = trainer.loss_fn, trainer.amp.step
        trainer.loss_fn = self._wrap("loss", loss_fn)
        trainer.amp.step = self._wrap("backward+update", step)
        self._starts = {}

    def _pre(self, name):
        def hook(layer, inputs):
            self._starts[name] = time.perf_counter()
        return hook

    def _post(self, name):
        def hook(layer, inputs, outputs):
            self._add(f"fwd {name}", time.perf_counter() - self._starts.pop(name))
        return hook

    def _wrap(self, name, fn):
        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - start)
        return wrapped

    def _add(self, name, seconds):
        self.times[name] = self.times.get(name, 0.0) + seconds
        self.rss[name] = max(self.rss.get(name, 0.0),
                             (sysinfo.status_kib(os.getpid(), "VmRSS") or 0) / 1024)

    def take(self):
        times, self.times = self.times, {}
        rss, self.rss = self.rss, {}
        return times, rss


def batches(loader):
    while True:
        yield from loader


def export_student(trainer, task, export_dir):
    """Export the Student (dynamic H/W; fixed benchmark size if that fails)."""
    from ppdistill.utils.export import export_model, export_single
    model = getattr(trainer.model, "_layers", trainer.model)
    try:
        export_model(trainer.config, model, export_dir, names=["Student"])
        return os.path.join(export_dir, "Student"), "dynamic H/W"
    except Exception as exc:  # noqa: BLE001 - recorded in the result, benchmark goes on
        shape = list(TASKS[task]["infer_shape"])
        shape[0] = None
        export_single(model.Student, shape, os.path.join(export_dir, "Student", "inference"))
        return (os.path.join(export_dir, "Student"),
                f"dynamic export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                f"exported with fixed input {shape}")


def run_child(args):
    task, spec = args.child, TASKS[args.child]
    launch_env = dict(os.environ)  # for the inference process: no training-time settings
    set_cpu_environment(args.mkl_avx2, args.kmp_blocktime)
    from ppdistill.utils.cpu import setup_tool_process
    setup_tool_process()  # before paddle is imported, as tools/train.py does
    from ppdistill.engine.launch import prepare_run
    from ppdistill.engine.run import build_trainer
    from ppdistill.utils.config import load_with_overrides

    opts = overrides(task, args.data_dir, args.work_dir, args.workers) + list(args.opt or [])
    config = load_with_overrides(os.path.join(REPO, spec["config"]), opts)
    logger = prepare_run(config, "benchmark")
    settings = apply_cpu_settings(args.threads, args.onednn)
    build_start = time.perf_counter()
    trainer = build_trainer(config, logger)
    build_seconds = time.perf_counter() - build_start
    rss_after_build = sysinfo.memory_snapshot()["main_rss_mib"]
    phases = PhaseTimer(trainer)
    trainer.model.train()
    iters = args.iters or spec["iters"]
    load = sysinfo.CpuLoad()
    records, stream = [], batches(trainer.train_loader)
    for step in range(args.warmup + iters):
        if step == args.warmup:
            load.start()
        start, cpu_start = time.perf_counter(), time.process_time()
        batch = next(stream)
        got_batch = time.perf_counter()
        terms = trainer.train_step(batch)
        end = time.perf_counter()
        record = {"reader": got_batch - start, "step": end - got_batch, "wall": end - start,
                  "cpu_main": time.process_time() - cpu_start, "batch": int(batch[0].shape[0]),
                  "phases": None, "rss_after_phase_mib": None,
                  "loss": {k: v for k, v in terms.items() if k != "lr"}}
        record["phases"], record["rss_after_phase_mib"] = phases.take()
        records.append(record)
        print(f"[{task}] step {step + 1}/{args.warmup + iters}"
              f"{' (warm-up)' if step < args.warmup else ''}: {record['wall']:.2f} s "
              f"(reader {record['reader']:.2f} s, main-process cpu {record['cpu_main']:.2f} s), "
              f"loss {terms.get('loss', float('nan')):.6f}",
              flush=True)
    cpu_load = load.stop()
    memory = sysinfo.memory_snapshot()
    del stream  # lets DataLoader workers exit
    timed = records[args.warmup:]
    wall = [r["wall"] for r in timed]
    images = sum(r["batch"] for r in timed)
    phase_names = sorted({k for r in timed for k in r["phases"]})
    phase_means = {k: statistics.mean(r["phases"].get(k, 0.0) for r in timed)
                   for k in phase_names}
    phase_means["reader"] = statistics.mean(r["reader"] for r in timed)
    phase_means["rest of step"] = statistics.mean(r["wall"] for r in timed) - sum(
        phase_means.values())
    result = {
        "task": task, "config": spec["config"], "overrides": opts, "cpu_settings": settings,
        "workers": args.workers, "batch": spec["batch"], "warmup": args.warmup, "iters": iters,
        "s_per_iter": statistics.mean(wall), "s_per_iter_min": min(wall),
        "s_per_iter_max": max(wall), "img_per_s": images / sum(wall),
        "cpu_s_per_iter_main": statistics.mean(r["cpu_main"] for r in timed),
        "phases_s": {k: round(v, 3) for k, v in phase_means.items()},
        "rss_after_phase_mib": {k: round(v) for k, v in timed[0]["rss_after_phase_mib"].items()},
        "cpu_load": cpu_load, "build_s": round(build_seconds, 1),
        "rss_after_build_mib": round(rss_after_build),
        "peak_rss_main_mib": round(memory["main_peak_mib"]),
        "peak_rss_workers_mib": [round(v) for v in memory["worker_peak_mib"].values()],
        "first_losses": [r["loss"] for r in records[:args.show_losses]],
        "versions": sysinfo.versions(),
        "machine": sysinfo.machine_info(), "cpu_flags": sysinfo.cpu_flags_all(),
        "precisions": {k: v for k, v in getattr(getattr(trainer.model, "_layers", trainer.model),
                                                "run_dtypes", {}).items()},
    }
    if not args.no_infer:
        result["inference"] = run_inference(trainer, task, spec, args, launch_env)
    print(RESULT_TAG + json.dumps(result), flush=True)


def run_inference(trainer, task, spec, args, launch_env):
    """Export the Student, then time it in a fresh process (``benchmark/infer_latency.py``,
    started as the predict tools start: the environment this child was launched with, without
    the training-time thread settings, e.g. ``KMP_BLOCKTIME=0``, which costs oneDNN ~50 %)."""
    out = {}
    try:
        model_dir, how = export_student(trainer, task, os.path.join(args.work_dir, "export", task))
        out["export"] = how
        cmd = [sys.executable, os.path.join(BENCH_DIR, "infer_latency.py"), "--model-dir",
               model_dir, "--kind", kind(task), "--data-dir", args.data_dir,
               "--shape", ",".join(str(v) for v in spec["infer_shape"]),
               "--threads", str(args.threads), "--mkl-avx2", str(args.mkl_avx2),
               "--kmp-blocktime", str(args.kmp_blocktime)]
        proc = subprocess.run(cmd, cwd=REPO, env=launch_env, capture_output=True, text=True)
        tag = infer_latency.RESULT_TAG
        lines = [line for line in proc.stdout.splitlines() if line.startswith(tag)]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"infer_latency.py exit {proc.returncode}: {tail[0][:200]}")
        out.update(json.loads(lines[-1][len(tag):]))
    except Exception as exc:  # noqa: BLE001
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return out


# --------------------------------------------------------------------------- the parent
def child_command(task, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", task,
           "--data-dir", os.path.join(args.data_root, kind(task)), "--work-dir",
           os.path.join(args.work_root, task), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--onednn", str(args.onednn),
           "--workers", str(args.workers), "--mkl-avx2", str(args.mkl_avx2),
           "--kmp-blocktime", str(args.kmp_blocktime), "--show-losses", str(args.show_losses)]
    if args.iters:
        cmd += ["--iters", str(args.iters)]
    if args.no_infer:
        cmd.append("--no-infer")
    for opt in args.opt or []:
        cmd += ["--opt", opt]
    return cmd


def run_once(task, arm, args):
    """One fresh child process of ``task`` in ``arm``'s environment; its parsed result."""
    env = compare.arm_environment(arm, os.environ)
    cmd = child_command(task, args)
    for opt in compare.ARM_OVERRIDES.get(arm, []):
        cmd += ["--opt", opt]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    log_lines, result = [], None
    for line in proc.stdout:
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
        else:
            log_lines.append(line)
            if (line.startswith(f"[{task}]") or "CPU: " in line or "precision" in line
                    or "bfloat16" in line):
                print("  " + line.rstrip(), flush=True)
    if proc.wait() != 0 or result is None:
        sys.stdout.write("".join(log_lines[-40:]))
        raise SystemExit(f"{task} ({arm}): benchmark child failed (exit {proc.returncode})")
    result["arm"] = arm
    result["arm_settings"] = compare.describe(arm)
    return result


def run_task(task, args):
    """Every arm ``--rounds`` times, alternating (A B, B A, ...); ``{arm: [results]}``."""
    by_arm = {arm: [] for arm in args.arms}
    for index, order in enumerate(compare.round_orders(args.arms, args.rounds)):
        for arm in order:
            print(f"=== {task}, round {index + 1}/{args.rounds}, arm {arm}", flush=True)
            result = run_once(task, arm, args)
            result["round"] = index + 1
            by_arm[arm].append(result)
            print(f"  -> {result['s_per_iter']:.2f} s/iter, {result['img_per_s']:.3f} img/s, "
                  f"peak RSS {result['peak_rss_main_mib'] / 1024:.2f} GiB, others' load "
                  f"{result['cpu_load']['other_cores']} cores", flush=True)
    return by_arm


def spread(values, fmt="{:.2f}"):
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt.format(statistics.median(values)) + " (min " + fmt.format(min(values)) +
            ", max " + fmt.format(max(values)) + f", n={len(values)})")


def losses_identical(results):
    first = [r["first_losses"] for r in results]
    worst = 0.0
    for other in first[1:]:
        for a, b in zip(first[0], other):
            for key in a:
                worst = max(worst, abs(a[key] - b.get(key, float("inf"))))
    return worst


def summarize(task, results):
    img = [r["img_per_s"] for r in results]
    sec = [r["s_per_iter"] for r in results]
    rss = [r["peak_rss_main_mib"] / 1024 for r in results]
    first = results[0]
    print(f"\n##### {task}: {first['config']}  batch {first['batch']}, warm-up {first['warmup']}, "
          f"{first['iters']} timed iterations, DataLoader workers {first['workers']}")
    print(f"cpu settings: {first['cpu_settings']}")
    print(f"s/iter     : {spread(sec)}   (per-iteration min/max in run 1: "
          f"{first['s_per_iter_min']:.2f}/{first['s_per_iter_max']:.2f})")
    print(f"images/s   : {spread(img, '{:.3f}')}")
    print(f"peak RSS   : {spread(rss)} GiB main process (ru_maxrss; after build "
          f"{first['rss_after_build_mib'] / 1024:.2f} GiB)"
          + (f"; workers {first['peak_rss_workers_mib']} MiB each" if first["peak_rss_workers_mib"]
             else ""))
    print("step split : " + ", ".join(f"{k} {v:.2f} s" for k, v in first["phases_s"].items()))
    print("RSS after  : " + ", ".join(f"{k} {v / 1024:.2f} GiB"
                                      for k, v in first["rss_after_phase_mib"].items())
          + "  (first timed step, VmRSS right after each phase)")
    print("cpu load   : " + ", ".join(
        f"run {i + 1}: own {r['cpu_load']['own_cores']} cores, others "
        f"{r['cpu_load']['other_cores']}" for i, r in enumerate(results)))
    for index, losses in enumerate(first["first_losses"]):
        print(f"loss step {index + 1}: total {losses.get('loss'):.9f}  " + ", ".join(
            f"{k} {v:.6f}" for k, v in losses.items() if k != "loss"))
    if len(results) > 1:
        print("first-step losses identical across runs: max |diff| = "
              f"{losses_identical(results):.3g}")
    infer = first.get("inference", {})
    for key in ("export",) + compare.INFERENCE_ROWS + ("error",):
        if key in infer:
            print(f"inference {key}: {infer[key]}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(TASKS) + ["all", "all_v4"], default="all",
                        help="all: det + rec (PP-OCRv3); all_v4: det_v4 + rec_v4")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations "
                        "(default: 6 per task)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", "--repeat", dest="rounds", type=int, default=1,
                        help="fresh processes per task and arm (arms alternate per round)")
    parser.add_argument("--arms", default="env",
                        type=lambda value: [arm for arm in value.split(",") if arm],
                        help="comma-separated arms of benchmark/compare.py (env = environment "
                        "as it is, optimised, optimised-bf16, baseline, baseline-avx2); ratios "
                        "are printed against 'baseline' when it is one")
    parser.add_argument("--opt", action="append", help="extra -o override for every run, e.g. "
                        "--opt Architecture.Models.Teacher.precision=bf16 (repeatable)")
    parser.add_argument("--threads", type=int, default=0, help="paddle CPU math threads "
                        "(0 = the engine's setting: every core on the MKL AVX2 path)")
    parser.add_argument("--onednn", type=int, default=-1, choices=[-1, 0, 1],
                        help="FLAGS_use_mkldnn for training (-1 = leave the engine's setting)")
    parser.add_argument("--mkl-avx2", type=int, default=-1, choices=[-1, 0, 1],
                        help="1: MKL_DEBUG_CPU_TYPE=5 (fast MKL path on AMD CPUs); 0: MKL's "
                        "generic path; -1: as the environment / ppdistill's import set it")
    parser.add_argument("--kmp-blocktime", type=int, default=-1, help="KMP_BLOCKTIME in ms for "
                        "paddle's OpenMP threads (-1 = leave the environment as it is)")
    parser.add_argument("--workers", type=int, default=0, help="Train.loader.num_workers")
    parser.add_argument("--show-losses", type=int, default=3, help="loss values printed for "
                        "the first N steps (warm-up included)")
    parser.add_argument("--no-infer", action="store_true", help="skip the inference latency")
    parser.add_argument("--data-root", default=os.path.join(tempfile.gettempdir(),
                                                            "ppdistill_bench_data"))
    parser.add_argument("--work-root", default=os.path.join(tempfile.gettempdir(),
                                                            "ppdistill_bench_work"))
    parser.add_argument("--json-out", default=None, help="append every run's result here")
    parser.add_argument("--child", choices=list(TASKS), help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    for arm in args.arms:
        compare.arm_environment(arm, {})  # unknown arm: one-line error before any run
    tasks = {"all": ["det", "rec"], "all_v4": ["det_v4", "rec_v4"]}.get(args.task, [args.task])
    print("machine:", json.dumps(sysinfo.machine_info()))
    print("repo   :", REPO, "git", sysinfo.git_revision(REPO))
    print(f"command: {' '.join(sys.argv)}")
    all_results = {}
    for task in tasks:
        make_data(task, os.path.join(args.data_root, kind(task)))
        all_results[task] = run_task(task, args)
        if args.json_out:
            with open(args.json_out, "a") as handle:
                for results in all_results[task].values():
                    for result in results:
                        handle.write(json.dumps(result) + "\n")
    first = next(iter(all_results[tasks[0]].values()))[0]
    print("versions:", json.dumps(first["versions"]))
    for task in tasks:
        for arm, results in all_results[task].items():
            print(f"\n##### arm {arm}: {compare.describe(arm)}")
            summarize(task, results)
        if len(args.arms) > 1:
            print(f"\n##### {task}: arms side by side (same session, alternating order)")
            print("\n".join(compare.ratio_lines(task, all_results[task])))
            infer = compare.inference_lines(all_results[task])
            if infer:
                print("\nexported Student, paddle.inference (rows: benchmark/run.py run_inference)")
                print("\n".join(infer))


if __name__ == "__main__":
    main()
