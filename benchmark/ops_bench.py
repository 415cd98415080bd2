"""ppdistill's CPU kernels (``ppdistill.ops``) against paddle's ops: time and saved memory.

    python benchmark/ops_bench.py

Layers are those of MobileNetV1Enhance (scale 0.5) at batch 32 on 3x48x320 crops (the PP-OCRv3
recognition backbone), the CTC head's DML loss (32 x 40 x 6625) and PP-LCNetV3's
LearnableRepLayers (scale 0.95, 4 branches, batch 32 on 3x48x320: the PP-OCRv4/v5 rec student;
pointwise rows twice, alternating, also with the stacked-GEMM variants of the fused node). For
each case it prints the mean time of 3 forward+backward passes and the memory the forward leaves
allocated for backward (paddle's host-memory counter), for paddle's ops and for ppdistill's path.

    python benchmark/ops_bench.py            # every row
    python benchmark/ops_bench.py --rep      # only the LearnableRepLayer rows
    python benchmark/ops_bench.py --det      # only PP-LCNetV3 det x0.75's LearnableRepLayers at
                                             # batch 4 on 320x320 (the PP-OCRv4 det students)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppdistill  # noqa: E402,F401
import paddle  # noqa: E402
from paddle import nn  # noqa: E402

from ppdistill.losses.basic_loss import DMLLoss  # noqa: E402
from ppdistill.modeling.backbones.rec_lcnetv3 import LearnableRepLayer  # noqa: E402
from ppdistill.ops import rep_layer  # noqa: E402
from ppdistill.ops import conv_bn_act, cpu_kernels, loader  # noqa: E402
from ppdistill.utils.cpu import configure_cpu_threads, kernel_threads  # noqa: E402

#: (batch, in channels, out channels, height, width, kernel, stride): depthwise rows have
#: in == out and kernel > 1, pointwise rows kernel 1.
LAYERS = [(32, 16, 16, 24, 160, 3, 1), (32, 64, 64, 24, 160, 3, (2, 1)),
          (32, 128, 128, 12, 160, 3, 1), (32, 256, 256, 6, 160, 5, 1),
          (32, 512, 512, 3, 160, 5, (1, 2)), (32, 64, 128, 24, 160, 1, 1),
          (32, 256, 256, 6, 160, 1, 1)]

#: PP-LCNetV3 x0.95 rec LearnableRepLayers at batch 32: (in, out, height, width, kernel, stride)
#: with the block they come from
REP_LAYERS = [
    ((16, 16, 24, 160, 3, 1), "blocks2.0 dw"), ((64, 64, 24, 160, 3, 1), "blocks3.1 dw"),
    ((64, 64, 24, 160, 3, (2, 1)), "blocks4.0 dw"),
    ((128, 128, 12, 160, 3, (1, 2)), "blocks5.0 dw"),
    ((240, 240, 12, 80, 5, 1), "blocks5.1 dw"), ((240, 240, 12, 80, 5, (2, 1)), "blocks6.0 dw"),
    ((480, 480, 3, 80, 5, 1), "blocks6.3 dw"), ((16, 32, 24, 160, 1, 1), "blocks2.0 pw"),
    ((64, 64, 24, 160, 1, 1), "blocks3.1 pw"), ((240, 240, 12, 80, 1, 1), "blocks5.1 pw"),
    ((480, 480, 3, 80, 1, 1), "blocks6.3 pw")]

#: PP-LCNetV3 x0.75 det LearnableRepLayers at batch 4 on 320x320 crops (ch_PP-OCRv4_det_cml.yml's
#: students), same layout as REP_LAYERS
DET_REP_LAYERS = [
    ((16, 16, 160, 160, 3, 1), "blocks2.0 dw"), ((32, 32, 160, 160, 3, 2), "blocks3.0 dw"),
    ((48, 48, 80, 80, 3, 1), "blocks3.1 dw"), ((192, 192, 20, 20, 5, 1), "blocks5.1 dw"),
    ((384, 384, 10, 10, 5, 1), "blocks6.1 dw"), ((16, 32, 160, 160, 1, 1), "blocks2.0 pw"),
    ((96, 96, 40, 40, 1, 1), "blocks4.1 pw"), ((192, 192, 20, 20, 1, 1), "blocks5.1 pw"),
    ((192, 384, 10, 10, 1, 1), "blocks6.0 pw"), ((384, 384, 10, 10, 1, 1), "blocks6.1 pw")]


def allocated():
    return paddle.base.core.host_memory_stat_current_value("Allocated", 0)


def measure(fn, inputs, calls=3):
    """(ms per forward+backward, MiB kept from forward to backward)."""
    def once():
        out = fn()
        return paddle.grad([out], inputs, [paddle.ones_like(out)])
    once()
    start = time.perf_counter()
    for _ in range(calls):
        once()
    ms = (time.perf_counter() - start) / calls * 1000
    before = allocated()
    out = fn()
    kept = (allocated() - before - out.numel() * 4) / 2**20
    del out
    return ms, kept


def both_paths(fn, inputs):
    """Measure ``fn`` with ppdistill's kernels, then with paddle's ops (kernels switched off)."""
    ours = measure(fn, inputs)
    saved = loader._STATE["module"]
    loader._STATE["module"] = None
    try:
        theirs = measure(fn, inputs)
    finally:
        loader._STATE["module"] = saved
    return ours, theirs


def report(label, ours, theirs):
    print(f"{label}: paddle {theirs[0]:7.1f} ms, kept {theirs[1]:6.0f} MiB | ppdistill "
          f"{ours[0]:7.1f} ms, kept {ours[1]:6.0f} MiB")


def main():
    configure_cpu_threads()
    start = time.perf_counter()
    kernels = cpu_kernels()
    print(f"paddle {paddle.__version__}; kernels loaded in {time.perf_counter() - start:.1f} s: "
          f"{kernels is not None}; kernel threads {kernel_threads()}")
    if kernels is None:
        print(f"kernels unavailable: {loader.unavailable_reason()}")
        return
    paddle.seed(0)
    if "--det" in sys.argv[1:]:
        rep_rows(DET_REP_LAYERS, batch=4)
        return
    rep_rows(REP_LAYERS)
    if "--rep" in sys.argv[1:]:
        return
    for batch, cin, cout, height, width, k, stride in LAYERS:
        groups = cin if k > 1 else 1
        conv = nn.Conv2D(cin, cout, k, stride=stride, padding=k // 2, groups=groups,
                         bias_attr=False)
        bn = nn.BatchNorm2D(cout)
        x = paddle.randn([batch, cin, height, width])
        x.stop_gradient = False
        params = [x, conv.weight, bn.weight, bn.bias]
        ours, theirs = both_paths(lambda: conv_bn_act(x, conv, bn, "hardswish"), params)
        kind = "depthwise" if k > 1 else "pointwise"
        report(f"{kind} {k}x{k} s{stride} {cin}->{cout} on {batch}x{height}x{width} + BN + "
               f"hardswish", ours, theirs)
    dml = DMLLoss(act="softmax", use_log=True)
    x = paddle.randn([32, 40, 6625]) * 3
    y = paddle.randn([32, 40, 6625]) * 3
    x.stop_gradient = y.stop_gradient = False
    ours, theirs = both_paths(lambda: dml(x, y), [x, y])
    report("DMLLoss(softmax, use_log) on 32x40x6625", ours, theirs)


def _pointwise_variant(fn, inputs, mode, recompute=True):
    """``measure`` with rep_layer's pointwise path set to ``mode`` (and RECOMPUTE_POINTWISE)."""
    saved = rep_layer.POINTWISE_MODE, rep_layer.RECOMPUTE_POINTWISE
    rep_layer.POINTWISE_MODE, rep_layer.RECOMPUTE_POINTWISE = mode, recompute
    try:
        return measure(fn, inputs)
    finally:
        rep_layer.POINTWISE_MODE, rep_layer.RECOMPUTE_POINTWISE = saved


def rep_rows(layers, batch=32, branches=4, rounds=2):
    """LearnableRepLayer rows: paddle's ops against the fused node. Pointwise layers are
    measured ``rounds`` times, alternating paddle's ops, the covariance-folded node (``gram``,
    forced on whatever the layer's rows per channel), the stacked-GEMM node recomputing or
    keeping its branch outputs; the row says which path the default takes."""
    for (cin, cout, height, width, k, stride), where in layers:
        layer = LearnableRepLayer(cin, cout, k, stride=stride, groups=cin if k > 1 else 1,
                                  num_conv_branches=branches)
        layer.train()
        x = paddle.randn([batch, cin, height, width])
        x.stop_gradient = False
        params = [x] + [p for p in layer.parameters() if not p.stop_gradient]
        kind = "depthwise" if k > 1 else "pointwise"
        label = (f"rep {where} {kind} {k}x{k} s{stride} {cin}->{cout} on {batch}x{height}x"
                 f"{width}, {branches}+{int(k > 1)}+{int(layer.identity is not None)} branches")
        if k > 1:
            report(label, *both_paths(lambda: layer(x), params))
            continue
        default = "gram" if rep_layer.rep_layer_plan(x, layer) is not None else "paddle's ops"
        for round_ in range(rounds):
            saved = rep_layer.GRAM_MIN_ROWS_PER_CHANNEL
            rep_layer.GRAM_MIN_ROWS_PER_CHANNEL = 0
            try:
                ours, theirs = both_paths(lambda: layer(x), params)
            finally:
                rep_layer.GRAM_MIN_ROWS_PER_CHANNEL = saved
            report(f"{label} [round {round_ + 1}, gram; default: {default}]", ours, theirs)
            for name, recompute in (("stacked, recompute", True), ("stacked, keep Z", False)):
                ms, kept = _pointwise_variant(lambda: layer(x), params, "stacked", recompute)
                print(f"    {name}: {ms:7.1f} ms, kept {kept:6.0f} MiB")

if __name__ == "__main__":
    main()
