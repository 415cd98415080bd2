"""ppdistill's CPU kernels (``ppdistill.ops``) against paddle's ops, forward + backward.

    python benchmark/ops_bench.py

Shapes are those of MobileNetV1Enhance (scale 0.5) at batch 32 on 3x48x320 crops, the
PP-OCRv3 recognition backbone. Prints the mean time of 3 forward+backward passes of each.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppdistill  # noqa: E402,F401
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402
from paddle import nn  # noqa: E402

from ppdistill.ops import batch_norm_act, cpu_kernels, depthwise_conv2d  # noqa: E402
from ppdistill.utils.cpu import configure_cpu_threads, kernel_threads  # noqa: E402

#: (batch, channels, height, width, kernel, stride)
DEPTHWISE = [(32, 16, 24, 160, 3, 1), (32, 64, 24, 160, 3, 1), (32, 64, 24, 160, 3, (2, 1)),
             (32, 128, 12, 160, 3, 1), (32, 256, 6, 160, 5, 1), (32, 512, 3, 160, 5, (1, 2))]
BATCH_NORM = [(32, 32, 24, 160), (32, 128, 24, 160), (32, 256, 6, 160), (32, 512, 3, 80)]


def fwd_bwd_ms(fn, inputs, calls=3):
    def once():
        out = fn()
        grads = paddle.grad(out, inputs, paddle.ones_like(out))
        return grads
    once()
    start = time.perf_counter()
    for _ in range(calls):
        once()
    return (time.perf_counter() - start) / calls * 1000


def main():
    configure_cpu_threads()
    start = time.perf_counter()
    kernels = cpu_kernels()
    print(f"paddle {paddle.__version__}; kernels loaded in {time.perf_counter() - start:.1f} s: "
          f"{kernels is not None}; kernel threads {kernel_threads()}")
    paddle.seed(0)
    for batch, channels, height, width, k, stride in DEPTHWISE:
        conv = nn.Conv2D(channels, channels, k, stride=stride, padding=k // 2, groups=channels,
                         bias_attr=False)
        x = paddle.randn([batch, channels, height, width])
        x.stop_gradient = False
        ours = fwd_bwd_ms(lambda: depthwise_conv2d(x, conv), [x, conv.weight])
        theirs = fwd_bwd_ms(lambda: conv(x), [x, conv.weight])
        print(f"depthwise {k}x{k} stride {stride} on {batch}x{channels}x{height}x{width}: "
              f"paddle {theirs:7.1f} ms, ppdistill {ours:7.1f} ms")
    for batch, channels, height, width in BATCH_NORM:
        bn = nn.BatchNorm2D(channels)
        x = paddle.randn([batch, channels, height, width])
        x.stop_gradient = False
        params = [x, bn.weight, bn.bias]
        ours = fwd_bwd_ms(lambda: batch_norm_act(x, bn, "hardswish"), params)
        theirs = fwd_bwd_ms(lambda: F.hardswish(bn(x)), params)
        print(f"batch norm + hardswish on {batch}x{channels}x{height}x{width}: "
              f"paddle {theirs:7.1f} ms, ppdistill {ours:7.1f} ms")


if __name__ == "__main__":
    main()
