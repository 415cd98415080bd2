"""CTC-logit distillation of PP-OCRv4 recognition: KLCTCLogits, CTCDKDLoss, DistillCTCLogits.

CTC timesteps are not label positions, so these losses compare the *time-averaged* class
distributions of student and teacher (``[B, T, C]`` train-mode logits → ``[B, C]``), after
optionally negating the blank logit so that the dominant blank class does not swamp the
comparison. Numerics follow PaddleOCR's ``KLCTCLogits`` / ``CTCDKDLoss`` (temperature 0.5,
epsilon 1e-6 placed as there); every mode is written as a per-sample value that ``reduction``
reduces, and PaddleOCR's ``Σ_b … / B`` is the ``mean`` reduction.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.losses.distillation_select import PairSelector, sum_terms
from ppdistill.losses.rec_time_mean_softmax import time_mean_softmax
from ppdistill.registry import LOSSES, ConfigError, suggest

#: fixed softmax temperature of PaddleOCR's KLCTCLogits.
CTC_LOGITS_TEMPERATURE = 0.5
EPS = 1e-6
REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, loss_name):
    if reduction not in REDUCTIONS:
        raise ConfigError(f"{loss_name}: reduction must be one of {', '.join(REDUCTIONS)}, got "
                          f"{reduction!r}{suggest(reduction, REDUCTIONS)}")


def _reduce(per_sample, reduction):
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _check_logits(logits, loss_name, what):
    if not isinstance(logits, paddle.Tensor) or logits.ndim != 3:
        raise ValueError(f"{loss_name}: {what} must be CTC logits [B, T, C], got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")


def flip_blank(logits):
    """``logits`` with class 0 (the CTC blank) multiplied by −1; a new tensor."""
    num_classes = logits.shape[-1]
    signs = paddle.concat([paddle.full([1], -1.0, dtype=logits.dtype),
                           paddle.ones([num_classes - 1], dtype=logits.dtype)])
    return logits * signs


def kl_eps_rows(p_student, p_teacher):
    """Per row ``Σ_c p_t·log((p_t + 1e-6)/(p_s + 1e-6) + 1e-6)`` of ``[B, K]`` probabilities."""
    ratio = (p_teacher + EPS) / (p_student + EPS) + EPS
    return (p_teacher * paddle.log(ratio)).sum(axis=-1)


def _kd_rows(log_x, target):
    """Per-sample ``K(x, t)`` of ``e = t·(log(t + 1e-10) − x)``: for ``[B, C]`` inputs the mean
    of e over C; for ``[B, T, C]`` inputs the mean over T, summed over C. Returns ``[B]``."""
    loss = target * (paddle.log(target + 1e-10) - log_x)
    loss = loss.mean(axis=1)
    return loss.sum(axis=-1) if loss.ndim > 1 else loss


@LOSSES.register()
class CTCDKDLoss(nn.Layer):
    """Decoupled KD on time-averaged CTC distributions (PaddleOCR's ``CTCDKDLoss``).

    For logits ``[B, T, C]`` and the CTC label ``targets`` ``[B, L]`` (zero-padded):

    - ``G[b, c] = 1`` if class c occurs in sample b's label, blank (class 0) excluded;
    - ``ps = mean_t softmax(zs/τ)``, ``pt = mean_t softmax(zt/τ)`` → ``[B, C]``;
    - TCKD_b = ``kl([Σ pt·G, Σ pt·(1−G)] ‖ [Σ ps·G, Σ ps·(1−G)])``;
    - NCKD_b = ``kl(mean_t softmax(zt/τ − 1000·G) ‖ mean_t softmax(zs/τ − 1000·G))``;
    - with ``kl(t ‖ s) = Σ p_t·log((p_t + 1e-6)/(p_s + 1e-6) + 1e-6)`` and no τ² factor;
    - loss = mean_b (α·TCKD_b + β·NCKD_b), 0-D.

    Difference from PaddleOCR: the class count is taken from the logits (PaddleOCR hard-codes
    11465 classes and fails for any other head, e.g. 6625); PaddleOCR's unused ``mask``
    argument is not accepted.

    YAML: ``{name: CTCDKDLoss, temperature: 0.5, alpha: 1.0, beta: 1.0}`` (called as
    ``loss(logits_student, logits_teacher, label_ctc)``; KLCTCLogits ``mode: ctcdkd`` uses it).
    """

    def __init__(self, temperature=0.5, alpha=1.0, beta=1.0):
        super().__init__()
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def label_mask(self, targets, num_classes):
        """``[B, C]`` float mask of the classes present in each label, blank column zeroed."""
        if not isinstance(targets, paddle.Tensor):
            targets = paddle.to_tensor(targets)
        targets = targets.astype("int64")
        if targets.ndim != 2:
            raise ValueError(f"CTCDKDLoss: targets must be the CTC label [B, L], got "
                             f"{list(targets.shape)}")
        if bool((targets >= num_classes).any()) or bool((targets < 0).any()):
            raise ValueError(f"CTCDKDLoss: the label has a class outside [0, {num_classes}) of "
                             f"the {num_classes}-class logits")
        present = paddle.clip(F.one_hot(targets, num_classes).sum(axis=1), 0.0, 1.0)
        keep = paddle.concat([paddle.zeros([1]), paddle.ones([num_classes - 1])])
        return present * keep.astype(present.dtype)

    def sample_losses(self, logits_student, logits_teacher, targets):
        """``α·TCKD_b + β·NCKD_b`` per sample, ``[B]``."""
        _check_logits(logits_student, "CTCDKDLoss", "logits_student")
        if list(logits_teacher.shape) != list(logits_student.shape):
            raise ValueError(f"CTCDKDLoss: student {list(logits_student.shape)} and teacher "
                             f"{list(logits_teacher.shape)} logits differ in shape")
        num_classes = logits_student.shape[-1]
        gt = self.label_mask(targets, num_classes).astype(logits_student.dtype)
        if gt.shape[0] != logits_student.shape[0]:
            raise ValueError(f"CTCDKDLoss: label batch {gt.shape[0]} != logits batch "
                             f"{logits_student.shape[0]}")
        other = 1.0 - gt
        zs, zt = logits_student / self.temperature, logits_teacher / self.temperature
        ps, pt = F.softmax(zs, axis=-1).mean(axis=1), F.softmax(zt, axis=-1).mean(axis=1)
        bin_s = paddle.stack([(ps * gt).sum(axis=1), (ps * other).sum(axis=1)], axis=1)
        bin_t = paddle.stack([(pt * gt).sum(axis=1), (pt * other).sum(axis=1)], axis=1)
        tckd = kl_eps_rows(bin_s, bin_t)
        suppress = 1000.0 * gt.unsqueeze(1)
        ps2 = F.softmax(zs - suppress, axis=-1).mean(axis=1)
        pt2 = F.softmax(zt - suppress, axis=-1).mean(axis=1)
        nckd = kl_eps_rows(ps2, pt2)
        return self.alpha * tckd + self.beta * nckd

    def forward(self, logits_student, logits_teacher, targets):
        return self.sample_losses(logits_student, logits_teacher, targets).mean()


@LOSSES.register()
class KLCTCLogits(nn.Layer):
    """KL distillation of CTC logits ``[B, T, C]`` (student first, teacher second).

    With τ = 0.5, ``flip`` = class 0 (blank) multiplied by −1, and per sample b:

    - ``mean`` (PP-OCRv4): ``p = mean_t softmax(flip(z)/τ)``;
      ``l_b = Σ_c p_t·log((p_t + 1e-6)/(p_s + 1e-6) + 1e-6)``.
    - ``sum``: ``p = Σ_t softmax(z/τ)`` (no flip); ``l_b = Σ_c p_t·(log(p_t + 1e-6) − log p_s)``.
    - ``meanlog``: p as in ``mean``; ``l_b = ½·[K(log p_s, p_t) + K(log p_t, p_s)]`` with
      ``K(x, t) = mean_c t·(log(t + 1e-10) − x)``.
    - ``log``: ``p = softmax(z) + 1e-10`` per timestep (no τ, no flip);
      ``l_b = ½·[K(log p_s, p_t) + K(log p_t, p_s)]`` with ``K = Σ_c mean_t t·(log(t+1e-10) − x)``.
    - ``ctcdkd``: :class:`CTCDKDLoss` on the flipped logits with ``targets`` (the CTC label).

    The result is ``weight · reduce_b(l_b)``; ``reduction`` ``mean`` (default) gives
    PaddleOCR's value for mean/meanlog/log/ctcdkd (0-D), ``sum`` the sum, ``none`` the vector
    ``[B]``.

    Differences from PaddleOCR: ``weight`` and ``reduction`` are applied (PaddleOCR stores and
    ignores them); its ``sum`` mode returns the vector ``l_b / B`` instead of a reduction;
    ``ctcdkd`` works for any class count; an unknown mode fails at construction.

    YAML: ``{name: KLCTCLogits, mode: mean}`` (called as ``loss(student, teacher[, label_ctc])``)
    """

    MODES = ("mean", "sum", "meanlog", "log", "ctcdkd")

    def __init__(self, weight=1.0, reduction="mean", mode="mean"):
        super().__init__()
        if mode not in self.MODES:
            raise ConfigError(f"KLCTCLogits: mode must be one of {', '.join(self.MODES)}, got "
                              f"{mode!r}{suggest(mode, self.MODES)}")
        _check_reduction(reduction, "KLCTCLogits")
        self.weight = float(weight)
        self.reduction = reduction
        self.mode = mode
        self.t = CTC_LOGITS_TEMPERATURE
        self.ctc_dkd_loss = CTCDKDLoss()

    def _time_mean(self, logits):
        """``mean_t softmax(flip(z)/τ)``; keeps only ``z`` for backward (a [B, T, C] softmax
        otherwise), see :mod:`ppdistill.losses.rec_time_mean_softmax`."""
        return time_mean_softmax(logits, self.t, flip_blank=True)

    def sample_losses(self, stu_out, tea_out, targets=None):
        """Per-sample ``l_b`` of the configured mode, ``[B]``."""
        _check_logits(stu_out, "KLCTCLogits", "student logits")
        if list(tea_out.shape) != list(stu_out.shape):
            raise ValueError(f"KLCTCLogits: student {list(stu_out.shape)} and teacher "
                             f"{list(tea_out.shape)} logits differ in shape")
        if self.mode == "sum":
            p_s = F.softmax(stu_out / self.t, axis=-1).sum(axis=1)
            p_t = F.softmax(tea_out / self.t, axis=-1).sum(axis=1)
            return (p_t * (paddle.log(p_t + EPS) - paddle.log(p_s))).sum(axis=1)
        if self.mode == "log":
            p_s = F.softmax(stu_out, axis=-1) + 1e-10
            p_t = F.softmax(tea_out, axis=-1) + 1e-10
            return (_kd_rows(paddle.log(p_s), p_t) + _kd_rows(paddle.log(p_t), p_s)) / 2.0
        if self.mode == "ctcdkd":
            if targets is None:
                raise ValueError("KLCTCLogits: mode 'ctcdkd' needs the CTC label as targets")
            return self.ctc_dkd_loss.sample_losses(flip_blank(stu_out), flip_blank(tea_out),
                                                   targets)
        p_s, p_t = self._time_mean(stu_out), self._time_mean(tea_out)
        if self.mode == "mean":
            return kl_eps_rows(p_s, p_t)
        return (_kd_rows(paddle.log(p_s), p_t) + _kd_rows(paddle.log(p_t), p_s)) / 2.0

    def forward(self, stu_out, tea_out, targets=None):
        return self.weight * _reduce(self.sample_losses(stu_out, tea_out, targets),
                                     self.reduction)


@LOSSES.register()
class DistillCTCLogits(nn.Layer):
    """:class:`KLCTCLogits` between the CTC logits of model pairs (PP-OCRv4 rec distillation).

    For each pair (student, teacher): the outputs ``predicts[name][key]["ctc"]`` (with ``key``
    None: ``predicts[name]``, or its ``ctc`` entry when that is a MultiHead dict), which are
    train-mode logits ``[B, T, C]``; ``batch[1]`` (label_ctc) is passed as the targets (only
    ``mode: ctcdkd`` uses it). Keys ``{name}_{idx}`` (e.g. ``ctc_logits_0``) plus ``loss``.

    Args:
        model_name_pairs: ``[[Student, Teacher], ...]`` (a flat pair is accepted).
        key: output entry holding the MultiHead dict, e.g. ``head_out``.
        name: prefix of the term keys.
        reduction: ``mean`` (PaddleOCR's value), ``sum``, or ``none``.
        mode: KLCTCLogits mode; PaddleOCR always uses ``mean`` (it has no such argument).

    Differences from PaddleOCR: ``reduction`` is applied and ``mode`` selectable; the result also
    has ``loss``.

    YAML (ch_PP-OCRv4_rec_distill.yml)::

        - DistillCTCLogits:
            weight: 1.0
            reduction: mean
            model_name_pairs: [["Student", "Teacher"]]
            key: head_out
    """

    def __init__(self, model_name_pairs=(), key=None, name="ctc_logits", reduction="mean",
                 mode="mean"):
        super().__init__()
        self.name = name
        self.selector = PairSelector(model_name_pairs, key,
                                     loss_name=f"DistillCTCLogits({name})")
        self.kl = KLCTCLogits(reduction=reduction, mode=mode)

    def _ctc(self, output, model_name):
        if not isinstance(output, dict):
            return output
        if "ctc" not in output:
            raise ConfigError(f"DistillCTCLogits({self.name}): the output of {model_name!r} has "
                              f"no 'ctc' entry (available: {', '.join(map(str, output))})")
        return output["ctc"]

    def forward(self, predicts, batch=None):
        terms = {}
        targets = batch[1] if batch is not None and len(batch) > 1 else None
        for idx, first_name, second_name, _, first, second in self.selector.pairs(predicts):
            student, teacher = self._ctc(first, first_name), self._ctc(second, second_name)
            terms[f"{self.name}_{idx}"] = self.kl(student, teacher, targets)
        return sum_terms(terms)
