"""Generic distillation losses between sub-models of a DistillationModel.

Each is called ``loss(predicts, batch)``: ``predicts`` is ``{model_name: output}``, ``batch`` the
list of tensors ``KeepKeys`` produced. Model/key/head/map selection is the shared
:mod:`ppdistill.losses.distillation_select`. Every result is a dict of 0-D terms with unique,
readable keys plus their sum under ``loss``.
"""
import paddle
from paddle import nn

from ppdistill.losses.basic_loss import DKDLoss, DistanceLoss, DMLLoss, KLDivLoss
from ppdistill.losses.distillation_select import ModelSelector, PairSelector, sum_terms, to_scalar
from ppdistill.registry import LOSSES

#: heads whose output positions line up with the attention label (start token dropped).
ALIGNED_HEADS = ("gtc", "nrtr")


def _term_key(name, idx, suffix=""):
    return f"{name}_{suffix}_{idx}" if suffix else f"{name}_{idx}"


def _aligned_target(batch, loss_name):
    """PaddleOCR's NRTR target: ``batch[2][:, 1 : 2 + max(length)]`` and its ``!= 0`` mask."""
    if batch is None or len(batch) < 4:
        raise ValueError(f"{loss_name}: the aligned-head path needs the batch "
                         f"[image, label_ctc, label_gtc, length, ...]")
    max_len = int(paddle.max(batch[3]).item())
    target = batch[2][:, 1:2 + max_len]
    return target, (target != 0).reshape([-1])


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

    - ``multi_head`` with an aligned attention head (``dis_head`` gtc/nrtr, PP-OCRv4): target
      ``batch[2][:, 1:2+max(length)]``, rows with target 0 (padding) masked out.
    - any other head, e.g. the CTC head ``[B, T, C]``: per-timestep distributions, summed over
      timesteps and averaged over the batch (``Σ_all e / B``). CTC timesteps do not line up with
      label positions, so no label mask applies. (PaddleOCR crashes on this path.)
    - ``maps_name``: per map, softmax over the last axis (W).

    Keys ``{name}_{idx}`` / ``{name}_{map}_{idx}``.

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
                 maps_name=None, name="kl_div"):
        super().__init__()
        self.name = name
        self.masked = bool(multi_head) and dis_head in ALIGNED_HEADS and maps_name is None
        self.selector = PairSelector(model_name_pairs, key, multi_head, dis_head, maps_name,
                                     loss_name=f"DistillationKLDivLoss({name})")
        self.kl = KLDivLoss()

    def forward(self, predicts, batch=None):
        terms = {}
        mask = _aligned_target(batch, self.name)[1] if self.masked else None
        for idx, _, _, suffix, first, second in self.selector.pairs(predicts):
            terms[_term_key(self.name, idx, suffix)] = self.kl(first, second, mask)
        return sum_terms(terms)


@LOSSES.register()
class DistillationDKDLoss(nn.Layer):
    """Decoupled KD per pair (:class:`DKDLoss`): ``α·TCKD + β·NCKD``.

    The per-row target class:

    - aligned attention head (``multi_head`` and ``dis_head`` gtc/nrtr): the label
      ``batch[2][:, 1:2+max(length)]``; padding rows (target 0) are masked out.
    - any other head (e.g. CTC ``[B, T, C]``, or maps): the teacher's (second model's) arg-max class
      at each timestep/position, over all rows; TCKD then measures agreement on the teacher's
      choice and NCKD the shape of the remaining distribution.

    Differences from PaddleOCR: the mask is honoured, and non-aligned heads work (PaddleOCR fails
    there). Keys ``{name}_{idx}``.

    YAML::

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
                 maps_name=None, name="dkd", temperature=1.0, alpha=1.0, beta=1.0):
        super().__init__()
        self.name = name
        self.aligned = bool(multi_head) and dis_head in ALIGNED_HEADS and maps_name is None
        self.selector = PairSelector(model_name_pairs, key, multi_head, dis_head, maps_name,
                                     loss_name=f"DistillationDKDLoss({name})")
        self.dkd = DKDLoss(temperature=temperature, alpha=alpha, beta=beta)

    def forward(self, predicts, batch=None):
        terms = {}
        if self.aligned:
            target, mask = _aligned_target(batch, self.name)
        for idx, _, _, suffix, first, second in self.selector.pairs(predicts):
            if not self.aligned:
                target, mask = paddle.argmax(second.detach(), axis=-1), None
            terms[_term_key(self.name, idx, suffix)] = self.dkd(first, second, target, mask)
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
