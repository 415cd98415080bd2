"""Activation recomputation for trained sub-models on CPU: keep a segment's input, not its insides.

In training, paddle keeps every intermediate tensor a layer's backward needs until the backward
reaches it. For the det CML students (two MobileNetV3 / PPLCNetV3 + RSEFPN + DBHead models at
4x320x320) those saved activations are ~180 MiB per student (about half backbone, half neck and
head; 600 MiB for PPLCNetV3 before its rep layers were fused), alive from the students' forward
to their backward (``DistillationModel`` runs the frozen teacher before them, so its forward's
working memory does not add to them).

:func:`enable_recompute` turns chosen sub-layers ("segments") into recomputed ones: in CPU training
a segment's forward runs without a gradient graph and keeps only its input tensors; its backward
runs the forward again with the graph (one segment at a time) and back-propagates through it.
Parameter gradients accumulate as usual. Results are those of the plain forward and backward:

- **Running statistics are updated once.** BatchNorm in training mode updates its running mean
  and variance at every forward, so the re-run in backward would update them a second time. The
  segment's buffers and non-trainable parameters are copied before the re-run and written back
  after its backward.
- **Same function.** The re-run sees the same inputs, weights and training flags, so batch
  statistics and outputs are the same; a segment with an active Dropout (random) is never
  recomputed.

Segments of a det model (:func:`det_segments`): every ``nn.Sequential`` stage of the backbone
(MobileNetV3 ``stage0``..``stage3``, PPLCNetV3 ``blocks2``..``blocks6``), the whole neck (RSEFPN,
DBFPN, LKPAN) and the whole head (DBHead, PFHeadLocal). Only the segments' boundary tensors stay
alive between forward and backward. Other components are not recomputed: a segment that detaches
an input would give the layers before it a zero gradient instead of none (paddle fills a
``PyLayer``'s missing input gradients), so such a segment is also switched back to the plain
forward, with a warning, the first time it happens.

Measured on the det CML configs (batch 4, 320x320, 2-core AMD EPYC, loaded machine,
benchmark/run.py, with the teacher's chunked convs of ``fast_conv``): peak RSS 1.03-1.06 GiB
against the optimisations-off baseline's 1.93-2.03 GiB (v3; 1.49 GiB without recomputation) and
1.13-1.20 against 2.82-3.12 GiB (v4; ~1.5 GiB without), for about one more forward of each
student per step (~+0.7 s CPU time per step for v3, ~+1.3 s for v4). Quiet, alternating, after
the fused PP-LCNetV3 tail and before the stride-1 depthwise blocks (2026-12-02,
benchmark/RESULTS.md, arm ``optimised-norecompute``): v3 3.32 vs 3.09
s/iter at 1.05 vs 1.33 GiB, v4 5.34 vs 4.60 s/iter at 1.21 vs 1.43 GiB.

It applies in dygraph training on CPU in one process, with gradient enabled and at least one
input that needs a gradient; everything else (eval, export, GPU, ``paddle.no_grad``, several
processes) runs the plain forward.
``DistillationModel`` enables it for the trained sub-models of det distillation;
``PPDISTILL_RECOMPUTE=0`` or ``PPDISTILL_CPU_KERNELS=0`` turn it off (plain paddle autograd).

Limitation (paddle's, for every ``PyLayer``): ``paddle.grad(out, inputs)`` with ``inputs`` a
subset of the tensors the node depends on fails; ``loss.backward()`` works.
"""
import logging
import types

import paddle
from paddle import nn
from paddle.autograd import PyLayer

from ppdistill.ops.loader import kernels_enabled
from ppdistill.utils.switches import switch_on

__all__ = ["recompute_enabled", "enable_recompute", "det_segments", "recompute_call"]

DROPOUTS = (nn.Dropout, nn.Dropout2D, nn.Dropout3D, nn.AlphaDropout)
#: det components whose segments are recomputed: their forward passes a gradient to every input
#: (a recomputed segment that detaches an input would hand the layers before it a zero gradient,
#: since paddle fills a PyLayer's missing input gradients with zeros, where the plain graph gives
#: none)
DET_SEGMENT_COMPONENTS = {"backbone": ("MobileNetV3", "PPLCNetV3"),
                          "neck": ("RSEFPN", "DBFPN", "LKPAN"),
                          "head": ("DBHead", "PFHeadLocal")}
logger = logging.getLogger("ppdistill")


def recompute_enabled():
    """False when ``PPDISTILL_RECOMPUTE`` or ``PPDISTILL_CPU_KERNELS`` is ``0``/``false``/``no``
    (the optimisations-off baseline keeps paddle's plain autograd)."""
    return switch_on("PPDISTILL_RECOMPUTE") and kernels_enabled()


# ------------------------------------------------------------------ nested outputs <-> tensors
def _flatten(value, tensors):
    """A picklable-free template of ``value`` with every tensor replaced by its index in
    ``tensors`` (appended); lists, tuples and dicts are walked, anything else is kept as is."""
    if isinstance(value, paddle.Tensor):
        tensors.append(value)
        return _Slot(len(tensors) - 1)
    if isinstance(value, (list, tuple)):
        return type(value)(_flatten(v, tensors) for v in value)
    if isinstance(value, dict):
        return {k: _flatten(v, tensors) for k, v in value.items()}
    return value


def _unflatten(template, tensors):
    if isinstance(template, _Slot):
        return tensors[template.index]
    if isinstance(template, (list, tuple)):
        return type(template)(_unflatten(v, tensors) for v in template)
    if isinstance(template, dict):
        return {k: _unflatten(v, tensors) for k, v in template.items()}
    return template


class _Slot:
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


# ---------------------------------------------------------------------------- the autograd node
class _RecomputeFunction(PyLayer):
    """``forward(ctx, run, layer, *inputs)``: ``run(*inputs)`` without a graph, keeping the inputs;
    backward re-runs it with the graph and back-propagates the output gradients through it."""

    @staticmethod
    def forward(ctx, run, layer, *inputs):
        ctx.run, ctx.layer = run, layer
        ctx.needs_grad = [not x.stop_gradient for x in inputs]
        ctx.save_for_backward(*inputs)
        with paddle.no_grad():
            outputs = run(*inputs)
        flat = []
        _flatten(outputs, flat)
        return tuple(flat)

    @staticmethod
    def backward(ctx, *grads):
        inputs = ctx.saved_tensor()
        detached = []
        for x, need in zip(inputs, ctx.needs_grad):
            x = x.detach()
            x.stop_gradient = not need
            detached.append(x)
        # The re-run updates BN running statistics (paddle keeps them as non-trainable
        # parameters) and any other buffer a second time: keep the values the first forward
        # left and restore them afterwards.
        buffers = _state_tensors(ctx.layer)
        saved = [b.clone() for b in buffers]
        with paddle.set_grad_enabled(True):
            outputs = ctx.run(*detached)
        flat = []
        _flatten(outputs, flat)
        roots, root_grads = [], []
        for out, grad in zip(flat, grads):
            if grad is not None and not out.stop_gradient:
                roots.append(out)
                root_grads.append(grad)
        if roots:
            paddle.autograd.backward(roots, root_grads)
        del outputs, flat, roots
        # after the backward: paddle's BN backward checks that its saved statistics tensors
        # were not modified in place before it ran
        for buffer, value in zip(buffers, saved):
            paddle.assign(value, buffer)
        if any(need and x.grad is None for x, need in zip(detached, ctx.needs_grad)):
            # The segment detaches an input. paddle fills the missing gradient with zeros, so the
            # layers before it would get a zero gradient instead of none (and weight decay):
            # never recompute this segment again.
            ctx.layer._ppdistill_recompute_unsafe = True
            logger.warning(f"recompute: {type(ctx.layer).__name__} does not pass a gradient to "
                           f"one of its inputs; it runs without recomputation from now on")
        return tuple((x.grad if x.grad is not None else paddle.zeros_like(x)) if need else None
                     for x, need in zip(detached, ctx.needs_grad))


def _state_tensors(layer):
    """Tensors a forward may update in place: buffers and non-trainable parameters (paddle's
    BatchNorm running mean / variance)."""
    state = [p for p in layer.parameters() if p.stop_gradient]
    state += [b for b in layer.buffers() if b is not None and b._is_initialized()]
    return state


def _has_active_dropout(layer):
    return any(isinstance(sub, DROPOUTS) and sub.training and getattr(sub, "p", 0) > 0
               for sub in layer.sublayers(include_self=True))


def recompute_applies(layer, inputs):
    """Whether a recomputed segment ``layer`` called on ``inputs`` (a flat list) recomputes."""
    tensors = [x for x in inputs if isinstance(x, paddle.Tensor)]
    return (bool(tensors) and paddle.in_dynamic_mode() and paddle.is_grad_enabled()
            and layer.training and all(x.place.is_cpu_place() for x in tensors)
            and any(not x.stop_gradient for x in tensors) and not _has_active_dropout(layer)
            and not getattr(layer, "_ppdistill_recompute_unsafe", False)
            # DataParallel's gradient reducer expects every parameter in the traced graph
            and paddle.distributed.get_world_size() == 1)


def recompute_call(layer, forward, *args, **kwargs):
    """``forward(*args, **kwargs)`` of ``layer``, recomputed in backward when it applies.

    Tensor arguments may be nested in lists/tuples/dicts (e.g. a neck's list of 4 maps);
    non-tensor arguments are passed through unchanged. Returns ``forward``'s structure.
    """
    inputs = []
    template = _flatten((args, kwargs), inputs)
    if not recompute_applies(layer, inputs):
        return forward(*args, **kwargs)
    holder = {}

    def run(*tensors):
        call_args, call_kwargs = _unflatten(template, list(tensors))
        out = forward(*call_args, **call_kwargs)
        holder["template"] = _flatten(out, [])
        return out

    flat_out = _RecomputeFunction.apply(run, layer, *inputs)
    if isinstance(flat_out, paddle.Tensor):
        flat_out = (flat_out,)
    return _unflatten(holder["template"], list(flat_out))


def _recomputed_forward(self, *args, **kwargs):
    forward = type(self).forward.__get__(self)
    if not paddle.in_dynamic_mode():  # static graph / export: the layer's own forward
        return forward(*args, **kwargs)
    return recompute_call(self, forward, *args, **kwargs)


def det_segments(model):
    """The segments of a det ``BaseModel``: each ``nn.Sequential`` stage of the backbone, the neck
    and the head, for the components of :data:`DET_SEGMENT_COMPONENTS` only."""
    segments = []
    for part in ("backbone", "neck", "head"):
        layer = getattr(model, part, None) if getattr(model, f"use_{part}", True) else None
        if layer is None or type(layer).__name__ not in DET_SEGMENT_COMPONENTS[part]:
            continue
        if part == "backbone":
            segments += [child for child in layer.children() if type(child) is nn.Sequential]
        else:
            segments.append(layer)
    return segments


def enable_recompute(layers):
    """Make each layer of ``layers`` a recomputed segment (see the module docstring); returns
    how many were switched (0 when :func:`recompute_enabled` is false).

    Parameter names and ``state_dict`` are unchanged; the layers' own ``forward`` is used.
    """
    if not recompute_enabled():
        return 0
    switched = 0
    for layer in layers:
        if getattr(layer, "_ppdistill_recompute", False):
            continue
        layer.forward = types.MethodType(_recomputed_forward, layer)
        layer._ppdistill_recompute = True
        switched += 1
    return switched
