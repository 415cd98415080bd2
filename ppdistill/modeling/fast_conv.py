"""Faster CPU forward for large-kernel convolutions of frozen sub-models.

Paddle's CPU ``conv2d`` builds an im2col buffer of ``C * k * k`` rows per image and runs one GEMM
per image. For the 9x9 and 7x7 convolutions of a frozen ResNet50-vd + LKPAN + DBHead teacher at
stride 4 (256 channels, 80x80) that buffer is ~530 MB per image, copied on one thread, and it
costs about as much as the GEMM itself.

``shifted_gemm_conv2d`` computes the same stride-1 "same" convolution with one large GEMM over the
whole batch: the zero-padded input is laid out channels-last as one flat sequence of pixels
(``N * Hp * Wp`` rows), the ``k`` horizontal taps are gathered side by side (a buffer ``k`` times
the input instead of ``k * k`` times), and one GEMM against the weights arranged as
``(dx, c) x (dy, o)`` yields, for every pixel, the partial sums of all ``k`` kernel rows. Output
row ``r`` is then the sum over ``dy`` of the partial sums ``dy * Wp`` pixels further on, which are
contiguous row blocks. Pixels in the padding are computed and discarded. The result equals
``paddle.nn.functional.conv2d`` up to float32 summation order (relative difference ~4e-7).

Measured on 2 cores (AMD EPYC, MKL AVX2 path), batch 4 at 80x80 (``benchmark/conv_bench.py``):
9x9 256->64: 819-853 -> 584-590 ms; 7x7 256->64: 494-566 -> 362-416 ms; 9x9 64->64: 208-224 ->
144-190 ms. 5x5 (66 -> 77 ms) and 3x3 (16 -> 33 ms) convs are slower this way, so only kernels of
7 and more take this path.

Only the forward of frozen sub-models under ``paddle.no_grad`` on CPU uses it
(:func:`enable_fast_frozen_convs`, called by ``DistillationModel`` for ``freeze_params: true``).
Set the environment variable ``PPDISTILL_FAST_CONV=0`` to keep paddle's kernel everywhere.
"""
import os
import types

import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.ops.functional import symmetric_padding

#: smallest square kernel for which the shifted GEMM beats paddle's im2col kernel (measured).
MIN_KERNEL = 7


def fast_conv_enabled():
    """False when the environment variable ``PPDISTILL_FAST_CONV`` is ``0``/``false``/``no``."""
    return os.environ.get("PPDISTILL_FAST_CONV", "1").strip().lower() not in ("0", "false", "no")


def shifted_gemm_conv2d(x, weight, bias=None):
    """Stride-1, dilation-1, ``groups=1`` conv of NCHW ``x`` with an odd square ``weight`` kernel
    and "same" zero padding (``k // 2`` on every side); returns NCHW like ``F.conv2d``."""
    batch, channels, height, width = x.shape
    out_channels, in_channels, k, k_w = weight.shape
    if k != k_w or k % 2 == 0 or in_channels != channels:
        raise ValueError(f"shifted_gemm_conv2d: needs an odd square kernel over {channels} "
                         f"channels, got weight shape {list(weight.shape)}")
    pad = k // 2
    padded_h, padded_w = height + 2 * pad, width + 2 * pad
    pixels = batch * padded_h * padded_w
    flat = F.pad(x, [pad, pad, pad, pad]).transpose([0, 2, 3, 1]).reshape([pixels, channels])
    # Rows past the last pixel, so that every shifted block below stays inside the buffer.
    rows = pixels + (k - 1) * padded_w
    flat = paddle.concat([flat, paddle.zeros([rows + k - 1 - pixels, channels], x.dtype)], 0)
    taps = paddle.concat([flat[dx:dx + rows] for dx in range(k)], axis=1)  # rows x (dx, c)
    weight_matrix = weight.transpose([3, 1, 2, 0]).reshape([k * channels, k * out_channels])
    partial = paddle.matmul(taps, weight_matrix)  # rows x (dy, o)
    out = partial[0:pixels, 0:out_channels]
    for dy in range(1, k):
        start = dy * padded_w
        out = out + partial[start:start + pixels, dy * out_channels:(dy + 1) * out_channels]
    out = out.reshape([batch, padded_h, padded_w, out_channels])[:, :height, :width, :]
    out = out.transpose([0, 3, 1, 2])
    if bias is not None:
        out = out + bias.reshape([1, out_channels, 1, 1])
    return out


def _qualifies(conv):
    """A conv whose forward ``shifted_gemm_conv2d`` reproduces exactly (up to rounding)."""
    k = conv.weight.shape[-1]
    return (conv._data_format == "NCHW" and conv._groups == 1 and conv._padding_mode == "zeros"
            and list(conv._stride) == [1, 1] and list(conv._dilation) == [1, 1]
            and conv.weight.shape[-2] == k and k % 2 == 1 and k >= MIN_KERNEL
            and symmetric_padding(conv) == [k // 2, k // 2])


def _fast_forward(self, x):
    if (paddle.in_dynamic_mode() and not paddle.is_grad_enabled() and x.place.is_cpu_place()
            and x.dtype == paddle.float32 and len(x.shape) == 4):
        return shifted_gemm_conv2d(x, self.weight, self.bias)
    return type(self).forward(self, x)


def enable_fast_frozen_convs(layer):
    """Route qualifying ``nn.Conv2D`` sublayers of ``layer`` through :func:`shifted_gemm_conv2d`
    when they run without gradient on CPU; returns how many convs were switched.

    Parameter names and ``state_dict`` are unchanged; any other call (gradient enabled, GPU,
    static graph / export) takes paddle's own kernel.
    """
    if not fast_conv_enabled():
        return 0
    switched = 0
    for sub in layer.sublayers(include_self=True):
        if type(sub) is nn.Conv2D and _qualifies(sub):
            sub.forward = types.MethodType(_fast_forward, sub)
            switched += 1
    return switched
