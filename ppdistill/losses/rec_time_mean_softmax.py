"""Time-averaged softmax of CTC logits that keeps only the logits for backward.

The CTC-logit distillation losses (:mod:`ppdistill.losses.distillation_ctc_logits_loss`) reduce
train-mode CTC logits ``z`` ``[B, T, C]`` to a class distribution per sample::

    p[b, c] = mean_t softmax(sign * z[b, t] / tau)[c]      (sign: -1 on class 0 with flip_blank)

Written with paddle's ops, the autograd graph keeps the ``[B, T, C]`` softmax output (plus
temporaries of the same size while it is built): for PP-OCRv4 at batch 32 that is 40 x 6625
floats per sample, 34 MB kept and ~160 MB at the peak of the loss. :func:`time_mean_softmax`
computes the same value as one autograd node (a ``PyLayer``) that keeps only ``z`` (which the
head output holds anyway), works through the batch in slices of at most ``CHUNK_BYTES`` and
recomputes the softmax in backward::

    dL/dz[b, t] = sign / tau * s_t * (g_b / T - <s_t, g_b / T>)
    s_t = softmax(sign * z[b, t] / tau)

with ``g_b = dL/dp[b]``. Every sample is handled on its own, so the slicing changes no value;
results equal the paddle-op composition up to float32 rounding (``tests/losses/
test_ctc_logits_memory.py``). A tensor that needs no gradient (a frozen teacher's logits) or a
static-graph program takes paddle's ops, sliced the same way in dynamic mode.

Limitation (paddle's, for every ``PyLayer``): ``paddle.grad`` with ``inputs`` that leave out
tensors this node depends on fails; ``loss.backward()`` works.
"""
import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer

__all__ = ["time_mean_softmax", "CHUNK_BYTES"]

#: the largest ``[b, T, C]`` float32 slice processed at once (forward and backward)
CHUNK_BYTES = 8 << 20


def _signs(num_classes, flip_blank, dtype):
    if not flip_blank:
        return None
    return paddle.concat([paddle.full([1], -1.0, dtype=dtype),
                          paddle.ones([num_classes - 1], dtype=dtype)])


def _slices(logits, chunk_bytes):
    batch, steps, classes = logits.shape
    per_sample = max(steps * classes * 4, 1)
    rows = max(1, int(chunk_bytes) // per_sample)
    return [(start, min(start + rows, batch)) for start in range(0, batch, rows)]


def _softmax(logits, signs, temperature):
    """``softmax(sign * z / tau)`` over the last axis (the ops of the unfused loss)."""
    if signs is not None:
        logits = logits * signs
    return F.softmax(logits / temperature, axis=-1)


def _forward_sliced(logits, signs, temperature, chunk_bytes):
    parts = [_softmax(logits[start:stop], signs, temperature).mean(axis=1)
             for start, stop in _slices(logits, chunk_bytes)]
    return parts[0] if len(parts) == 1 else paddle.concat(parts, axis=0)


class _TimeMeanSoftmax(PyLayer):
    @staticmethod
    def forward(ctx, logits, temperature, flip_blank, chunk_bytes):
        signs = _signs(logits.shape[-1], flip_blank, logits.dtype)
        ctx.save_for_backward(logits)
        ctx.settings = (temperature, flip_blank, chunk_bytes)
        return _forward_sliced(logits, signs, temperature, chunk_bytes)

    @staticmethod
    def backward(ctx, grad):
        (logits,) = ctx.saved_tensor()
        temperature, flip_blank, chunk_bytes = ctx.settings
        signs = _signs(logits.shape[-1], flip_blank, logits.dtype)
        steps = logits.shape[1]
        parts = []
        for start, stop in _slices(logits, chunk_bytes):
            probs = _softmax(logits[start:stop], signs, temperature)
            grad_probs = (grad[start:stop] / steps).unsqueeze(1)  # mean over T: g / T
            grad_scaled = probs * (grad_probs - (probs * grad_probs).sum(axis=-1, keepdim=True))
            grad_logits = grad_scaled / temperature
            if signs is not None:
                grad_logits = grad_logits * signs
            parts.append(grad_logits)
        return parts[0] if len(parts) == 1 else paddle.concat(parts, axis=0)


def time_mean_softmax(logits, temperature, flip_blank=False, chunk_bytes=CHUNK_BYTES):
    """``mean_t softmax(sign * logits / temperature)``: ``[B, T, C]`` -> ``[B, C]``.

    ``flip_blank`` multiplies class 0 (the CTC blank) by -1 first. With a gradient to compute
    (dynamic mode, ``logits.stop_gradient`` False) it runs as one autograd node keeping only
    ``logits``; otherwise through paddle's ops, in batch slices of at most ``chunk_bytes``
    bytes in dynamic mode.
    """
    if not paddle.in_dynamic_mode():
        return _softmax(logits, _signs(logits.shape[-1], flip_blank, logits.dtype),
                        temperature).mean(axis=1)
    if logits.stop_gradient or not paddle.is_grad_enabled():
        with paddle.no_grad():
            signs = _signs(logits.shape[-1], flip_blank, logits.dtype)
            return _forward_sliced(logits, signs, temperature, chunk_bytes)
    return _TimeMeanSoftmax.apply(logits, float(temperature), bool(flip_blank), int(chunk_bytes))
