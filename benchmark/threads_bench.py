"""1 thread vs every core, per op family, for paddle's CPU kernels and ppdistill's own.

    python benchmark/threads_bench.py                   # MKL AVX2 path and generic path, 2 rounds
    python benchmark/threads_bench.py --paths native --rounds 3

Each configuration (MKL code path x thread count) runs in a fresh process with
``OMP_NUM_THREADS=n`` (paddle's math threads and ppdistill's kernel threads both follow it);
configurations alternate per round and the table shows the median ms of each op family
(median of 3 calls after a warm-up call per process, then median over rounds), and the speed-up
of n threads over 1. ``--paths``: ``avx2`` sets ``MKL_DEBUG_CPU_TYPE=5``, ``generic`` sets it
empty (MKL's own choice: the generic path on AMD), ``native`` leaves the environment alone.
The op families are the ones a det CML / rec distillation step spends its time in.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
TAG = "THREADS_RESULT "
PATHS = {"avx2": "5", "generic": "", "native": None}


def _time(fn, calls=3):
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def child():
    """Time every op family in this process's thread setting; print one JSON line."""
    sys.path.insert(0, REPO)
    from ppdistill.utils.cpu import configure_cpu_threads, kernel_threads, setup_tool_process
    setup_tool_process()
    import paddle
    import paddle.nn.functional as F
    from paddle import nn
    configure_cpu_threads()
    from ppdistill.losses.basic_loss import DMLLoss
    from ppdistill.modeling.fast_conv import shifted_gemm_conv2d
    from ppdistill.ops import conv_bn_act, cpu_kernels
    paddle.seed(0)
    rows = {}

    def fwd_bwd(fn, inputs):
        def run():
            out = fn()
            paddle.grad([out], inputs, [paddle.ones_like(out)])
        return run

    a = paddle.randn([1024, 1024])
    rows["paddle matmul 1024^2 (MKL SGEMM)"] = _time(lambda: paddle.matmul(a, a))
    x = paddle.randn([4, 64, 80, 80])
    x.stop_gradient = False
    w = paddle.randn([64, 64, 3, 3]) * 0.05
    w.stop_gradient = False
    rows["paddle conv 3x3 64->64, 4x80x80, fwd+bwd (im2col+GEMM)"] = _time(
        fwd_bwd(lambda: F.conv2d(x, w, padding=1), [x, w]))
    big = paddle.randn([4, 256, 80, 80])
    w9 = paddle.randn([64, 256, 9, 9]) * 0.01
    with paddle.no_grad():
        rows["paddle conv 9x9 256->64, 4x80x80, fwd (frozen teacher)"] = _time(
            lambda: F.conv2d(big, w9, padding=4), calls=2)
        rows["ppdistill shifted-GEMM conv 9x9 256->64, fwd"] = _time(
            lambda: shifted_gemm_conv2d(big, w9), calls=2)
    dw_x = paddle.randn([32, 128, 12, 160])
    dw_x.stop_gradient = False
    dw = nn.Conv2D(128, 128, 3, padding=1, groups=128, bias_attr=False)
    bn = nn.BatchNorm2D(128)
    rows["paddle depthwise 3x3 128ch + BN + hardswish, 32x12x160, fwd+bwd"] = _time(
        fwd_bwd(lambda: F.hardswish(bn(dw(dw_x))), [dw_x, dw.weight, bn.weight, bn.bias]))
    rows["paddle BN (train) + hardswish 128ch, 32x12x160, fwd+bwd"] = _time(
        fwd_bwd(lambda: F.hardswish(bn(dw_x)), [dw_x]))
    rows["paddle elementwise add+mul 32x128x12x160"] = _time(lambda: dw_x * 2.0 + dw_x)
    logits = paddle.randn([32, 40, 6625]) * 3
    other = paddle.randn([32, 40, 6625]) * 3
    logits.stop_gradient = False
    if cpu_kernels() is not None:
        rows["ppdistill depthwise 3x3 + BN + hardswish (fused), fwd+bwd"] = _time(
            fwd_bwd(lambda: conv_bn_act(dw_x, dw, bn, "hardswish"),
                    [dw_x, dw.weight, bn.weight, bn.bias]))
        rows["ppdistill fused DML loss 32x40x6625, fwd+bwd"] = _time(
            fwd_bwd(lambda: DMLLoss(act="softmax", use_log=True)(logits, other), [logits]))
    print(TAG + json.dumps({"threads": kernel_threads(), "rows": rows,
                            "MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE")}),
          flush=True)


def run_config(path, threads):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "CPU_NUM")}
    env["OMP_NUM_THREADS"] = str(threads)
    if PATHS[path] is None:
        env.pop("MKL_DEBUG_CPU_TYPE", None)
    else:
        env["MKL_DEBUG_CPU_TYPE"] = PATHS[path]
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], env=env,
                         capture_output=True, text=True, cwd=REPO)
    for line in out.stdout.splitlines():
        if line.startswith(TAG):
            return json.loads(line[len(TAG):])
    raise SystemExit(f"child failed ({path}, {threads} threads):\n{out.stdout[-2000:]}"
                     f"{out.stderr[-2000:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="avx2,generic")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="the 'all cores' thread count (default: every available core)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child()
    sys.path.insert(0, BENCH_DIR)
    import sysinfo
    print("machine:", json.dumps(sysinfo.machine_info()))
    paths = [p for p in args.paths.split(",") if p]
    configs = [(p, n) for p in paths for n in (1, args.threads)]
    results = {c: [] for c in configs}
    for index in range(args.rounds):
        for config in (configs if index % 2 == 0 else list(reversed(configs))):
            results[config].append(run_config(*config))
            print(f"round {index + 1}: {config[0]} path, {config[1]} thread(s) done", flush=True)
    for path in paths:
        one, many = results[(path, 1)], results[(path, args.threads)]
        print(f"\n| MKL {path} path: op | 1 thread ms | {args.threads} threads ms | speed-up |")
        print("| --- | --- | --- | --- |")
        for row in one[0]["rows"]:
            t1 = statistics.median(r["rows"][row] for r in one)
            tn = statistics.median(r["rows"][row] for r in many)
            print(f"| {row} | {t1:.1f} | {tn:.1f} | ×{t1 / tn:.2f} |")


if __name__ == "__main__":
    main()
