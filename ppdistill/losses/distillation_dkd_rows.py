"""Per-row decoupled-KD values computed as one autograd node that keeps only its inputs.

:class:`~ppdistill.losses.basic_loss.DKDLoss` builds, for ``N`` rows of ``C`` classes, about ten
``[N, C]`` tensors (softmaxes, one-hot masks, products); paddle's autograd keeps six of them for
backward. For the PP-OCRv4 gtc branch at batch 32 (``[32, 1 + max_len, 6629]`` logits) that is
~55 MB kept until the backward, while the CTC loss later reaches the step's peak. When only the
student's logits need a gradient (a frozen teacher), :func:`dkd_rows` computes the same rows
in a ``PyLayer`` that keeps the two logit tensors and the target and recomputes in backward,
with ``ys = zs / tau``, ``G`` the one-hot target, ``ps = softmax(ys)``, ``bs``/``bt`` the
two-bin masses and ``q = log_softmax(ys - 1000 G)``::

    d rows / d ys = a * ps * (h - <ps, h>) + b * (exp(q) * sum(pt2) - pt2)
    h = -(bt_0 / bs_0) G - (bt_1 / bs_1) (1 - G),  a = alpha tau^2,  b = beta tau^2

and ``d/dzs = (d/dys) / tau``. The forward runs the same ops as ``DKDLoss``, so values are
identical; gradients equal paddle's autograd up to float32 rounding
(``tests/losses/test_dkd_memory.py``). A teacher that needs a gradient or a static-graph
program takes paddle's ops.
"""
import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer

from ppdistill.ops.log_softmax import log_softmax

__all__ = ["dkd_rows", "dkd_rows_reference"]


def _parts(zs, zt, gt, tau):
    ys, yt = zs / tau, zt / tau
    ps, pt = F.softmax(ys, axis=1), F.softmax(yt, axis=1)
    bin_s = paddle.stack([(ps * gt).sum(axis=1), (ps * (1 - gt)).sum(axis=1)], axis=1)
    bin_t = paddle.stack([(pt * gt).sum(axis=1), (pt * (1 - gt)).sum(axis=1)], axis=1)
    pt2 = F.softmax(yt - 1000.0 * gt, axis=1)
    log_ps2 = log_softmax(ys - 1000.0 * gt, axis=1)
    return ps, bin_s, bin_t, pt2, log_ps2


def _rows(bin_s, bin_t, pt2, log_ps2, alpha, beta, tau):
    tckd = (bin_t * (paddle.log(bin_t + 1e-10) - paddle.log(bin_s))).sum(axis=1)
    nckd = (pt2 * (paddle.log(pt2 + 1e-10) - log_ps2)).sum(axis=1)
    return (alpha * tckd + beta * nckd) * tau ** 2


def _one_hot(target, num_classes, dtype):
    return F.one_hot(target.reshape([-1]).astype("int64"), num_classes).astype(dtype)


def dkd_rows_reference(zs, zt, target, alpha, beta, tau):
    """``(α·TCKD + β·NCKD)·τ²`` per row of ``[N, C]`` logits with paddle's ops (autograd)."""
    gt = _one_hot(target, zs.shape[-1], zs.dtype)
    _, bin_s, bin_t, pt2, log_ps2 = _parts(zs, zt, gt, tau)
    return _rows(bin_s, bin_t, pt2, log_ps2, alpha, beta, tau)


class _DKDRows(PyLayer):
    @staticmethod
    def forward(ctx, zs, zt, target, alpha, beta, tau):
        ctx.save_for_backward(zs, zt, target)
        ctx.settings = (alpha, beta, tau)
        gt = _one_hot(target, zs.shape[-1], zs.dtype)
        _, bin_s, bin_t, pt2, log_ps2 = _parts(zs, zt, gt, tau)
        return _rows(bin_s, bin_t, pt2, log_ps2, alpha, beta, tau)

    @staticmethod
    def backward(ctx, grad_rows):
        zs, zt, target = ctx.saved_tensor()
        alpha, beta, tau = ctx.settings
        gt = _one_hot(target, zs.shape[-1], zs.dtype)
        ps, bin_s, bin_t, pt2, log_ps2 = _parts(zs, zt, gt, tau)
        grad = grad_rows.reshape([-1, 1])
        ratio = bin_t / bin_s  # d TCKD / d bin_s = -bin_t / bin_s
        h = -(ratio[:, 0:1] * gt + ratio[:, 1:2] * (1 - gt))
        grad_tckd = ps * (h - (ps * h).sum(axis=1, keepdim=True))
        grad_nckd = paddle.exp(log_ps2) * pt2.sum(axis=1, keepdim=True) - pt2
        grad_ys = grad * tau ** 2 * (alpha * grad_tckd + beta * grad_nckd)
        return grad_ys / tau, None, None


def dkd_rows(zs, zt, target, alpha=1.0, beta=1.0, tau=1.0):
    """Per-row ``(α·TCKD + β·NCKD)·τ²`` of student ``zs`` and teacher ``zt`` logits ``[N, C]``
    with ``target`` the class per row; as one autograd node when only ``zs`` needs a gradient
    (dynamic mode), else through :func:`dkd_rows_reference`."""
    if (not paddle.in_dynamic_mode() or zs.stop_gradient or not zt.stop_gradient
            or not paddle.is_grad_enabled()):
        return dkd_rows_reference(zs, zt, target, alpha, beta, tau)
    target = target.reshape([-1]).astype("int64")
    target.stop_gradient = True
    return _DKDRows.apply(zs, zt, target, float(alpha), float(beta), float(tau))
