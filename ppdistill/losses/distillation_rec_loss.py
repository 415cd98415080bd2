"""Per-model recognition task losses of a DistillationModel: CTC, SAR and NRTR.

Each is called ``loss(predicts, batch)`` with ``predicts = {model_name: output}`` and the
MultiHead batch ``[image, label_ctc, label_sar|label_gtc, length, valid_ratio]`` (§0 of the
reference). Model / ``key`` / ``multi_head`` selection is the shared
:class:`~ppdistill.losses.distillation_select.ModelSelector`. The result has one 0-D term per
model, keyed ``{name}_{model}_{idx}`` (``idx`` = position in ``model_name_list``), plus
``loss``, their sum.
"""
from paddle import nn

from ppdistill.losses.distillation_select import ModelSelector, sum_terms
from ppdistill.losses.rec_ce_loss import RecCELoss
from ppdistill.losses.rec_ctc_loss import CTCLoss
from ppdistill.losses.rec_multi_loss import ctc_batch, second_batch
from ppdistill.losses.rec_sar_loss import PADDLEOCR_SAR_IGNORE_INDEX, SARLoss
from ppdistill.registry import LOSSES


class _PerModelLoss(nn.Layer):
    """Runs ``self.task_loss`` on every selected model output (shared by the three losses)."""

    dis_head = "ctc"

    def __init__(self, model_name_list, key, multi_head, name):
        super().__init__()
        self.name = name
        self.multi_head = bool(multi_head)
        self.selector = ModelSelector(model_name_list, key=key, multi_head=self.multi_head,
                                      dis_head=self.dis_head,
                                      loss_name=f"{type(self).__name__}({name})")

    def _task_batch(self, batch):
        return batch

    def forward(self, predicts, batch):
        task_batch = self._task_batch(batch) if self.multi_head else batch
        terms = {}
        for idx, model_name, output in self.selector.models(predicts):
            terms[f"{self.name}_{model_name}_{idx}"] = self.task_loss(output, task_batch)["loss"]
        return sum_terms(terms)


@LOSSES.register()
class DistillationCTCLoss(_PerModelLoss):
    """:class:`CTCLoss` of each model in ``model_name_list`` against the CTC label.

    With ``multi_head`` the ``ctc`` branch of the (``key``-selected) output is used and the
    batch's third slot (the SAR/GTC label) is removed, giving ``[image, label_ctc, length,
    ...]``; otherwise the output and the batch are used as they are. Keys
    ``{name}_{model}_{idx}``, e.g. ``loss_ctc_Student_0``, plus ``loss``.

    Args:
        model_name_list: sub-models to train, e.g. ``[Student, Teacher]``.
        key: output entry to use, e.g. ``head_out``.
        multi_head: the selected output is a MultiHead dict; take its ``ctc`` branch.
        name: prefix of the term keys.
        use_focal_loss: focal CTC (not available in PaddleOCR's wrapper, which always uses
            plain CTC; default off, as there).

    Difference from PaddleOCR: the result also has ``loss`` (the sum of the terms).

    YAML::

        - DistillationCTCLoss:
            weight: 1.0
            model_name_list: ["Student", "Teacher"]
            key: head_out
            multi_head: true
    """

    dis_head = "ctc"

    def __init__(self, model_name_list, key=None, multi_head=False, name="loss_ctc",
                 use_focal_loss=False):
        super().__init__(model_name_list, key, multi_head, name)
        self.task_loss = CTCLoss(use_focal_loss=use_focal_loss)

    def _task_batch(self, batch):
        return ctc_batch(batch)


@LOSSES.register()
class DistillationSARLoss(_PerModelLoss):
    """:class:`SARLoss` of each model in ``model_name_list`` against the SAR label.

    With ``multi_head`` the ``sar`` branch is used and the batch becomes ``[image, label_sar,
    length, ...]`` (the CTC label removed). Keys ``{name}_{model}_{idx}``, e.g.
    ``loss_sar_Student_0``, plus ``loss``.

    Args:
        model_name_list, key, multi_head, name: as :class:`DistillationCTCLoss`.
        ignore_index: SAR padding index. PaddleOCR's default 92 is kept for a hand-built loss;
            ppdistill's tools replace it (when the config does not set it) with the padding
            index derived from the dictionary (CTC classes + 1), as PaddleOCR's train.py does
            only when this loss is the last entry of the list.

    Difference from PaddleOCR: the result also has ``loss``.

    YAML::

        - DistillationSARLoss:
            weight: 1.0
            model_name_list: ["Student", "Teacher"]
            key: head_out
            multi_head: true
    """

    dis_head = "sar"
    #: the trainer sets ``ignore_index`` = CTC classes + 1 (the <PAD> index) when not given.
    ignore_index_from_dictionary = 1

    def __init__(self, model_name_list, key=None, multi_head=False, name="loss_sar",
                 ignore_index=PADDLEOCR_SAR_IGNORE_INDEX):
        super().__init__(model_name_list, key, multi_head, name)
        self.task_loss = SARLoss(ignore_index=ignore_index)

    def _task_batch(self, batch):
        return second_batch(batch)


@LOSSES.register()
class DistillationNRTRLoss(_PerModelLoss):
    """:class:`~ppdistill.losses.rec_ce_loss.RecCELoss` (the NRTR path) of each model against
    the GTC label.

    With ``multi_head`` the ``gtc`` branch is used and the batch becomes ``[image, label_gtc,
    length, ...]`` (PP-OCRv4 batch layout ``[image, label_ctc, label_gtc, length,
    valid_ratio]``). Targets ``label_gtc[:, 1 : 2 + max(length)]`` against the logits
    ``[B, 1 + max(length), C]``:

    - ``smoothing: true``: label-smoothed CE (ε = 0.1, off-target mass ε/(C−1)) averaged over
      the non-padding positions (target ≠ 0, or ≠ ``ignore_index`` when that is ≥ 0);
    - ``smoothing: false`` (the PP-OCRv4 config): plain mean cross-entropy over **all**
      ``B·(1 + max(length))`` positions, padding zeros counted as class-0 targets, exactly as
      PaddleOCR; ``ignore_index: 0`` excludes the padding instead.

    Keys ``{name}_{model}_{idx}``, e.g. ``loss_nrtr_Student_0``, plus ``loss``.

    Args:
        model_name_list, key, multi_head, name: as :class:`DistillationCTCLoss`.
        smoothing: label smoothing (PP-OCRv4's config sets false).
        ignore_index: class excluded from the plain CE; −1 (default, as PaddleOCR) counts
            every position.
        with_all: CE over every label position instead of the NRTR slicing.

    Difference from PaddleOCR: PaddleOCR drops ``ignore_index`` and ``with_all`` (always −1
    and false); here they are honoured. The result also has ``loss``.

    YAML::

        - DistillationNRTRLoss:
            weight: 1.0
            smoothing: false
            model_name_list: ["Student"]
            key: head_out
            multi_head: true
    """

    dis_head = "gtc"

    def __init__(self, model_name_list, key=None, multi_head=False, smoothing=True,
                 name="loss_nrtr", ignore_index=-1, with_all=False):
        super().__init__(model_name_list, key, multi_head, name)
        self.task_loss = RecCELoss(smoothing=smoothing, with_all=with_all,
                                   ignore_index=ignore_index)

    def _task_batch(self, batch):
        return second_batch(batch)
