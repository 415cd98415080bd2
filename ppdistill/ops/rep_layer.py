"""PP-LCNetV3's ``LearnableRepLayer`` in training form as one autograd node, on CPU.

In training a LearnableRepLayer computes, from one input ``x``,

    s = sum_j BN_j(conv_j(x))       B k x k conv branches, a 1x1 branch (k > 1) and an identity
                                    BN on x (in == out, stride 1), BN with batch statistics
    u = lab.scale * s + lab.bias
    y = act.lab.scale * hardswish(u) + act.lab.bias     (or y = u when the layer has no act)

paddle's autograd keeps every branch's conv output, BN output, each partial sum, ``u``,
``hardswish(u)`` and ``y`` for backward, and runs the depthwise convs and the BNs on one thread.
:func:`rep_layer_forward` runs the layer as one ``PyLayer`` instead:

- depthwise layers (``ppdistill_rep_dw``, ``rep_kernels.cc``): one kernel per direction. Each
  thread takes whole channels: all branch convs of a channel (one read of each input plane; at
  stride 1 a zero-padded copy and register-held output blocks serving up to four branches per
  loaded input vector, ``dw_stride1.h``) into a per-thread scratch buffer, then every
  branch's BatchNorm (batch statistics; running mean / variance updated as paddle's BatchNorm
  does), the sum, ``lab``, hardswish and ``act.lab``. The backward recomputes the convs into
  the scratch, turns them into their gradients in place and runs the depthwise backward (at
  stride 1 the weight and input gradients of up to four branches per pass): no tensor of the
  stacked branch outputs is allocated (large fresh allocations cost page faults on every step);
- pointwise layers (default, :data:`POINTWISE_MODE` ``"gram"``): BN with batch statistics makes
  every branch affine in ``x``, with its mean / variance given by the channel means and the
  C x C covariance of ``x``; the branch sum folds into one 1x1 conv and the backward needs three
  more GEMMs (:class:`_RepPointwiseSumFunction`): five GEMMs of the layer's size per step where
  paddle runs three per branch. The C x C algebra runs in float64 (float32 loses the cancelling
  terms of the variance and of BN's backward). ``lab`` and the activation follow as a
  second node (:mod:`ppdistill.ops.lab_act`: one pass each way, keeping only the sum). About
  2x paddle's speed on PP-LCNetV3's 240/480-channel pointwise layers;
- pointwise layers, ``"stacked"``: the branch convs are one GEMM (paddle's) into a stacked tensor
  Z, then the same BN / sum / activation kernel (``ppdistill_rep_bn_act``); Z is freed at once
  and recomputed in backward (:data:`RECOMPUTE_POINTWISE`), then two GEMMs give the conv grads.
  Slower than paddle's ops on large layers; kept for comparison (benchmark/ops_bench.py).

Only ``x`` (plus the per-branch batch mean / inverse std or C x C matrices) is kept between
forward and backward by the nodes (the ``"gram"`` path's tail node keeps the branch sum).
Results equal paddle's up to float32 rounding
(``tests/ops/test_rep_layer_fused.py``); timings and memory: ``benchmark/ops_bench.py``.

It applies in dynamic-graph training on CPU, float32, with every BN in batch-statistics mode,
all BNs with one momentum / epsilon, depthwise (odd k x k, symmetric padding k // 2) or pointwise
(1x1, stride 1, no groups) branch convs, the compiled kernels available and the layer not
re-parameterised. Everything else (eval mode, export, GPU, ``rep()``'d layers,
``PPDISTILL_CPU_KERNELS=0``, pointwise layers on fewer rows than
:data:`GRAM_MIN_ROWS_PER_CHANNEL` per channel) takes paddle's ops. The limitation of every
``PyLayer`` applies: ``paddle.grad`` over a strict subset of the node's inputs fails (see
``functional.py``).
"""
import paddle
import paddle.nn.functional as F
from paddle import nn
from paddle.autograd import PyLayer

from ppdistill.ops.functional import (
    ACTIVATION_CODES, _batch_norm_in_batch_stats_mode, _contiguous, is_depthwise, is_pointwise,
    pointwise_conv_backward, symmetric_padding)
from ppdistill.ops.lab_act import lab_act, lab_vector
from ppdistill.ops.loader import cpu_kernels
from ppdistill.utils.cpu import kernel_threads

#: pointwise layers recompute their GEMM in backward (True) or keep the stacked branch outputs
#: Z (False, B times the output's size); benchmark/ops_bench.py measures both
RECOMPUTE_POINTWISE = True

#: pointwise layers run as :class:`_RepPointwiseSumFunction` (``"gram"``: BN statistics from the
#: input's covariance, 5 GEMMs per step) or through the stacked-branch GEMM + fused BN kernel
#: (``"stacked"``, then :data:`RECOMPUTE_POINTWISE` applies); benchmark/ops_bench.py measures both
POINTWISE_MODE = "gram"

#: the ``"gram"`` path's ``lab`` / activation tail runs as one node (:mod:`ppdistill.ops.lab_act`)
#: instead of paddle's five element-wise ops
FUSED_TAIL = True

#: the ``"gram"`` path applies to a pointwise layer only when its input has at least this many
#: rows (batch x height x width) per input channel: its C x C statistics cost ~B C^3 float64
#: operations per step whatever the rows, so on few rows paddle's per-branch ops are faster
#: (``benchmark/ops_bench.py --det``, PP-LCNetV3 det x0.75 at batch 4 on 320x320, forward +
#: backward: 384 channels on 400 rows, ~1 per channel: Gram 52 ms, paddle 39 ms; 192 -> 384 on
#: 400 rows: 19 vs 20 ms; 192 on 1600 rows, ~8 per channel: 21 vs 36 ms; 96 on 6400: 19 vs 43 ms)
GRAM_MIN_ROWS_PER_CHANNEL = 8


class _Plan:
    """What one call of the fused path needs to know about its layer (built per call)."""

    def __init__(self, layer, depthwise):
        self.depthwise = depthwise
        self.num_kxk = len(layer.conv_kxk)
        self.with_1x1 = layer.conv_1x1 is not None
        self.identity = layer.identity is not None
        self.act = ACTIVATION_CODES["hardswish"] if layer.apply_act else ACTIVATION_CODES[None]
        #: BNs in kernel order: k x k branches, the 1x1 branch, the identity
        self.bns = [branch.bn for branch in layer.conv_kxk]
        if self.with_1x1:
            self.bns.append(layer.conv_1x1.bn)
        if self.identity:
            self.bns.append(layer.identity)
        #: conv branches (the pointwise path stacks their outputs in Z)
        self.stacked = self.num_kxk + (1 if self.with_1x1 else 0)
        conv = layer.conv_kxk[0].conv
        self.stride = [int(s) for s in conv._stride]
        self.padding = symmetric_padding(conv)
        self.momentum = float(self.bns[0]._momentum)
        self.epsilon = float(self.bns[0]._epsilon)

    def tensors(self, layer):
        """The node's tensor inputs after ``x``: conv weights, BN weights, BN biases, affines."""
        weights = [branch.conv.weight for branch in layer.conv_kxk]
        if self.with_1x1:
            weights.append(layer.conv_1x1.conv.weight)
        affine = [layer.lab.scale, layer.lab.bias]
        if self.act:
            affine += [layer.act.lab.scale, layer.act.lab.bias]
        return (weights + [bn.weight for bn in self.bns] + [bn.bias for bn in self.bns]
                + affine)

    def split(self, tensors):
        """(conv weights, BN weights, BN biases, affine scalars) from :meth:`tensors`' list."""
        n_conv, n_bn = self.stacked, len(self.bns)
        return (list(tensors[:n_conv]), list(tensors[n_conv:n_conv + n_bn]),
                list(tensors[n_conv + n_bn:n_conv + 2 * n_bn]), list(tensors[n_conv + 2 * n_bn:]))

    def lab_vector(self, affine):
        """[lab.scale, lab.bias, act.lab.scale, act.lab.bias] (1, 0 for a layer without act)."""
        return lab_vector(affine, self.act)

    def stacked_weights(self, weights):
        """(k x k weights stacked branch-major, the 1x1 weight or a placeholder)."""
        kxk = paddle.concat(weights[:self.num_kxk], axis=0)
        return kxk, (weights[self.num_kxk] if self.with_1x1 else kxk)

class _RepLayerFunction(PyLayer):
    """One autograd node for a LearnableRepLayer in training form, saving only its input."""

    @staticmethod
    def forward(ctx, x, *args):
        plan, tensors = args[-1], args[:-1]
        kernels = cpu_kernels()
        ctx.plan = plan
        ctx.needs_grad = [not t.stop_gradient for t in (x,) + tuple(tensors)]
        x = _contiguous(x)
        weights, gammas, betas, affine = plan.split(tensors)
        kxk, one = plan.stacked_weights(weights)
        gamma, beta, lab = paddle.concat(gammas), paddle.concat(betas), plan.lab_vector(affine)
        mean = paddle.concat([bn._mean for bn in plan.bns])
        variance = paddle.concat([bn._variance for bn in plan.bns])
        z = None
        if plan.depthwise:
            y, saved_mean, saved_inv_std, mean_out, variance_out = kernels.ppdistill_rep_dw_forward(
                x, kxk, one, gamma, beta, mean, variance, lab, *plan.stride, *plan.padding,
                int(plan.with_1x1), int(plan.identity), plan.momentum, plan.epsilon, plan.act,
                kernel_threads())
        else:
            z = F.conv2d(x, kxk)  # every branch's 1x1 conv as one GEMM
            y, saved_mean, saved_inv_std, mean_out, variance_out = \
                kernels.ppdistill_rep_bn_act_forward(
                    z, x, gamma, beta, mean, variance, lab, plan.momentum, plan.epsilon,
                    plan.stacked, int(plan.identity), plan.act, kernel_threads())
        count = len(plan.bns)
        for bn, mean, variance in zip(plan.bns, paddle.split(mean_out, count),
                                      paddle.split(variance_out, count)):
            paddle.assign(mean, bn._mean)
            paddle.assign(variance, bn._variance)
        ctx.keep_z = not plan.depthwise and not RECOMPUTE_POINTWISE
        ctx.save_for_backward(x, kxk, one, gamma, beta, saved_mean, saved_inv_std, lab,
                              z if ctx.keep_z else None)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        kernels, plan = cpu_kernels(), ctx.plan
        x, kxk, one, gamma, beta, saved_mean, saved_inv_std, lab, z = ctx.saved_tensor()
        grad_y = _contiguous(grad_y)
        if plan.depthwise:
            grad_x, grad_kxk, grad_one, grad_gamma, grad_beta, lab_partials = \
                kernels.ppdistill_rep_dw_backward(
                    x, kxk, one, gamma, beta, saved_mean, saved_inv_std, lab, grad_y,
                    *plan.stride, *plan.padding, int(plan.with_1x1), int(plan.identity),
                    plan.act, kernel_threads())
        else:
            if z is None:
                z = F.conv2d(x, kxk)
            grad_z, grad_identity, grad_gamma, grad_beta, lab_partials = \
                kernels.ppdistill_rep_bn_act_backward(
                    z, x, gamma, beta, saved_mean, saved_inv_std, lab, grad_y, plan.stacked,
                    int(plan.identity), plan.act, kernel_threads())
            del z
            grad_x, grad_kxk = pointwise_conv_backward(x, kxk, grad_z, ctx.needs_grad[0])
            del grad_z
            if plan.identity and grad_x is not None:
                grad_x = grad_x + grad_identity
        grad_weights = list(paddle.split(grad_kxk, plan.num_kxk, axis=0))
        if plan.with_1x1:
            grad_weights.append(grad_one)
        count = len(plan.bns)
        grad_lab = lab_partials.sum(axis=0)
        grads = ([grad_x] + grad_weights + list(paddle.split(grad_gamma, count))
                 + list(paddle.split(grad_beta, count)) + [grad_lab[0:1], grad_lab[1:2]])
        if plan.act:
            grads += [grad_lab[2:3], grad_lab[3:4]]
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_grad))


class _RepPointwiseSumFunction(PyLayer):
    """``s = sum_b BN_b(W_b x) + BN_id(x)`` of a pointwise layer from C x C statistics.

    With batch statistics every branch is affine in ``x`` once its mean / variance are known,
    and those follow from the channel means and covariance of ``x``: ``mu_b = W_b xbar``,
    ``var_b = diag(W_b Cov W_b^T)``. So the forward is one Gram GEMM (Cov) plus one GEMM with the
    folded weight ``W_eff = sum_b diag(a_b) W_b (+ diag(a_id))``, ``a = gamma / sqrt(var + eps)``.
    The backward needs ``G = g x^T`` (one GEMM), from which every BN reduction and every
    ``grad W_b = diag(a_b) Gc - M diag(d_b) W_b Cov`` follow at C x C cost, and
    ``grad x = W_eff^T (g - mean g) - Q (x - xbar)`` (two GEMMs), ``Q = sum_b W_b^T diag(d_b)
    W_b (+ diag(d_id))``. Five GEMMs of the layer's size per step instead of 3 B; only ``x`` and
    C x C matrices are kept.
    """

    @staticmethod
    def forward(ctx, x, *args):
        plan, tensors = args[-1], args[:-1]
        ctx.plan = plan
        ctx.needs_grad = [not t.stop_gradient for t in (x,) + tuple(tensors)]
        x = _contiguous(x)
        weights, gammas, betas, _ = plan.split(tensors)
        batch, channels, height, width = x.shape
        out_channels = weights[0].shape[0]
        count = batch * height * width
        w = paddle.concat([t.reshape([out_channels, channels]) for t in weights])  # [B*Co, C]
        gamma, beta = paddle.concat(gammas), paddle.concat(betas)
        rows = x.reshape([batch, channels, height * width])
        xbar = rows.mean(axis=[0, 2])
        # [C, 1], not [1, C, 1]: paddle's CPU broadcast of the latter is 2-10x slower
        centred = rows - xbar.reshape([channels, 1])
        cov = (paddle.matmul(centred, centred, transpose_y=True).sum(axis=0) / count) \
            .astype("float64")
        del centred
        w, xbar64 = w.astype("float64"), xbar.astype("float64")
        gamma, beta = gamma.astype("float64"), beta.astype("float64")
        n_conv = plan.stacked
        mean = paddle.matmul(w, xbar64.reshape([channels, 1])).reshape([-1])
        variance = (paddle.matmul(w, cov) * w).sum(axis=1).clip(min=0.0)
        if plan.identity:
            mean = paddle.concat([mean, xbar64])
            variance = paddle.concat([variance, paddle.diagonal(cov).clip(min=0.0)])
        inv_std = paddle.rsqrt(variance + plan.epsilon)
        scale = gamma * inv_std
        shift = beta - scale * mean
        conv_scale = scale[:n_conv * out_channels]
        w_eff = (conv_scale.reshape([-1, 1]) * w).reshape([n_conv, out_channels, channels]) \
            .sum(axis=0)
        bias = shift.reshape([-1, out_channels]).sum(axis=0)
        if plan.identity:
            w_eff = w_eff + paddle.diag(scale[n_conv * out_channels:])
        # the bias in place as [C, 1, 1]: conv2d's own bias add (a [1, C, 1, 1] broadcast) took
        # 15 ms of a 20 ms call on [4, 32, 160, 160], this 0.9 ms
        s = F.conv2d(x, w_eff.astype("float32").reshape([out_channels, channels, 1, 1]))
        s.add_(bias.astype("float32").reshape([out_channels, 1, 1]))
        mean, variance = mean.astype("float32"), variance.astype("float32")
        momentum = plan.momentum
        for bn, mu, var in zip(plan.bns, paddle.split(mean, len(plan.bns)),
                               paddle.split(variance, len(plan.bns))):
            paddle.assign(bn._mean * momentum + mu * (1.0 - momentum), bn._mean)
            paddle.assign(bn._variance * momentum + var * (1.0 - momentum), bn._variance)
        ctx.save_for_backward(x, w, xbar, cov, inv_std, scale, w_eff)
        return s

    @staticmethod
    def backward(ctx, grad_s):
        plan = ctx.plan
        x, w, xbar, cov, inv_std, scale, w_eff = ctx.saved_tensor()
        batch, channels, height, width = x.shape
        out_channels, n_conv = w_eff.shape[0], plan.stacked
        count = batch * height * width
        grad_s = _contiguous(grad_s)
        grad_rows = grad_s.reshape([batch, out_channels, height * width])
        grad_sum = grad_rows.sum(axis=[0, 2])  # [Co]: every BN's beta grad
        centred = x.reshape([batch, channels, height * width]) - xbar.reshape([channels, 1])
        centred_gram = paddle.matmul(grad_rows, centred, transpose_y=True).sum(axis=0) \
            .astype("float64")
        grad_sum, xbar = grad_sum.astype("float64"), xbar.astype("float64")
        del centred  # centred_gram = sum_m g (x - xbar)^T
        w3 = w.reshape([n_conv, out_channels, channels])
        grad_gamma = inv_std[:n_conv * out_channels] * (w3 * centred_gram).sum(axis=2) \
            .reshape([-1])
        if plan.identity:
            grad_gamma = paddle.concat(
                [grad_gamma, inv_std[n_conv * out_channels:] * paddle.diagonal(centred_gram)])
        d = scale * inv_std * grad_gamma / count
        conv_scale, conv_d = scale[:n_conv * out_channels], d[:n_conv * out_channels]
        grad_w = (conv_scale.reshape([n_conv, out_channels, 1]) * centred_gram
                  - count * conv_d.reshape([n_conv, out_channels, 1])
                  * paddle.matmul(w, cov).reshape([n_conv, out_channels, channels]))
        grad_x = None
        if ctx.needs_grad[0]:
            q = paddle.matmul(w * conv_d.reshape([-1, 1]), w, transpose_x=True)
            if plan.identity:
                q = q + paddle.diag(d[n_conv * out_channels:])
            bias = (paddle.matmul(q, xbar.reshape([channels, 1]))
                    - paddle.matmul(w_eff, grad_sum.reshape([out_channels, 1]), transpose_x=True)
                    / count).reshape([channels])
            grad_x = F.conv2d(grad_s, w_eff.t().astype("float32").reshape(
                [channels, out_channels, 1, 1]))
            grad_x.subtract_(F.conv2d(x, q.astype("float32").reshape([channels, channels, 1, 1])))
            grad_x.add_(bias.astype("float32").reshape([channels, 1, 1]))
        grad_w, grad_gamma = grad_w.astype("float32"), grad_gamma.astype("float32")
        grad_sum = grad_sum.astype("float32")
        grad_weights = [t.reshape([out_channels, channels, 1, 1])
                        for t in paddle.unstack(grad_w, axis=0)]
        count_bns = len(plan.bns)
        grads = ([grad_x] + grad_weights + list(paddle.split(grad_gamma, count_bns))
                 + [grad_sum.clone() for _ in range(count_bns)])
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_grad))


def _depthwise_branches_fit(layer):
    """Every k x k conv depthwise with one odd kernel, stride and padding k // 2; the 1x1
    branch (if any) depthwise with that stride and no padding."""
    first = layer.conv_kxk[0].conv
    kernel, stride = [int(k) for k in first._kernel_size], [int(s) for s in first._stride]
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        return False
    for branch in layer.conv_kxk:
        conv = branch.conv
        if not (is_depthwise(conv) and [int(k) for k in conv._kernel_size] == kernel
                and [int(s) for s in conv._stride] == stride
                and symmetric_padding(conv) == [kernel[0] // 2, kernel[1] // 2]
                and conv._in_channels == first._in_channels):
            return False
    one = layer.conv_1x1.conv if layer.conv_1x1 is not None else None
    return one is None or (is_depthwise(one) and [int(k) for k in one._kernel_size] == [1, 1]
                           and [int(s) for s in one._stride] == stride
                           and symmetric_padding(one) == [0, 0]
                           and one._in_channels == first._in_channels)


def rep_layer_plan(x, layer):
    """A plan for the fused path when it applies to ``layer`` and ``x`` (module docstring),
    else None."""
    if getattr(layer, "is_repped", True) or not (
            paddle.in_dynamic_mode() and x.place.is_cpu_place() and x.dtype == paddle.float32
            and len(x.shape) == 4 and len(layer.conv_kxk) > 0):
        return None
    bns = [branch.bn for branch in layer.conv_kxk]
    bns += [layer.conv_1x1.bn] if layer.conv_1x1 is not None else []
    bns += [layer.identity] if layer.identity is not None else []
    if not all(_batch_norm_in_batch_stats_mode(bn) for bn in bns) or \
            len({(float(bn._momentum), float(bn._epsilon)) for bn in bns}) != 1:
        return None
    if layer.apply_act and not (type(layer.act.act) is nn.Hardswish
                                and isinstance(layer.act.lab, nn.Layer)):
        return None
    if layer.conv_1x1 is None and all(is_pointwise(b.conv) for b in layer.conv_kxk):
        depthwise = False
        rows = x.shape[0] * x.shape[2] * x.shape[3]
        if POINTWISE_MODE == "gram" and rows < GRAM_MIN_ROWS_PER_CHANNEL * x.shape[1]:
            return None
    elif _depthwise_branches_fit(layer):
        depthwise = True
    else:
        return None
    if cpu_kernels() is None:
        return None
    return _Plan(layer, depthwise)


def rep_layer_forward(x, layer):
    """The training-form output of a ``LearnableRepLayer`` through the fused node, or None
    when the fused path does not apply (then run paddle's ops)."""
    plan = rep_layer_plan(x, layer)
    if plan is None:
        return None
    if plan.depthwise or POINTWISE_MODE != "gram":
        return _RepLayerFunction.apply(x, *plan.tensors(layer), plan)
    tensors = plan.tensors(layer)[:plan.stacked + 2 * len(plan.bns)]
    summed = _RepPointwiseSumFunction.apply(x, *tensors, plan)
    act = layer.act if layer.apply_act else None
    out = lab_act(summed, layer.lab, act) if FUSED_TAIL else None
    if out is not None:
        return out
    out = layer.lab(summed)
    return act(out) if act is not None else out
