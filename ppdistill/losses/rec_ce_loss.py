"""RecCELoss: PaddleOCR's recognition CELoss (rec_ce_loss.py) for NRTR, ViTSTR and ABINet."""
import paddle
from paddle import nn

from ppdistill.losses.rec_nrtr_loss import (nrtr_targets, plain_cross_entropy,
                                            smoothed_cross_entropy)
from ppdistill.registry import LOSSES


def _tensor(value):
    return value if isinstance(value, paddle.Tensor) else paddle.to_tensor(value)


@LOSSES.register("RecCELoss")
class RecCELoss(nn.Layer):
    """PaddleOCR's ``ppocr/losses/rec_ce_loss.py`` CELoss, registered as ``RecCELoss`` (the name
    ``CELoss`` is the basic CE of basic_loss.py).

    ``loss(predicts, batch)`` with ``batch[1]`` the label [B, L]:

    - ``predicts`` a dict (ABINet): per branch the CE of its logits [B, L, C] (or a list of
      such, each against the label) over all positions, keys ``{branch}_loss``, plus ``loss``
      = their sum.
    - ``with_all`` (ViTSTR): CE over every position of ``batch[1]``.
    - otherwise (NRTR): targets ``batch[1][:, 1 : 2 + max(batch[2])]``; with ``smoothing`` the
      ε = 0.1 smoothed CE over non-padding positions (padding = ``ignore_index`` if ≥ 0, else
      0, as PaddleOCR); without, mean CE excluding ``ignore_index`` (none when negative, so
      padding zeros count as class-0 targets, as in PaddleOCR).

    The inner CE is mean-reduced; ``ignore_index < 0`` means no ignored class.
    Returns ``{"loss": 0-D}`` (plus the branch terms for a dict).

    YAML::

        - RecCELoss:
            smoothing: false
            ignore_index: 0
    """

    def __init__(self, smoothing=False, with_all=False, ignore_index=-1):
        super().__init__()
        self.smoothing = bool(smoothing)
        self.with_all = bool(with_all)
        self.ignore_index = int(ignore_index)

    def _ce(self, logits, targets):
        return plain_cross_entropy(logits, targets, self.ignore_index)

    def _flat_ce(self, logits, label):
        if isinstance(logits, (list, tuple)):
            label = paddle.concat([label] * len(logits), axis=0)
            logits = paddle.concat(list(logits), axis=0)
        return self._ce(logits.reshape([-1, logits.shape[-1]]), label.reshape([-1]))

    def forward(self, predicts, batch):
        label = _tensor(batch[1]).astype("int64")
        if isinstance(predicts, dict):
            terms = {f"{branch}_loss": self._flat_ce(logits, label)
                     for branch, logits in predicts.items()}
            terms["loss"] = paddle.add_n(list(terms.values()))
            return terms
        if self.with_all:
            return {"loss": self._flat_ce(predicts, label)}
        logits, targets = nrtr_targets(predicts, batch)
        if self.smoothing:
            pad = self.ignore_index if self.ignore_index >= 0 else 0
            return {"loss": smoothed_cross_entropy(logits, targets, pad)}
        return {"loss": self._ce(logits, targets)}
