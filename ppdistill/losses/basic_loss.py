"""Basic losses the distillation wrappers are built on: CE, KL/JS, DML, distance, KL-div, DKD.

Each is called ``loss(x, y[, ...])`` on tensors. Numerics follow PaddleOCR's definitions
(activation, ``log``/epsilon placement, reductions) so the same inputs give the same numbers;
the few deliberate differences are stated in the class docstrings.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.losses.distillation_dkd_rows import dkd_rows
from ppdistill.ops import dml_softmax_sum
from ppdistill.ops.log_softmax import log_softmax
from ppdistill.registry import LOSSES, ConfigError, suggest


@LOSSES.register()
class CELoss(nn.Layer):
    """Cross-entropy with optional label smoothing.

    - ``0 < epsilon < 1``: hard labels are one-hot encoded to C classes, smoothed to
      ``(1 - ε)·onehot + ε/C`` and the per-row loss ``Σ_c −log_softmax(x)·soft`` is returned
      (shape ``[N]``, no mean, as PaddleOCR).
    - otherwise: a label with C in its last axis is used as a soft label after a softmax, any
      other label as hard class indices; the mean cross-entropy (0-D) is returned.

    YAML: ``{name: CELoss, epsilon: 0.1}``
    """

    def __init__(self, epsilon=None):
        super().__init__()
        self.epsilon = epsilon if epsilon is not None and 0 < epsilon < 1 else None

    def forward(self, x, label):
        num_classes = x.shape[-1]
        if self.epsilon is not None:
            if label.shape[-1] != num_classes:
                label = F.one_hot(label.reshape([-1]).astype("int64"), num_classes)
            soft = (1 - self.epsilon) * label.astype(x.dtype) + self.epsilon / num_classes
            soft = soft.reshape([-1, num_classes])
            return (-log_softmax(x, axis=-1).reshape([-1, num_classes]) * soft).sum(axis=-1)
        if label.shape[-1] == num_classes:
            return F.cross_entropy(x, F.softmax(label, axis=-1), soft_label=True)
        return F.cross_entropy(x, label.astype("int64"))


class KLJSLoss:
    """Symmetric KL or Jensen-Shannon divergence between two probability tensors.

    Elementwise, with ε = ``eps``:

    - kl: ``½·[p2·log((p2+ε)/(p1+ε) + ε) + p1·log((p1+ε)/(p2+ε) + ε)]``
    - js: ``½·[p2·log((2·p2+ε)/(p1+p2+ε) + ε) + p1·log((2·p1+ε)/(p1+p2+ε) + ε)]``

    ``reduction="mean"`` averages over axes 1 and 2 (a ``[B,H,W]`` input gives ``[B]``, as
    PaddleOCR), ``"none"``/None returns the elementwise tensor, ``"sum"`` sums axes 1 and 2.
    """

    def __init__(self, mode="kl"):
        if mode not in ("kl", "KL", "js", "JS"):
            raise ConfigError(f"KLJSLoss: mode must be one of kl, js, got {mode!r}")
        self.mode = mode.lower()

    def __call__(self, p1, p2, reduction="mean", eps=1e-5):
        if self.mode == "kl":
            loss = (p2 * paddle.log((p2 + eps) / (p1 + eps) + eps)
                    + p1 * paddle.log((p1 + eps) / (p2 + eps) + eps))
        else:
            loss = (p2 * paddle.log((2 * p2 + eps) / (p1 + p2 + eps) + eps)
                    + p1 * paddle.log((2 * p1 + eps) / (p1 + p2 + eps) + eps))
        loss = loss * 0.5
        if reduction == "mean":
            return paddle.mean(loss, axis=[1, 2])
        if reduction in ("none", None):
            return loss
        return paddle.sum(loss, axis=[1, 2])


def _kd_term(log_student, target):
    """``Σ_all t·(log(t + 1e-10) − x) / N0``: KL(target ‖ student) summed, divided by batch."""
    loss = target * (paddle.log(target + 1e-10) - log_student)
    return loss.sum() / loss.shape[0]


@LOSSES.register()
class DMLLoss(nn.Layer):
    """Deep mutual learning loss: ``½·(KL(p1‖p2) + KL(p2‖p1))``.

    ``act`` (None, ``softmax`` over the last axis, or ``sigmoid``) is applied to both inputs and
    ``1e-10`` added. With ``use_log`` (recognition) the result is
    ``[KD(log p1, p2) + KD(log p2, p1)] / 2`` with ``KD(x, t) = Σ_all t·(log(t+1e-10) − x) / N0``
    (0-D). Without it (detection maps, already probabilities) it is the ``kl`` form of
    :class:`KLJSLoss` with ``eps=1e-5``, averaged over axes 1 and 2: a per-sample vector ``[B]``
    for ``[B,H,W]`` inputs, exactly as PaddleOCR; the distillation wrappers reduce it to its mean.

    On CPU, ``act: softmax`` with ``use_log`` runs as one fused kernel that keeps only the two
    logits for backward (``ppdistill.ops.dml_softmax_sum``; same value up to float rounding).

    YAML: ``{name: DMLLoss, act: softmax, use_log: true}``
    """

    def __init__(self, act=None, use_log=False):
        super().__init__()
        if act not in (None, "softmax", "sigmoid"):
            raise ConfigError(f"DMLLoss: act must be None, softmax or sigmoid, got {act!r}"
                              f"{suggest(act, ['softmax', 'sigmoid'])}")
        self.act = act
        self.use_log = use_log
        self.jskl_loss = KLJSLoss(mode="kl")

    def _activate(self, x):
        if self.act == "softmax":
            return F.softmax(x, axis=-1) + 1e-10
        if self.act == "sigmoid":
            return F.sigmoid(x) + 1e-10
        return x

    def forward(self, out1, out2):
        if self.use_log and self.act == "softmax":
            fused = dml_softmax_sum(out1, out2)  # CPU: one kernel, keeps only the logits
            if fused is not None:
                return fused / (2.0 * out1.shape[0])
        p1, p2 = self._activate(out1), self._activate(out2)
        if self.use_log:
            return (_kd_term(paddle.log(p1), p2) + _kd_term(paddle.log(p2), p1)) / 2.0
        return self.jskl_loss(p1, p2)


@LOSSES.register()
class DistanceLoss(nn.Layer):
    """L1, L2 (MSE) or smooth-L1 distance between two tensors, reduced by ``reduction``.

    ``delta`` is the smooth-L1 transition point (ignored by l1/l2).

    YAML: ``{name: DistanceLoss, mode: l2}``
    """

    MODES = ("l1", "l2", "smooth_l1")

    def __init__(self, mode="l2", reduction="mean", delta=1.0):
        super().__init__()
        if mode not in self.MODES:
            raise ConfigError(f"DistanceLoss: mode must be one of {', '.join(self.MODES)}, "
                              f"got {mode!r}{suggest(mode, self.MODES)}")
        self.mode = mode
        if mode == "l1":
            self.loss_func = nn.L1Loss(reduction=reduction)
        elif mode == "l2":
            self.loss_func = nn.MSELoss(reduction=reduction)
        else:
            self.loss_func = nn.SmoothL1Loss(reduction=reduction, delta=delta)

    def forward(self, x, y):
        return self.loss_func(x, y)


@LOSSES.register()
class LossFromOutput(nn.Layer):
    """Uses a loss the model computed itself: ``predicts[key]``, optionally reduced.

    YAML: ``{name: LossFromOutput, key: loss, reduction: mean}``
    """

    def __init__(self, key="loss", reduction="none"):
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise ConfigError(f"LossFromOutput: reduction must be none, mean or sum, "
                              f"got {reduction!r}")
        self.key = key
        self.reduction = reduction

    def forward(self, predicts, batch=None):
        loss = predicts[self.key] if isinstance(predicts, dict) else predicts
        if self.reduction == "mean":
            loss = paddle.mean(loss)
        elif self.reduction == "sum":
            loss = paddle.sum(loss)
        return {"loss": loss}


@LOSSES.register()
class KLDivLoss(nn.Layer):
    """KL(teacher ‖ student) from logits: ``e = t·(log(t + 1e-10) − log_softmax(s))``, t = softmax(teacher).

    Without a mask: ``Σ_all e / B`` (0-D). With a boolean mask over the ``B·T`` rows of a
    ``[B,T,C]`` input: the mean over the selected rows of ``Σ_c e``.

    YAML: ``{name: KLDivLoss}``
    """

    def forward(self, logits_student, logits_teacher, mask=None):
        log_s = log_softmax(logits_student, axis=-1)
        t = F.softmax(logits_teacher, axis=-1)
        loss = t * (paddle.log(t + 1e-10) - log_s)
        if mask is None:
            return loss.sum() / loss.shape[0]
        rows = loss.reshape([-1, loss.shape[-1]]).sum(axis=-1)
        mask = mask.reshape([-1]).astype(rows.dtype)
        return (rows * mask).sum() / paddle.clip(mask.sum(), min=1.0)


@LOSSES.register()
class DKDLoss(nn.Layer):
    """Decoupled knowledge distillation (Zhao et al., CVPR 2022): ``α·TCKD + β·NCKD``.

    Logits ``[B,T,C]`` (or ``[N,C]``) are flattened to rows, ``target`` gives the class per row.
    With τ the temperature, ``ps = softmax(zs/τ)``, ``pt = softmax(zt/τ)`` and ``G`` the one-hot
    target:

    - TCKD = KL over the two bins ``[Σ p·G, Σ p·(1−G)]`` (teacher ‖ student), times τ²;
    - NCKD = KL between ``softmax(zt/τ − 1000·G)`` and ``log_softmax(zs/τ − 1000·G)`` (the target
      class suppressed), times τ²;

    each KL term is ``Σ t·(log(t + 1e-10) − log s)`` per row, averaged over rows.

    Difference from PaddleOCR: a ``mask`` (bool per row) is honoured — both averages run over
    the masked rows only; PaddleOCR accepts and ignores it, averaging over padding rows too.
    Without a mask the numbers are PaddleOCR's.

    YAML: ``{name: DKDLoss, temperature: 1.0, alpha: 1.0, beta: 2.0}``
    """

    def __init__(self, temperature=1.0, alpha=1.0, beta=1.0):
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.beta = beta

    def forward(self, logits_student, logits_teacher, target, mask=None):
        num_classes = logits_student.shape[-1]
        # one autograd node keeping only the inputs when the teacher needs no gradient
        rows = dkd_rows(logits_student.reshape([-1, num_classes]),
                        logits_teacher.reshape([-1, num_classes]), target,
                        self.alpha, self.beta, self.temperature)
        if mask is None:
            return rows.mean()
        mask = mask.reshape([-1]).astype(rows.dtype)
        return (rows * mask).sum() / paddle.clip(mask.sum(), min=1.0)
