"""Side-by-side arms of ``benchmark/run.py``: what each arm sets, and the ratio summary.

An *arm* is a set of environment variables for the benchmark's child process. The arms run
alternately in the same session (round 1: A B, round 2: B A, ...), so load from other users of
the machine hits them alike; every ratio is a median of one arm over the median of the
reference arm measured in the same run on the same machine.

- ``env``: the parent's environment unchanged (the default of ``run.py`` without ``--arms``;
  e.g. ``PPDISTILL_CPU_KERNELS=0 python benchmark/run.py`` measures paddle's ops).
- ``optimised``: ppdistill as shipped (own CPU kernels, shifted-GEMM frozen convs, the thread
  choice of ``ppdistill.utils.cpu``, MKL's AVX2 path on AMD/Hygon CPUs with AVX2; the exported
  Student run by ``paddle.inference`` with oneDNN, ``ppdistill.infer.onednn``).
- ``baseline``: the stand-in for a PaddleOCR-equivalent implementation: the same code with
  ppdistill's optimisations off (``PPDISTILL_CPU_KERNELS=0 PPDISTILL_FAST_CONV=0
  PPDISTILL_MALLOC_TRIM=0``), paddle's
  default threads (1) and MKL's own code-path choice (``MKL_DEBUG_CPU_TYPE`` empty: what
  PaddleOCR gets, the generic path on AMD), the Student exported the way PaddleOCR's export
  does (``PPDISTILL_DEPLOY_FORM=0``: branches fused, affine blocks as their own ops, paddle's
  interpolate) and run without oneDNN (``PPDISTILL_ONEDNN=0``: paddle 3.3's oneDNN cannot run
  a ``.json`` det program exported the PaddleOCR way, and switching it off is the usual
  workaround).
- ``baseline-avx2``: ``baseline`` with MKL's AVX2 path (``MKL_DEBUG_CPU_TYPE=5``), one thread:
  separates the MKL switch from the rest.
- ``optimised-norecompute``: ``optimised`` without the trained det students' activation
  recomputation (``PPDISTILL_RECOMPUTE=0``): the speed-for-memory trade-off of that switch.
- ``optimised-bf16``: ``optimised`` with the frozen teacher in bfloat16
  (``-o Architecture.Models.Teacher.precision=bf16``; configs with a frozen ``Teacher`` only).
"""
import statistics

#: variables an arm owns; each arm starts from the parent's environment without them
ARM_VARIABLES = ("PPDISTILL_CPU_KERNELS", "PPDISTILL_FAST_CONV", "PPDISTILL_MALLOC_TRIM",
                 "PPDISTILL_RECOMPUTE", "OMP_NUM_THREADS", "CPU_NUM", "MKL_DEBUG_CPU_TYPE",
                 "KMP_BLOCKTIME", "PPDISTILL_ONEDNN", "PPDISTILL_DEPLOY_FORM")
ARMS = {
    "env": None,
    "optimised": {},
    "optimised-norecompute": {"PPDISTILL_RECOMPUTE": "0"},
    "optimised-bf16": {},
    "baseline": {"PPDISTILL_CPU_KERNELS": "0", "PPDISTILL_FAST_CONV": "0",
                 "PPDISTILL_MALLOC_TRIM": "0", "OMP_NUM_THREADS": "1", "MKL_DEBUG_CPU_TYPE": "",
                 "PPDISTILL_ONEDNN": "0", "PPDISTILL_DEPLOY_FORM": "0"},
    "baseline-avx2": {"PPDISTILL_CPU_KERNELS": "0", "PPDISTILL_FAST_CONV": "0",
                      "PPDISTILL_MALLOC_TRIM": "0", "OMP_NUM_THREADS": "1",
                      "MKL_DEBUG_CPU_TYPE": "5", "PPDISTILL_ONEDNN": "0",
                      "PPDISTILL_DEPLOY_FORM": "0"},
}
#: extra ``-o`` overrides of an arm
ARM_OVERRIDES = {"optimised-bf16": ["Architecture.Models.Teacher.precision=bf16"]}
#: issue 11's targets: (speed ratio >=, peak-RSS ratio <=) against ``baseline``
TARGETS = {"det": (1.6, 0.6), "rec": (2.0, 0.6), "det_v4": (1.6, 0.6), "rec_v4": (2.0, 0.6)}


def arm_environment(arm, base_env):
    """The child's environment for ``arm``: ``base_env`` without :data:`ARM_VARIABLES`, plus
    the arm's settings."""
    if arm not in ARMS:
        raise SystemExit(f"error: unknown arm {arm!r} (one of: {', '.join(ARMS)})")
    if ARMS[arm] is None:
        return dict(base_env)
    env = {k: v for k, v in base_env.items() if k not in ARM_VARIABLES}
    env.update(ARMS[arm])
    return env


def describe(arm):
    """What ``arm`` sets, for the printout and the JSON results."""
    if ARMS[arm] is None:
        return "environment as inherited"
    return " ".join([f"{k}={v}" for k, v in ARMS[arm].items()] +
                    [f"-o {o}" for o in ARM_OVERRIDES.get(arm, [])]) or "ppdistill defaults"


def round_orders(arms, rounds):
    """Arm order per round: as given in odd rounds, reversed in even ones (A B, B A, ...)."""
    return [list(arms) if index % 2 == 0 else list(reversed(arms)) for index in range(rounds)]


def max_loss_diff(a, b):
    """Largest |difference| of the logged loss terms of the first steps of two results."""
    worst = 0.0
    for left, right in zip(a["first_losses"], b["first_losses"]):
        for key, value in left.items():
            if key in right:
                worst = max(worst, abs(value - right[key]))
    return worst


def medians(results):
    return {"img_per_s": statistics.median(r["img_per_s"] for r in results),
            "s_per_iter": statistics.median(r["s_per_iter"] for r in results),
            "peak_rss_gib": statistics.median(r["peak_rss_main_mib"] / 1024 for r in results)}


def ratio_lines(task, by_arm, reference="baseline"):
    """Markdown lines: per-round numbers of every arm, medians, and the ratios against
    ``reference`` (speed = img/s ratio, memory = peak-RSS ratio), with issue 11's targets."""
    lines = ["| arm | round | s/iter | img/s | peak RSS GiB | others' load (cores) | "
             "first-step loss |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for arm, results in by_arm.items():
        for result in sorted(results, key=lambda r: r.get("round", 0)):
            lines.append(f"| {arm} | {result.get('round', '-')} | {result['s_per_iter']:.2f} | "
                         f"{result['img_per_s']:.3f} | {result['peak_rss_main_mib'] / 1024:.2f} | "
                         f"{result['cpu_load']['other_cores']} | "
                         f"{result['first_losses'][0]['loss']:.9f} |")
    lines += ["", "| arm | median s/iter | median img/s | median peak RSS GiB | speed vs "
              f"{reference} | peak RSS vs {reference} | max loss diff vs {reference} (first "
              "steps) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    ref = medians(by_arm[reference]) if reference in by_arm else None
    for arm, results in by_arm.items():
        med = medians(results)
        if ref is None or arm == reference:
            speed = memory = diff = "–"
        else:
            speed = f"×{med['img_per_s'] / ref['img_per_s']:.2f}"
            memory = f"×{med['peak_rss_gib'] / ref['peak_rss_gib']:.2f}"
            diff = f"{max_loss_diff(results[0], by_arm[reference][0]):.3g}"
        lines.append(f"| {arm} | {med['s_per_iter']:.2f} | {med['img_per_s']:.3f} | "
                     f"{med['peak_rss_gib']:.2f} | {speed} | {memory} | {diff} |")
    if ref is not None and "optimised" in by_arm and task in TARGETS:
        med = medians(by_arm["optimised"])
        speed = med["img_per_s"] / ref["img_per_s"]
        memory = med["peak_rss_gib"] / ref["peak_rss_gib"]
        want_speed, want_memory = TARGETS[task]
        lines += ["", f"targets (optimised vs {reference}): speed ×{speed:.2f} (want ≥ "
                  f"×{want_speed}: {'met' if speed >= want_speed else 'MISSED'}), peak RSS "
                  f"×{memory:.2f} (want ≤ ×{want_memory}: "
                  f"{'met' if memory <= want_memory else 'MISSED'})"]
    return lines


#: the exported Student's latency rows of ``run.py`` (``result["inference"]``)
INFERENCE_ROWS = ("default", "default_onednn_on", "default_onednn_off", "1_thread",
                  "default_batch8")


def inference_lines(by_arm, reference="baseline"):
    """Markdown lines: the exported Student's median ms per image of every arm and row (medians
    over the rounds), whether oneDNN ran, and the speed-up against ``reference``'s same row."""
    table = {}
    for arm, results in by_arm.items():
        for row in INFERENCE_ROWS:
            runs = [r["inference"][row] for r in results if row in r.get("inference", {})]
            if runs:
                table[(arm, row)] = (statistics.median(run["ms_per_image_median"] for run in runs),
                                     runs[0])
    if not table:
        return []
    lines = ["| arm | row | threads | batch | oneDNN | ms per image (median of rounds) | "
             f"speed-up vs {reference} (same row) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for arm in by_arm:
        for row in INFERENCE_ROWS:
            if (arm, row) not in table:
                continue
            ms, run = table[(arm, row)]
            ref = table.get((reference, row))
            speed = "–" if ref is None or arm == reference else f"×{ref[0] / ms:.2f}"
            lines.append(f"| {arm} | {row} | {run['threads']} | {run['input'][0]} | "
                         f"{'on' if run.get('onednn') else 'off'} | {ms:.2f} | {speed} |")
    return lines
