"""Conv -> BatchNorm -> activation for training on CPU, with ppdistill's kernels.

:func:`conv_bn_act` computes ``act(bn(conv(x)))`` for an ``nn.Conv2D`` and an ``nn.BatchNorm2D``
or ``nn.BatchNorm`` (the layers themselves, so parameter names, initialisation and
``state_dict`` stay paddle's). In training mode on CPU, for depthwise and 1x1 convs, it runs as
one autograd node (a ``PyLayer``):

- forward: the convolution (ppdistill's multi-threaded depthwise kernel, or paddle's ``conv2d``
  for a 1x1 conv), then one fused BatchNorm + activation kernel that also updates the running
  mean / variance as paddle does (momentum, biased batch variance);
- backward: the convolution is recomputed from the saved input, then the fused BatchNorm +
  activation backward and the convolution's backward run.

Only the layer's input is kept for backward (paddle keeps the input, the conv output, the BN
output and, through the next layer, the activation). For the MobileNetV1Enhance recognition
backbone at batch 32 on 3x48x320 that is ~0.7 GB instead of ~2.1 GB per model; recomputing the
convs costs about one extra backbone convolution pass (a few hundred ms per step).

Everything else (GPU, static graph / export, eval-mode BatchNorm, dtypes other than float32,
unusual conv or BN settings, no C++ compiler, ``PPDISTILL_CPU_KERNELS=0``) takes paddle's own
ops. Results equal paddle's up to float32 rounding (tests/ops). Speeds: benchmark/ops_bench.py.

Limitation (paddle's, for every ``PyLayer``): ``paddle.grad(out, inputs)`` with ``inputs`` a
subset of the tensors the node depends on fails ("backward function should return None at
position ..."); ``loss.backward()`` and ``paddle.grad`` over all of them work. Set
``PPDISTILL_CPU_KERNELS=0`` for code that needs partial ``paddle.grad`` through these layers.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn
from paddle.autograd import PyLayer

from ppdistill.ops.loader import cpu_kernels
from ppdistill.utils.cpu import kernel_threads

ACTIVATION_CODES = {None: 0, "relu": 1, "hardswish": 2}


def _contiguous(x):
    is_contiguous = getattr(x, "is_contiguous", None)
    if is_contiguous is not None and not is_contiguous():
        return x.contiguous()
    return x


def symmetric_padding(conv):
    """[pad_h, pad_w] of an explicitly, symmetrically zero-padded conv, else None."""
    if getattr(conv, "_padding_algorithm", "EXPLICIT") != "EXPLICIT":
        return None
    padding = [int(p) for p in (getattr(conv, "_updated_padding", None) or [])]
    if len(padding) == 2:
        return padding
    if len(padding) == 4 and padding[0] == padding[1] and padding[2] == padding[3]:
        return [padding[0], padding[2]]
    return None


def is_depthwise(conv):
    """``conv`` is a bias-free NCHW depthwise conv (multiplier 1) ppdistill's kernel handles."""
    return (type(conv) is nn.Conv2D and conv._groups == conv._in_channels == conv._out_channels
            and conv._groups > 1 and conv.bias is None and conv._data_format == "NCHW"
            and conv._padding_mode == "zeros" and list(conv._dilation) == [1, 1]
            and symmetric_padding(conv) is not None)


def is_pointwise(conv):
    """``conv`` is a bias-free NCHW 1x1 conv with stride 1, no padding and no groups."""
    return (type(conv) is nn.Conv2D and conv._groups == 1 and conv.bias is None
            and conv._data_format == "NCHW" and list(conv._kernel_size) == [1, 1]
            and list(conv._stride) == [1, 1] and list(conv._dilation) == [1, 1]
            and symmetric_padding(conv) == [0, 0])


def _batch_norm_in_batch_stats_mode(bn):
    """An NCHW ``nn.BatchNorm2D`` / ``nn.BatchNorm`` (no fused act) normalising with batch
    statistics, i.e. in training mode without ``use_global_stats``."""
    if type(bn) is nn.BatchNorm2D:
        layout = bn._data_format
    elif type(bn) is nn.BatchNorm:
        if bn._act is not None or getattr(bn, "_trainable_statistics", False):
            return False
        layout = bn._data_layout
    else:
        return False
    return (layout == "NCHW" and bn.training and not getattr(bn, "_use_global_stats", None)
            and bn.weight is not None and bn.bias is not None)


def fused_path_applies(x, conv, bn):
    """Whether :func:`conv_bn_act` runs the fused CPU path for this call."""
    return (paddle.in_dynamic_mode() and x.place.is_cpu_place() and x.dtype == paddle.float32
            and len(x.shape) == 4 and _batch_norm_in_batch_stats_mode(bn)
            and (is_depthwise(conv) or is_pointwise(conv)) and cpu_kernels() is not None)


def _depthwise_attrs(conv):
    """(stride_h, stride_w, pad_h, pad_w, threads): the depthwise kernels' attributes."""
    stride_h, stride_w = (int(s) for s in conv._stride)
    pad_h, pad_w = symmetric_padding(conv)
    return stride_h, stride_w, pad_h, pad_w, kernel_threads()


def _conv_forward(kernels, x, conv, weight):
    if is_depthwise(conv):
        return kernels.ppdistill_depthwise_conv2d_forward(x, weight, *_depthwise_attrs(conv))
    return F.conv2d(x, weight)  # pointwise


def _conv_backward(kernels, x, conv, weight, grad_z, need_x_grad):
    """(grad of x or None, grad of weight) of the convolution, given the grad of its output."""
    if is_depthwise(conv):
        grad_x, grad_w = kernels.ppdistill_depthwise_conv2d_backward(
            x, weight, grad_z, *_depthwise_attrs(conv))
        return (grad_x if need_x_grad else None), grad_w
    return pointwise_conv_backward(x, weight, grad_z, need_x_grad)


def pointwise_conv_backward(x, weight, grad_z, need_x_grad=True):
    """(grad of x or None, grad of weight) of a bias-free 1x1 conv (stride 1, no groups) given
    the grad of its output: z[n] = W @ x[n] over the flattened pixels, two batched GEMMs."""
    batch, channels, height, width = x.shape
    out_channels = weight.shape[0]
    matrix = weight.reshape([out_channels, channels])
    grad_rows = grad_z.reshape([batch, out_channels, height * width])
    grad_w = paddle.matmul(grad_rows, x.reshape([batch, channels, height * width]),
                           transpose_y=True).sum(axis=0).reshape(weight.shape)
    grad_x = None
    if need_x_grad:
        grad_x = paddle.matmul(matrix, grad_rows, transpose_x=True).reshape(x.shape)
    return grad_x, grad_w


class _ConvBNActFunction(PyLayer):
    """One autograd node for conv -> BN (batch statistics) -> activation, saving only x."""

    @staticmethod
    def forward(ctx, x, weight, gamma, beta, conv, bn, act):
        kernels = cpu_kernels()
        ctx.needs_grad = [not t.stop_gradient for t in (x, weight, gamma, beta)]
        x = _contiguous(x)
        z = _conv_forward(kernels, x, conv, weight)
        y, saved_mean, saved_inv_std, mean_out, variance_out = \
            kernels.ppdistill_batch_norm_act_forward(
                z, gamma, beta, bn._mean, bn._variance, float(bn._momentum), float(bn._epsilon),
                ACTIVATION_CODES[act], kernel_threads())
        paddle.assign(mean_out, bn._mean)
        paddle.assign(variance_out, bn._variance)
        ctx.conv, ctx.act = conv, act
        ctx.save_for_backward(x, weight, gamma, beta, saved_mean, saved_inv_std)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        kernels = cpu_kernels()
        x, weight, gamma, beta, saved_mean, saved_inv_std = ctx.saved_tensor()
        z = _conv_forward(kernels, x, ctx.conv, weight)
        grad_z, grad_gamma, grad_beta = kernels.ppdistill_batch_norm_act_backward(
            z, gamma, beta, saved_mean, saved_inv_std, _contiguous(grad_y),
            ACTIVATION_CODES[ctx.act], kernel_threads())
        del z
        grad_x, grad_w = _conv_backward(kernels, x, ctx.conv, weight, grad_z, ctx.needs_grad[0])
        grads = (grad_x, grad_w, grad_gamma, grad_beta)
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_grad))


def _paddle_activation(y, act):
    if act == "relu":
        return F.relu(y)
    if act == "hardswish":
        return F.hardswish(y)
    return y


def conv_bn_act(x, conv, bn, act=None):
    """``act(bn(conv(x)))``; ``act`` is None, ``"relu"`` or ``"hardswish"``.

    Fused and memory-saving in CPU training (module docstring); paddle's layers otherwise.
    """
    if act not in ACTIVATION_CODES:
        raise ValueError(f"conv_bn_act: act must be None, 'relu' or 'hardswish', got {act!r}")
    if fused_path_applies(x, conv, bn):
        return _ConvBNActFunction.apply(x, conv.weight, bn.weight, bn.bias, conv, bn, act)
    return _paddle_activation(bn(conv(x)), act)


class _DmlSoftmaxFunction(PyLayer):
    """Sum of PaddleOCR's two softmax KD terms as one node that keeps only the two logits."""

    @staticmethod
    def forward(ctx, x, y, eps):
        ctx.needs_grad = (not x.stop_gradient, not y.stop_gradient)
        x, y = _contiguous(x), _contiguous(y)
        ctx.eps = eps
        ctx.save_for_backward(x, y)
        total = cpu_kernels().ppdistill_dml_softmax_forward(x, y, float(eps), kernel_threads())
        return total.reshape([])

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensor()
        grad_x, grad_y = cpu_kernels().ppdistill_dml_softmax_backward(
            x, y, grad.reshape([1]), float(ctx.eps), kernel_threads())
        return tuple(g if need else None for g, need in zip((grad_x, grad_y), ctx.needs_grad))


def dml_softmax_sum(x, y, eps=1e-10):
    """``sum(q * (log(q + eps) - log p) + p * (log(p + eps) - log q))`` with ``p = softmax(x) +
    eps`` and ``q = softmax(y) + eps`` over the last axis, as a 0-D tensor, from the fused CPU
    kernel; None when it does not apply (then compute it with paddle ops).

    ``DMLLoss(act="softmax", use_log=True)`` divides it by ``2 * batch``. Autograd through paddle
    ops keeps about ten tensors of the logits' size for backward; this keeps the two logits.
    """
    if not (paddle.in_dynamic_mode() and x.place.is_cpu_place() and x.dtype == paddle.float32
            and y.dtype == paddle.float32 and list(x.shape) == list(y.shape) and len(x.shape) >= 1
            and cpu_kernels() is not None):
        return None
    return _DmlSoftmaxFunction.apply(x, y, eps)
