"""Distillation losses of LayoutLM-style SER (key information extraction) models.

PaddleOCR's KIE distillation configs pair two SER models; the token-level outputs are compared
only on real tokens (``attention_mask`` = ``batch[2]`` equal to 1). The batch follows the KIE
KeepKeys order ``[input_ids, bbox, attention_mask, token_type_ids, image, labels, ...]``.
"""
from paddle import nn

from ppdistill.losses.basic_loss import DistanceLoss, DMLLoss
from ppdistill.losses.distillation_select import ModelSelector, PairSelector, sum_terms, to_scalar
from ppdistill.losses.vqa_token_layoutlm_loss import (SER_ATTENTION_MASK, VQASerTokenLayoutLMLoss,
                                                      active_rows)
from ppdistill.registry import LOSSES


def _attention_mask(batch):
    return batch[SER_ATTENTION_MASK] if batch is not None and len(batch) > 2 else None


@LOSSES.register()
class DistillationVQASerTokenLayoutLMLoss(nn.Layer):
    """:class:`VQASerTokenLayoutLMLoss` (token CE over attention-masked tokens) of each model.

    Keys ``{name}_{model}`` plus ``loss``.

    YAML::

        - DistillationVQASerTokenLayoutLMLoss:
            weight: 1.0
            model_name_list: ["Student", "Teacher"]
            key: backbone_out
            num_classes: 7
    """

    def __init__(self, num_classes, model_name_list=(), key=None, name="loss_ser"):
        super().__init__()
        self.name = name
        self.selector = ModelSelector(model_name_list, key,
                                      loss_name=f"DistillationVQASerTokenLayoutLMLoss({name})")
        self.ser_loss = VQASerTokenLayoutLMLoss(num_classes=num_classes)

    def forward(self, predicts, batch):
        terms = {}
        for _, model_name, output in self.selector.models(predicts):
            terms[f"{self.name}_{model_name}"] = self.ser_loss(output, batch)["loss"]
        return sum_terms(terms)


@LOSSES.register()
class DistillationSERDMLLoss(nn.Layer):
    """Mutual learning (:class:`DMLLoss`) between the token logits of model pairs, on the
    tokens whose attention mask is 1: both outputs become rows ``[N, num_classes]``, padding
    tokens are dropped, then ``DMLLoss(act, use_log)`` (default softmax + log:
    ``½·[KD(log p1, p2) + KD(log p2, p1)]`` with ``KD = Σ t·(log(t+1e-10) − x) / N``).

    Keys ``{name}_{idx}`` plus ``loss``. Difference from PaddleOCR: ``num_classes`` is checked
    against the logits (PaddleOCR accepts and ignores it).

    YAML::

        - DistillationSERDMLLoss:
            weight: 1.0
            act: softmax
            use_log: true
            model_name_pairs: [["Student", "Teacher"]]
            key: backbone_out
            num_classes: 7
    """

    def __init__(self, act="softmax", use_log=True, num_classes=7, model_name_pairs=(), key=None,
                 name="loss_dml_ser"):
        super().__init__()
        self.name = name
        self.num_classes = int(num_classes)
        self.selector = PairSelector(model_name_pairs, key,
                                     loss_name=f"DistillationSERDMLLoss({name})")
        self.dml = DMLLoss(act=act, use_log=use_log)

    def forward(self, predicts, batch):
        terms, mask = {}, _attention_mask(batch)
        for idx, _, _, _, first, second in self.selector.pairs(predicts):
            first = active_rows(first, mask, self.num_classes, self.name)
            second = active_rows(second, mask, self.num_classes, self.name)
            terms[f"{self.name}_{idx}"] = to_scalar(self.dml(first, second))
        return sum_terms(terms)


@LOSSES.register()
class DistillationVQADistanceLoss(nn.Layer):
    """L1/L2/smooth-L1 distance between token features of model pairs on real tokens.

    Per pair: ``output[key]``; with ``index`` the slice ``[:, index]`` of a 4-D output (e.g. one
    hidden layer of a stacked ``[B, layers, L, D]`` tensor); then, with an attention mask,
    the first ``L`` tokens (L = mask length), rows ``[N, D]``, tokens with mask 1 only; then
    :class:`DistanceLoss`.

    Keys ``{name}_{mode}_{first}_{second}_{idx}`` plus ``loss``. Difference from PaddleOCR: the
    key carries the real mode (PaddleOCR writes ``_l2`` for every mode).

    YAML::

        - DistillationVQADistanceLoss:
            weight: 0.5
            mode: l2
            model_name_pairs: [["Student", "Teacher"]]
            key: hidden_states_5
            name: loss_5
    """

    def __init__(self, mode="l2", model_name_pairs=(), key=None, index=None,
                 name="loss_distance", reduction="mean", delta=1.0):
        super().__init__()
        self.name = name
        self.mode = mode
        self.index = index
        self.selector = PairSelector(model_name_pairs, key,
                                     loss_name=f"DistillationVQADistanceLoss({name})")
        self.distance = DistanceLoss(mode=mode, reduction=reduction, delta=delta)

    def _tokens(self, out, mask):
        if self.index is not None:
            out = out[:, self.index]
        if mask is None:
            return out
        out = out[:, :mask.shape[-1]]
        return active_rows(out, mask, out.shape[-1], self.name)

    def forward(self, predicts, batch):
        terms, mask = {}, _attention_mask(batch)
        for idx, first_name, second_name, _, first, second in self.selector.pairs(predicts):
            key = f"{self.name}_{self.mode}_{first_name}_{second_name}_{idx}"
            terms[key] = to_scalar(self.distance(self._tokens(first, mask),
                                                 self._tokens(second, mask)))
        return sum_terms(terms)
