"""The tail of PP-LCNetV3's layers, ``lab`` then ``act``, as one autograd node on CPU.

A ``LearnableRepLayer`` ends in ``u = lab.scale * s + lab.bias`` and, when it has an activation,
``y = act.lab.scale * hardswish(u) + act.lab.bias`` (four learnable scalars). paddle runs that as
five element-wise ops and keeps ``s``, ``u`` and ``hardswish(u)`` for backward; the backward adds
four reductions for the scalars' gradients. :func:`lab_act` runs it as one ``PyLayer``
(``lab_act_kernels.cc``): one multi-threaded pass forward keeping only ``s``, one pass backward
giving ``grad s`` and the per-row partial sums of the four scalar gradients.

It applies in dynamic-graph mode on CPU, float32, with the compiled kernels available, a
``LearnableAffineBlock``-style ``lab`` (``scale`` / ``bias`` one-element tensors) and an
activation that is ``nn.Hardswish`` followed by such a block (or no activation). Anything else
(GPU, export / static graph, other activations, ``PPDISTILL_CPU_KERNELS=0``) gets None and runs
paddle's ops. Results equal paddle's up to float32 rounding (``tests/ops/test_lab_act.py``).
"""
import paddle
from paddle import nn
from paddle.autograd import PyLayer

from ppdistill.ops.functional import _contiguous
from ppdistill.ops.loader import cpu_kernels
from ppdistill.utils.cpu import kernel_threads

__all__ = ["lab_act", "lab_vector"]


def lab_vector(scalars, act):
    """The kernels' ``[ls, lb, as, ab]`` from the layer's one-element scalars (``act.lab``'s
    scale 1, bias 0 for a layer without activation)."""
    scalars = list(scalars)
    if not act:
        scalars += [paddle.ones([1], "float32"), paddle.zeros([1], "float32")]
    return paddle.concat(scalars)


class _LabActFunction(PyLayer):
    """``y = as * hardswish(ls * s + lb) + ab`` (``act``) or ``ls * s + lb``; keeps only ``s``."""

    @staticmethod
    def forward(ctx, s, *args):
        act, scalars = args[-1], args[:-1]
        ctx.act = act
        ctx.needs_grad = [not t.stop_gradient for t in (s,) + tuple(scalars)]
        s = _contiguous(s)
        lab = lab_vector(scalars, act)
        y = cpu_kernels().ppdistill_lab_act_forward(s, lab, int(act), kernel_threads())
        ctx.save_for_backward(s, lab)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        s, lab = ctx.saved_tensor()
        grad_s, partials = cpu_kernels().ppdistill_lab_act_backward(
            s, lab, _contiguous(grad_y), int(ctx.act), kernel_threads())
        sums = partials.astype("float64").sum(axis=0).astype("float32")
        grads = [grad_s] + [sums[i:i + 1] for i in range(4 if ctx.act else 2)]
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_grad))


def _scalar_pair(block):
    scale, bias = getattr(block, "scale", None), getattr(block, "bias", None)
    if not (isinstance(block, nn.Layer) and isinstance(scale, paddle.Tensor)
            and isinstance(bias, paddle.Tensor) and scale.size == 1 and bias.size == 1
            and scale.dtype == paddle.float32 and bias.dtype == paddle.float32):
        return None
    return [scale.reshape([1]), bias.reshape([1])]


def lab_act(s, lab, act=None):
    """``act(lab(s))`` through the fused node, or None when it does not apply (module
    docstring); ``act`` is an ``Act`` layer (``act.act`` Hardswish, ``act.lab``) or None."""
    if not (paddle.in_dynamic_mode() and s.place.is_cpu_place() and s.dtype == paddle.float32
            and len(s.shape) >= 2):
        return None
    scalars = _scalar_pair(lab)
    if scalars is None:
        return None
    if act is not None:
        if type(getattr(act, "act", None)) is not nn.Hardswish:
            return None
        tail = _scalar_pair(getattr(act, "lab", None))
        if tail is None:
            return None
        scalars += tail
    if cpu_kernels() is None:
        return None
    return _LabActFunction.apply(s, *scalars, act is not None)
