"""Distillation losses for DB text detection: per-model DBLoss and teacher-dilated DB targets.

Both are called ``loss(predicts, batch)`` with ``predicts = {model_name: output}`` (a det output is
``{"maps": [B, C, H, W], ...}``) and the DB training batch ``[image, threshold_map,
threshold_mask, shrink_map, shrink_mask]``. Model/key selection is the shared
:mod:`ppdistill.losses.distillation_select`; every term is 0-D, ``loss`` is their sum.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.losses.det_basic_loss import BalanceLoss, DiceLoss
from ppdistill.losses.det_db_loss import DBLoss, check_train_maps, split_det_labels
from ppdistill.losses.distillation_select import ModelSelector, PairSelector, sum_terms
from ppdistill.registry import LOSSES, ConfigError


def _maps_of(output, loss_name, model_name):
    """The maps tensor of a selected output: the tensor itself, or ``output["maps"]``."""
    if isinstance(output, paddle.Tensor):
        return output
    if isinstance(output, dict) and "maps" in output:
        return output["maps"]
    keys = f" (keys: {', '.join(map(str, output))})" if isinstance(output, dict) else ""
    raise ValueError(f"{loss_name}: the selected output of {model_name!r} is a "
                     f"{type(output).__name__} without 'maps'{keys}; set `key` so that it "
                     f"selects the DB maps or a dict holding them")


def dilate_teacher_target(teacher_maps, thresh=0.3):
    """Binarise channel 0 (strict ``> thresh``) and dilate it with a 2×2 kernel of ones.

    Same result as OpenCV ``dilate`` with its default anchor (the kernel's bottom-right cell):
    ``out[y, x] = max(in[y−1..y, x−1..x])``, i.e. every positive pixel also lights the pixel
    below, to the right and diagonally below-right. Computed on the device by padding one zero
    row on top and one zero column on the left, then a 2×2 max-pool with stride 1. Returns a
    float32 ``[B, H, W]`` tensor that carries no gradient.
    """
    with paddle.no_grad():
        binary = (teacher_maps.detach()[:, 0:1, :, :] > thresh).astype("float32")
        padded = F.pad(binary, [1, 0, 1, 0], mode="constant", value=0.0, data_format="NCHW")
        dilated = F.max_pool2d(padded, kernel_size=2, stride=1)
    dilated = dilated[:, 0, :, :]
    dilated.stop_gradient = True
    return dilated


@LOSSES.register()
class DistillationDBLoss(nn.Layer):
    """:class:`DBLoss` on each model of ``model_name_list`` against the ground-truth maps.

    Keys ``{name}_{model}_{subkey}`` for every DBLoss term except its total, e.g.
    ``db_Student_loss_shrink_maps``, ``db_Student_loss_threshold_maps``,
    ``db_Student_loss_binary_maps``, ``db_Student_loss_cbn``; ``loss`` is their sum (0-D).
    With ``key`` None the model output dict itself (holding ``maps``) is used; with a key,
    ``output[key]`` (a dict holding ``maps``, or the maps tensor itself).

    Differences from PaddleOCR: ``balance_loss``, ``main_loss_type``, ``alpha``, ``beta``,
    ``ohem_ratio`` and ``eps`` are honoured (PaddleOCR silently uses the DBLoss defaults), ``key``
    is honoured (PaddleOCR forces None), and every term including ``loss_cbn`` and ``loss`` is
    0-D (PaddleOCR's ``loss`` has shape [1]).

    YAML::

        - DistillationDBLoss:
            weight: 1.0
            model_name_list: ["Student", "Student2"]
            name: db
            balance_loss: true
            main_loss_type: DiceLoss
            alpha: 5
            beta: 10
            ohem_ratio: 3
    """

    def __init__(self, model_name_list=(), balance_loss=True, main_loss_type="DiceLoss", alpha=5,
                 beta=10, ohem_ratio=3, eps=1e-6, key=None, name="db"):
        super().__init__()
        self.name = name
        self.loss_name = f"DistillationDBLoss({name})"
        self.selector = ModelSelector(model_name_list, key=key, loss_name=self.loss_name)
        self.db_loss = DBLoss(balance_loss=balance_loss, main_loss_type=main_loss_type,
                              alpha=alpha, beta=beta, ohem_ratio=ohem_ratio, eps=eps)

    def forward(self, predicts, batch):
        terms = {}
        for _, model_name, output in self.selector.models(predicts):
            if not isinstance(output, dict):
                output = {"maps": _maps_of(output, self.loss_name, model_name)}
            for sub_key, value in self.db_loss(output, batch).items():
                if sub_key != "loss":
                    terms[f"{self.name}_{model_name}_{sub_key}"] = value
        return sum_terms(terms)


@LOSSES.register()
class DistillationDilaDBLoss(nn.Layer):
    """A student learns the teacher's dilated text regions (PP-OCRv3 CML detection).

    For each pair ``(student, teacher)``, with ``S``/``T`` their maps (``[B, 3, H, W]`` for the
    student; the teacher may give 3 channels or the 1-channel eval output) and
    ``D = dilate_2x2(T[:,0] > 0.3)`` (see :func:`dilate_teacher_target`; no gradient)::

        term = alpha · BalanceLoss(S[:,0], D, shrink_mask) + DiceLoss(S[:,2], D, shrink_mask)

    where ``shrink_mask = batch[4]`` and the BalanceLoss uses ``balance_loss``,
    ``main_loss_type``, ``negative_ratio = ohem_ratio`` and ``eps``. Stored under
    ``{name}_{student}_{teacher}``, e.g. ``dila_dbloss_Student_Teacher``; ``loss`` is the sum.
    ``beta`` only exists for config compatibility: no threshold-map term is computed (as in
    PaddleOCR). With ``key`` None the model output dict itself (holding ``maps``) is used.

    Differences from PaddleOCR: ``balance_loss``, ``main_loss_type``, ``alpha``, ``ohem_ratio``
    and ``eps`` are honoured (PaddleOCR uses the defaults), ``key: null`` works (PaddleOCR
    crashes), the dilation runs on the device instead of a numpy/OpenCV round trip (same
    result), and all terms are 0-D.

    YAML::

        - DistillationDilaDBLoss:
            weight: 1.0
            model_name_pairs: [["Student", "Teacher"], ["Student2", "Teacher"]]
            key: maps
            name: dila_dbloss
    """

    def __init__(self, model_name_pairs=(), key=None, balance_loss=True,
                 main_loss_type="DiceLoss", alpha=5, beta=10, ohem_ratio=3, eps=1e-6,
                 name="dila_dbloss"):
        super().__init__()
        self.name = name
        self.loss_name = f"DistillationDilaDBLoss({name})"
        self.selector = PairSelector(model_name_pairs, key, loss_name=self.loss_name)
        seen = set()
        for pair in self.selector.model_name_pairs:
            if pair in seen:
                raise ConfigError(f"{self.loss_name}: model pair {list(pair)} is listed twice")
            seen.add(pair)
        self.alpha = alpha
        self.beta = beta
        self.bce_loss = BalanceLoss(balance_loss=balance_loss, main_loss_type=main_loss_type,
                                    negative_ratio=ohem_ratio, eps=eps)
        self.dice_loss = DiceLoss(eps=eps)

    def forward(self, predicts, batch):
        shrink_mask = split_det_labels(batch, self.loss_name)[3]
        terms = {}
        for _, student_name, teacher_name, _, student, teacher in self.selector.pairs(predicts):
            student_maps = _maps_of(student, self.loss_name, student_name)
            teacher_maps = _maps_of(teacher, self.loss_name, teacher_name)
            check_train_maps(student_maps, self.loss_name, student_name)
            if teacher_maps.ndim != 4 or teacher_maps.shape[1] < 1:
                raise ValueError(f"{self.loss_name}: the maps of {teacher_name!r} must be "
                                 f"[B, C, H, W], got {list(teacher_maps.shape)}")
            target = dilate_teacher_target(teacher_maps)
            shrink = self.alpha * self.bce_loss(student_maps[:, 0, :, :], target, shrink_mask)
            binary = self.dice_loss(student_maps[:, 2, :, :], target, shrink_mask)
            terms[f"{self.name}_{student_name}_{teacher_name}"] = shrink + binary
        return sum_terms(terms)
