"""Paddle's CPU conv2d against ppdistill's shifted-GEMM forward (``ppdistill.modeling.fast_conv``).

    python benchmark/conv_bench.py            # the det CML teacher's large-kernel convs, batch 4

Prints, per shape, the relative max difference and the mean time of 3 calls of each (after one
warm-up call), under ``paddle.no_grad`` with the engine's CPU settings.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppdistill  # noqa: E402,F401  (CPU environment before paddle's first MKL call)
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

from ppdistill.modeling.fast_conv import shifted_gemm_conv2d  # noqa: E402
from ppdistill.utils.cpu import configure_cpu_threads  # noqa: E402

#: (batch, in channels, height, width, out channels, kernel): LKPAN inp_conv / DBHead conv1 /
#: LKPAN pan_lat_conv at stride 4 of a 320x320 crop, and 3x3 convs for comparison.
SHAPES = [(4, 256, 80, 80, 64, 9), (4, 256, 80, 80, 64, 7), (4, 64, 80, 80, 64, 9),
          (4, 64, 80, 80, 64, 5), (4, 64, 80, 80, 64, 3), (4, 256, 20, 20, 256, 3)]


def mean_ms(fn, calls=3):
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1000


def main():
    threads = configure_cpu_threads()
    print(f"paddle {paddle.__version__}, threads {threads}")
    paddle.seed(0)
    with paddle.no_grad():
        for batch, channels, height, width, out_channels, k in SHAPES:
            x = paddle.randn([batch, channels, height, width])
            weight = paddle.randn([out_channels, channels, k, k]) * 0.01
            reference = F.conv2d(x, weight, padding=k // 2)
            diff = float((reference - shifted_gemm_conv2d(x, weight)).abs().max())
            rel = diff / float(reference.abs().max())
            paddle_ms = mean_ms(lambda: F.conv2d(x, weight, padding=k // 2))
            shifted_ms = mean_ms(lambda: shifted_gemm_conv2d(x, weight))
            print(f"{k}x{k} {channels}->{out_channels} on {batch}x{height}x{width}: "
                  f"paddle {paddle_ms:7.1f} ms, shifted GEMM {shifted_ms:7.1f} ms, "
                  f"relative max diff {rel:.1e}")


if __name__ == "__main__":
    main()
