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

The tap buffer of one GEMM is capped (:data:`MAX_BUFFER_BYTES`, 32 MiB): a larger input runs as
groups of whole images or, for one big image, bands of output rows, one GEMM each (a band also
reads its ``k - 1`` neighbouring rows). At batch 4 x 80x80 this cuts the conv's transient
allocation from 376 to 59 MiB (9x9 256->64), 285 to 56 MiB (7x7 256->64) and 145 to 42 MiB
(9x9 64->64); CPU time on one thread changed by +8 %, -5 % and -11 % (measured on a loaded
machine). That transient was the top of a det CML training step's memory.

Convolutions that read the same input (the 7x7 ``conv1`` of both branches of a teacher's
``DBHead``) run as one conv with the weights stacked along the output channels
(:func:`shared_input_convs`): one tap buffer instead of two and a wider GEMM. Measured on 2 cores,
batch 4 at 80x80, two 7x7 256->64 convs: 2 x 327 = 654 ms -> 491 ms.

Only the forward of frozen sub-models under ``paddle.no_grad`` on CPU uses it
(:func:`enable_fast_frozen_convs`, called by ``DistillationModel`` for ``freeze_params: true``).
Set the environment variable ``PPDISTILL_FAST_CONV=0`` to keep paddle's kernel everywhere.
"""
import types

import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.ops.functional import symmetric_padding
from ppdistill.utils.switches import switch_on

#: smallest square kernel for which the shifted GEMM beats paddle's im2col kernel (measured).
MIN_KERNEL = 7
#: largest tap buffer one GEMM builds (bytes); bigger inputs run in groups of images or bands
#: of rows. 32 MiB: 3 bands per image for LKPAN's 9x9 over 256 channels at 80x80 (one buffer of
#: 285 MB for the batch of 4 before), at the same speed (benchmark/conv_bench.py).
MAX_BUFFER_BYTES = 32 * 2**20


def fast_conv_enabled():
    """False when the environment variable ``PPDISTILL_FAST_CONV`` is ``0``/``false``/``no``."""
    return switch_on("PPDISTILL_FAST_CONV")


def _chunking(batch, height, padded_w, channels, k, max_buffer_bytes):
    """``(images, rows)`` per GEMM: whole images while their tap buffers fit in
    ``max_buffer_bytes``, else bands of ``rows`` output rows of one image (at least ``k``)."""
    per_padded_row = padded_w * k * channels * 4
    per_image = (height + k - 1) * per_padded_row
    if per_image <= max_buffer_bytes:
        return max(1, min(batch, max_buffer_bytes // per_image)), height
    return 1, min(height, max(k, max_buffer_bytes // per_padded_row - (k - 1)))


def _shifted_gemm_block(block, weight_matrix, k, out_rows, width, out_channels):
    """Conv of ``block`` ([B, out_rows + k - 1, Wp, C]: zero-padded, channels-last rows) as one
    GEMM; returns [B, out_rows, width, out_channels]."""
    images, rows_in, padded_w, channels = block.shape
    pixels = images * rows_in * padded_w
    flat = block.reshape([pixels, channels])
    # k - 1 zero rows past the last pixel: the horizontal taps of the last pixels stay inside.
    flat = paddle.concat([flat, paddle.zeros([k - 1, channels], block.dtype)], 0)
    taps = paddle.concat([flat[dx:dx + pixels] for dx in range(k)], axis=1)  # pixels x (dx, c)
    del flat
    partial = paddle.matmul(taps, weight_matrix)  # pixels x (dy, o)
    del taps
    # Output pixel p (in padded coordinates) sums the partial rows p + dy * Wp, dy < k; the last
    # image's bottom k - 1 padded rows produce no output and are not summed.
    needed = pixels - (k - 1) * padded_w
    out = partial[0:needed, 0:out_channels]
    for dy in range(1, k):
        start = dy * padded_w
        out = out + partial[start:start + needed, dy * out_channels:(dy + 1) * out_channels]
    del partial
    if images == 1:  # needed = out_rows * Wp: exactly the output rows
        return out.reshape([1, out_rows, padded_w, out_channels])[:, :, :width, :]
    out = paddle.concat([out, paddle.zeros([pixels - needed, out_channels], out.dtype)], 0)
    return out.reshape([images, rows_in, padded_w, out_channels])[:, :out_rows, :width, :]


def shifted_gemm_conv2d(x, weight, bias=None, max_buffer_bytes=None):
    """Stride-1, dilation-1, ``groups=1`` conv of NCHW ``x`` with an odd square ``weight`` kernel
    and "same" zero padding (``k // 2`` on every side); returns NCHW like ``F.conv2d``.

    The tap buffer of one GEMM is kept under ``max_buffer_bytes`` (default
    :data:`MAX_BUFFER_BYTES`) by running groups of images, or bands of output rows of one image
    (each band reads its ``k - 1`` neighbouring input rows), one after the other.
    """
    batch, channels, height, width = x.shape
    out_channels, in_channels, k, k_w = weight.shape
    if k != k_w or k % 2 == 0 or in_channels != channels:
        raise ValueError(f"shifted_gemm_conv2d: needs an odd square kernel over {channels} "
                         f"channels, got weight shape {list(weight.shape)}")
    pad = k // 2
    padded_w = width + 2 * pad
    images, rows = _chunking(batch, height, padded_w, channels, k,
                             MAX_BUFFER_BYTES if max_buffer_bytes is None else max_buffer_bytes)
    weight_matrix = weight.transpose([3, 1, 2, 0]).reshape([k * channels, k * out_channels])
    outputs = []
    for first in range(0, batch, images):
        padded = F.pad(x[first:first + images], [pad, pad, pad, pad]).transpose([0, 2, 3, 1])
        bands = [_shifted_gemm_block(padded[:, top:min(height, top + rows) + k - 1],
                                     weight_matrix, k, min(rows, height - top), width,
                                     out_channels)
                 for top in range(0, height, rows)]
        del padded
        outputs.append(bands[0] if len(bands) == 1 else paddle.concat(bands, axis=1))
    out = outputs[0] if len(outputs) == 1 else paddle.concat(outputs, axis=0)
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


def _fast_applies(x):
    return (paddle.in_dynamic_mode() and not paddle.is_grad_enabled() and x.place.is_cpu_place()
            and x.dtype == paddle.float32 and len(x.shape) == 4)


def _fast_forward(self, x):
    if _fast_applies(x):
        return shifted_gemm_conv2d(x, self.weight, self.bias)
    return type(self).forward(self, x)


def shared_input_convs(x, convs):
    """``[conv(x) for conv in convs]``; when every conv was switched by
    :func:`enable_fast_frozen_convs` and the fast path applies, computed as one
    :func:`shifted_gemm_conv2d` over the weights stacked along the output channels (same result
    up to float32 summation order), else by each conv's own forward."""
    if (len(convs) > 1 and all(getattr(conv, "_fast_frozen", False) for conv in convs)
            and len({tuple(conv.weight.shape[1:]) for conv in convs}) == 1 and _fast_applies(x)):
        weight = paddle.concat([conv.weight for conv in convs], axis=0)
        biases = [conv.bias for conv in convs]
        bias = None
        if any(b is not None for b in biases):
            bias = paddle.concat([b if b is not None else paddle.zeros([conv.weight.shape[0]])
                                  for b, conv in zip(biases, convs)])
        out = shifted_gemm_conv2d(x, weight, bias)
        return paddle.split(out, [conv.weight.shape[0] for conv in convs], axis=1)
    return [conv(x) for conv in convs]


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
            sub._fast_frozen = True
            switched += 1
    return switched
