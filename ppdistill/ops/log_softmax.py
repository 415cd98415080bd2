"""``log_softmax`` for the losses, without paddle's slow CPU kernel.

paddle's CPU ``log_softmax`` (3.3) is orders of magnitude slower than the other reductions on
class-sized rows: on PP-OCRv4 rec distillation's gtc logits (832 rows x 6629 classes) it took
2.2 s forward and 4.3 s forward + backward on 2 cores, where ``x - logsumexp(x)`` (the same
function, numerically stable) takes 44 ms and 80 ms, with the same float32 error against a float64
reference (1.6e-5 on logits of scale 3). The DKD loss of ``ch_PP-OCRv4_rec_distill.yml`` spent
~1.9 s of a 9 s step there (its forward and its backward's recomputation).

:func:`log_softmax` takes the ``logsumexp`` form for CPU tensors in dynamic mode while ppdistill's
CPU optimisations are on, and paddle's ``F.log_softmax`` otherwise (GPU, static graph / export,
``PPDISTILL_CPU_KERNELS=0``, which also makes the optimisations-off benchmark baseline behave as
PaddleOCR's losses do).
"""
import paddle
import paddle.nn.functional as F

from ppdistill.ops.loader import kernels_enabled

__all__ = ["log_softmax"]


def log_softmax(x, axis=-1):
    """``log(softmax(x))`` along ``axis`` (module docstring); gradients as paddle's."""
    if paddle.in_dynamic_mode() and x.place.is_cpu_place() and kernels_enabled():
        return x - paddle.logsumexp(x, axis=axis, keepdim=True)
    return F.log_softmax(x, axis=axis)
