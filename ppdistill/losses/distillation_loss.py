"""Generic distillation losses between sub-models of a DistillationModel.

Each is called ``loss(predicts, batch)``: ``predicts`` is ``{model_name: output}``, ``batch`` the
list of tensors ``KeepKeys`` produced. Model/key/head/map selection is the shared
:mod:`ppdistill.losses.distillation_select`. Every result is a dict of 0-D terms with unique,
readable keys plus their sum under ``loss``.
"""
import paddle
from paddle import nn

from ppdistill.losses.basic_loss import DKDLoss, DistanceLoss, DMLLoss, KLDivLoss
from ppdistill.losses.distillation_aligned import ALIGNED_HEADS, aligned_rows
from ppdistill.losses.distillation_select import ModelSelector, PairSelector, sum_terms, to_scalar
from ppdistill.registry import LOSSES, ConfigError


def _term_key(name, idx, suffix=""):
    return f"{name}_{suffix}_{idx}" if suffix else f"{name}_{idx}"


def _is_aligned(multi_head, dis_head, maps_name=None):
    return bool(multi_head) and dis_head in ALIGNED_HEADS and maps_name is None


def _check_aligned_only(aligned, loss_name, **arguments):
    """Arguments that only the label-aligned path uses must not be set for another head."""
    for arg, value in arguments.items():
        if value is not None and not aligned:
            raise ConfigError(f"{loss_name}: {arg} applies only to a label-aligned head "
                              f"(multi_head: true and dis_head one of {', '.join(ALIGNED_HEADS)})")


@LOSSES.register()
class DistillationDMLLoss(nn.Layer):
    """Mutual learning between pairs of models (:class:`DMLLoss` on each pair).

    Keys ``{name}_{idx}`` (e.g. ``dml_ctc_0``), or ``{name}_{map}_{idx}`` with ``maps_name``
    (e.g. ``dml_thrink_maps_0``).

    Differences from PaddleOCR: ``maps_name`` may be a string or a list (PaddleOCR silently drops
    every map loss for a list); the per-sample ``[B]`` value of the map form is reduced to its
    mean, so the total loss is 0-D and the other terms' gradients are not multiplied by B.

    YAML (detection)::

        - DistillationDMLLoss:
            weight: 1.0
            model_name_pairs: [["Student", "Student2"]]
            maps_name: thrink_maps
            key: maps

    YAML (recognition)::

        - DistillationDMLLoss:
            weight: 1.0
            act: softmax
            use_log: true
            model_name_pairs: [["Student", "Teacher"]]
            key: head_out
            multi_head: true
            dis_head: ctc
            name: dml_ctc
    """

    def __init__(self, model_name_pairs=(), act=None, use_log=False, key=None, multi_head=False,
                 dis_head="ctc", maps_name=None, name="dml"):
        super().__init__()
        self.name = name
        self.selector = PairSelector(model_name_pairs, key, multi_head, dis_head, maps_name,
                                     loss_name=f"DistillationDMLLoss({name})")
        self.dml = DMLLoss(act=act, use_log=use_log)

    def forward(self, predicts, batch=None):
        terms = {}
        for idx, _, _, suffix, first, second in self.selector.pairs(predicts):
            terms[_term_key(self.name, idx, suffix)] = to_scalar(self.dml(first, second))
        return sum_terms(terms)


@LOSSES.register()
class DistillationKLDivLoss(nn.Layer):
    """KL(second ‖ first) per pair (:class:`KLDivLoss`); ``first`` is the student.

    - ``multi_head`` with a label-aligned attention head (``dis_head`` gtc/nrtr, PP-OCRv4, or
      sar, PP-OCRv3; see :mod:`ppdistill.losses.distillation_aligned`): the rows are aligned
      with the label as PaddleOCR does for gtc (target ``batch[2][:, 1:2+max(length)]``; SAR:
      the last logit step dropped, target ``batch[2][:, 1:]``) and the result is the mean over
      the non-padding rows of ``Σ_c t·(log(t + 1e-10) − log_softmax(s))`` (padding: NRTR 0,
      SAR ``<PAD>`` = the logits' class count, or ``ignore_index`` when set).
    - any other head, e.g. the CTC head ``[B, T, C]``: per-timestep distributions, summed over
      timesteps and averaged over the batch (``Σ_all e / B``). CTC timesteps do not line up with
      label positions, so no label mask applies. (PaddleOCR crashes on this path.)
    - ``maps_name``: per map, softmax over the last axis (W).

    Keys ``{name}_{idx}`` / ``{name}_{map}_{idx}``. Differences from PaddleOCR: the SAR head is
    aligned and masked (PaddleOCR applies the NRTR slicing to any head and fails on SAR).

    YAML::

        - DistillationKLDivLoss:
            weight: 1.0
            model_name_pairs: [["Student", "Teacher"]]
            key: head_out
            multi_head: true
            dis_head: gtc
            name: kl_div
    """

    def __init__(self, model_name_pairs=(), key=None, multi_head=False, dis_head="ctc",
                 maps_name=None, name="kl_div", ignore_index=None):
        super().__init__()
        self.name = name
        self.dis_head = dis_head
        self.ignore_index = ignore_index
        self.aligned = _is_aligned(multi_head, dis_head, maps_name)
        _check_aligned_only(self.aligned, f"DistillationKLDivLoss({name})",
                            ignore_index=ignore_index)
        self.selector = PairSelector(model_name_pairs, key, multi_head, dis_head, maps_name,
                                     loss_name=f"DistillationKLDivLoss({name})")
        self.kl = KLDivLoss()

    def forward(self, predicts, batch=None):
        terms = {}
        for idx, _, _, suffix, first, second in self.selector.pairs(predicts):
            mask = None
            if self.aligned:
                first, second, _, mask = aligned_rows(self.dis_head, batch, first, second,
                                                      self.name, self.ignore_index,
                                                      check_target=False)
            terms[_term_key(self.name, idx, suffix)] = self.kl(first, second, mask)
        return sum_terms(terms)


@LOSSES.register()
class DistillationDKDLoss(nn.Layer):
    """Decoupled KD per pair (:class:`DKDLoss`): ``α·TCKD + β·NCKD``.

    The per-row target class:

    - label-aligned attention head (``multi_head`` and ``dis_head`` gtc/nrtr/sar, see
      :mod:`ppdistill.losses.distillation_aligned`): gtc/nrtr (PP-OCRv4) use PaddleOCR's shift,
      target ``batch[2][:, 1:2+max(length)]`` for the logits ``[B, 1+max(length), C]``; sar
      drops the last logit step and uses ``batch[2][:, 1:]``. With ``mask_padding`` (default)
      both DKD averages run over the non-padding rows only (padding: NRTR 0; SAR ``<PAD>`` =
      the logits' class count, never 0; or ``ignore_index`` when set).
    - any other head (e.g. CTC ``[B, T, C]``, or maps): the teacher's (second model's) arg-max class
      at each timestep/position, over all rows; TCKD then measures agreement on the teacher's
      choice and NCKD the shape of the remaining distribution.

    Differences from PaddleOCR: PaddleOCR builds the same mask but DKD ignores it, so padding
    rows count with class 0 as their "gold" class; ``mask_padding: false`` reproduces those
    numbers exactly (SAR padding rows then also get class 0). Non-aligned heads and the SAR head
    work here (PaddleOCR fails there). Keys ``{name}_{idx}``.

    YAML (ch_PP-OCRv4_rec_distill.yml)::

        - DistillationDKDLoss:
            weight: 0.1
            model_name_pairs: [["Student", "Teacher"]]
            key: head_out
            multi_head: true
            dis_head: gtc
            temperature: 1.0
            alpha: 1.0
            beta: 2.0
            name: dkd
    """

    def __init__(self, model_name_pairs=(), key=None, multi_head=False, dis_head="ctc",
                 maps_name=None, name="dkd", temperature=1.0, alpha=1.0, beta=1.0,
                 mask_padding=True, ignore_index=None):
        super().__init__()
        self.name = name
        self.dis_head = dis_head
        self.mask_padding = bool(mask_padding)
        self.ignore_index = ignore_index
        self.aligned = _is_aligned(multi_head, dis_head, maps_name)
        _check_aligned_only(self.aligned, f"DistillationDKDLoss({name})",
                            ignore_index=ignore_index,
                            mask_padding=None if mask_padding else mask_padding)
        self.selector = PairSelector(model_name_pairs, key, multi_head, dis_head, maps_name,
                                     loss_name=f"DistillationDKDLoss({name})")
        self.dkd = DKDLoss(temperature=temperature, alpha=alpha, beta=beta)

    def forward(self, predicts, batch=None):
        terms = {}
        for idx, _, _, suffix, first, second in self.selector.pairs(predicts):
            if self.aligned:
                first, second, target, mask = aligned_rows(self.dis_head, batch, first, second,
                                                           self.name, self.ignore_index)
                mask = mask if self.mask_padding else None
            else:
                target, mask = paddle.argmax(second.detach(), axis=-1), None
            terms[_term_key(self.name, idx, suffix)] = self.dkd(first, second, target, mask)
        return sum_terms(terms)


def _masked_dml_rows(p1, p2, use_log):
    """Per-row symmetric KL of ``[B, T, C]`` probabilities, as ``[B·T]``."""
    num_classes = p1.shape[-1]
    p1, p2 = p1.reshape([-1, num_classes]), p2.reshape([-1, num_classes])
    if use_log:
        kl_12 = (p2 * (paddle.log(p2 + 1e-10) - paddle.log(p1))).sum(axis=1)
        kl_21 = (p1 * (paddle.log(p1 + 1e-10) - paddle.log(p2))).sum(axis=1)
        return (kl_12 + kl_21) / 2.0
    eps = 1e-5
    loss = (p2 * paddle.log((p2 + eps) / (p1 + eps) + eps)
            + p1 * paddle.log((p1 + eps) / (p2 + eps) + eps))
    return loss.sum(axis=1) / 2.0


@LOSSES.register()
class DistillationNRTRDMLLoss(nn.Layer):
    """Mutual learning between the label-aligned attention outputs (NRTR/GTC, SAR) of model
    pairs, padding positions excluded.

    What PaddleOCR's class was meant to do, made to work. PaddleOCR's version is broken in both
    branches: with ``multi_head`` it passes three tensors to the parent *wrapper's*
    ``forward(predicts, batch)`` (a TypeError), and without it the parent indexes a tensor by
    model name; it is also not importable through PaddleOCR's CombinedLoss.

    What it computes here, per pair ``(first, second)``:

    - ``multi_head`` and ``dis_head`` gtc/nrtr/sar: the two ``output[key][dis_head]`` logits
      are aligned with the label (:func:`~ppdistill.losses.distillation_aligned.aligned_rows`:
      gtc rows ``1 : 2+max(length)`` of ``batch[2]`` as targets, padding 0; sar: the last step
      dropped, padding ``<PAD>`` = the logits' class count, or ``ignore_index`` when set).
      With ``p = act(logits) + 1e-10`` (``act`` softmax or sigmoid; with ``act: null`` the
      inputs are used as probabilities) each row gets the symmetric KL

      - ``use_log: true``: ``½·[Σ_c p2·(log(p2+1e-10) − log p1) + Σ_c p1·(log(p1+1e-10) − log p2)]``
      - ``use_log: false``: ``½·Σ_c [p2·log((p2+ε)/(p1+ε)+ε) + p1·log((p1+ε)/(p2+ε)+ε)]``, ε = 1e-5

      and the term is the **mean over the non-padding rows** (0-D).
    - otherwise: :class:`DMLLoss` on the two selected tensors, exactly as
      :class:`DistillationDMLLoss` without ``maps_name``.

    Keys ``{name}_{idx}`` plus ``loss``. ``dis_head`` defaults to ``gtc`` here (PaddleOCR's
    inherited default ``ctc`` would pair CTC outputs with the NRTR label).

    YAML::

        - DistillationNRTRDMLLoss:
            weight: 0.5
            act: softmax
            use_log: true
            model_name_pairs: [["Student", "Teacher"]]
            key: head_out
            multi_head: true
            dis_head: gtc
            name: dml_gtc
    """

    def __init__(self, model_name_pairs=(), act=None, use_log=False, key=None, multi_head=False,
                 dis_head="gtc", name="dml", ignore_index=None):
        super().__init__()
        self.name = name
        self.dis_head = dis_head
        self.ignore_index = ignore_index
        self.use_log = bool(use_log)
        self.aligned = _is_aligned(multi_head, dis_head)
        _check_aligned_only(self.aligned, f"DistillationNRTRDMLLoss({name})",
                            ignore_index=ignore_index)
        self.selector = PairSelector(model_name_pairs, key, multi_head, dis_head,
                                     loss_name=f"DistillationNRTRDMLLoss({name})")
        self.dml = DMLLoss(act=act, use_log=use_log)

    def forward(self, predicts, batch=None):
        terms = {}
        for idx, _, _, _, first, second in self.selector.pairs(predicts):
            if not self.aligned:
                terms[_term_key(self.name, idx)] = to_scalar(self.dml(first, second))
                continue
            first, second, _, mask = aligned_rows(self.dis_head, batch, first, second,
                                                  self.name, self.ignore_index,
                                                  check_target=False)
            rows = _masked_dml_rows(self.dml._activate(first), self.dml._activate(second),
                                    self.use_log)
            mask = mask.astype(rows.dtype)
            terms[_term_key(self.name, idx)] = (rows * mask).sum() / paddle.clip(mask.sum(),
                                                                                   min=1.0)
        return sum_terms(terms)


@LOSSES.register()
class DistillationDistanceLoss(nn.Layer):
    """L1/L2/smooth-L1 distance between features of model pairs (:class:`DistanceLoss`).

    Key ``{name}_{mode}_{first}_{second}_{idx}``, e.g. ``loss_distance_l2_Student_Teacher_0``.
    Difference from PaddleOCR: the key carries the real mode (PaddleOCR writes ``_l2`` for
    every mode), and a single flat pair is accepted.

    YAML::

        - DistillationDistanceLoss:
            weight: 1.0
            mode: l2
            model_name_pairs: [["Student", "Teacher"]]
            key: backbone_out
    """

    def __init__(self, mode="l2", model_name_pairs=(), key=None, name="loss_distance",
                 reduction="mean", delta=1.0):
        super().__init__()
        self.name = name
        self.mode = mode
        self.distance = DistanceLoss(mode=mode, reduction=reduction, delta=delta)
        self.selector = PairSelector(model_name_pairs, key,
                                     loss_name=f"DistillationDistanceLoss({name})")

    def forward(self, predicts, batch=None):
        terms = {}
        for idx, first_name, second_name, _, first, second in self.selector.pairs(predicts):
            key = f"{self.name}_{self.mode}_{first_name}_{second_name}_{idx}"
            terms[key] = to_scalar(self.distance(first, second))
        return sum_terms(terms)


@LOSSES.register()
class DistillationLossFromOutput(nn.Layer):
    """A loss each model computed itself: ``output[key][dist_key]`` reduced, per model.

    Keys ``{name}_{model}``.

    YAML::

        - DistillationLossFromOutput:
            weight: 1.0
            model_name_list: ["Student"]
            key: loss
            reduction: mean
    """

    def __init__(self, reduction="none", model_name_list=(), dist_key=None, key="loss",
                 name="loss_re"):
        super().__init__()
        self.name = name
        self.reduction = reduction
        self.selector = ModelSelector(model_name_list, dist_key,
                                      loss_name=f"DistillationLossFromOutput({name})")
        self.key = key

    def forward(self, predicts, batch=None):
        terms = {}
        for _, model_name, output in self.selector.models(predicts):
            value = output[self.key] if isinstance(output, dict) else output
            if self.reduction == "sum":
                value = paddle.sum(value)
            terms[f"{self.name}_{model_name}"] = to_scalar(value)
        return sum_terms(terms)


# PaddleOCR's ``ppocr/losses/distillation_loss.py`` defines every Distillation* loss in one module;
# scripts import them from there. The same names import from this module (defined in focused
# modules, registered once there).
from ppdistill.losses.distillation_ctc_logits_loss import (  # noqa: E402
    CTCDKDLoss, DistillCTCLogits, KLCTCLogits)
from ppdistill.losses.distillation_det_loss import (  # noqa: E402
    DistillationDBLoss, DistillationDilaDBLoss)
from ppdistill.losses.distillation_rec_loss import (  # noqa: E402
    DistillationCTCLoss, DistillationNRTRLoss, DistillationSARLoss)
from ppdistill.losses.distillation_ser_loss import (  # noqa: E402
    DistillationSERDMLLoss, DistillationVQADistanceLoss, DistillationVQASerTokenLayoutLMLoss)

__all__ = [
    "DistillationDMLLoss", "DistillationKLDivLoss", "DistillationDKDLoss",
    "DistillationNRTRDMLLoss", "DistillationCTCLoss", "DistillationSARLoss",
    "DistillationNRTRLoss", "DistillationDBLoss", "DistillationDilaDBLoss",
    "DistillationDistanceLoss", "DistillationVQASerTokenLayoutLMLoss",
    "DistillationLossFromOutput", "DistillationSERDMLLoss", "DistillationVQADistanceLoss",
    "CTCDKDLoss", "KLCTCLogits", "DistillCTCLogits",
]
