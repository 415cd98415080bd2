"""NRTRLoss: (label-smoothed) cross-entropy of the NRTR/GTC decoder."""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.ops.log_softmax import log_softmax
from ppdistill.registry import LOSSES

SMOOTHING_EPS = 0.1


def _tensor(value):
    return value if isinstance(value, paddle.Tensor) else paddle.to_tensor(value)


def nrtr_targets(predicts, batch):
    """``(logits [N, C], targets [N])`` for the NRTR layout.

    ``max_len = max(batch[2])``; the targets are ``batch[1][:, 1 : 2 + max_len]`` (the start
    token dropped, the end token kept), flattened; the logits [B, max_len + 1, C] flattened.
    """
    label = _tensor(batch[1]).astype("int64")
    max_len = int(_tensor(batch[2]).max())
    targets = label[:, 1:2 + max_len].reshape([-1])
    num_classes = predicts.shape[-1]
    logits = predicts.reshape([-1, num_classes])
    if logits.shape[0] != targets.shape[0]:
        raise ValueError(f"NRTR loss: logits {list(predicts.shape)} do not match the label "
                         f"positions 1..{1 + max_len} of a batch of {label.shape[0]} "
                         f"(expected {max_len + 1} steps)")
    return logits, targets


def smoothed_cross_entropy(logits, targets, pad_index):
    """Label-smoothed CE (ε = 0.1) averaged over positions whose target is not ``pad_index``.

    ``q = onehot·(1 − ε) + (1 − onehot)·ε/(C − 1)`` (the off-target mass is spread over the
    C − 1 other classes); per position ``−Σ_c q·log_softmax(logits)``. ``pad_index`` None
    averages over every position.
    """
    num_classes = logits.shape[1]
    one_hot = F.one_hot(targets, num_classes).astype(logits.dtype)
    soft = one_hot * (1 - SMOOTHING_EPS) + (1 - one_hot) * SMOOTHING_EPS / (num_classes - 1)
    loss = -(soft * log_softmax(logits, axis=1)).sum(axis=1)
    if pad_index is None:
        return loss.mean()
    return paddle.masked_select(loss, targets != pad_index).mean()


def plain_cross_entropy(logits, targets, ignore_index):
    """Mean CE; positions with target ``ignore_index`` excluded (none when it is negative)."""
    if ignore_index is not None and ignore_index >= 0:
        return F.cross_entropy(logits, targets, ignore_index=int(ignore_index), reduction="mean")
    return F.cross_entropy(logits, targets, reduction="mean")


@LOSSES.register()
class NRTRLoss(nn.Layer):
    """Cross-entropy of NRTR logits [B, max_len + 1, C] against the NRTR label.

    Targets are ``batch[1][:, 1 : 2 + max(batch[2])]`` (see :func:`nrtr_targets`).
    With ``smoothing``: label-smoothed CE (ε = 0.1, off-target mass ε/(C−1)) averaged over
    positions whose target is not the padding ``ignore_index``; without: plain mean CE with
    ``ignore_index`` excluded. Returns ``{"loss": 0-D}``.

    Args:
        smoothing: use label smoothing.
        ignore_index: padding index (0 for NRTRLabelEncode); negative = count every position.

    Difference from PaddleOCR: a negative ``ignore_index`` counts every position (PaddleOCR
    fails without smoothing and still masks index 0 with smoothing).

    YAML::

        - NRTRLoss:
            smoothing: false
    """

    def __init__(self, smoothing=True, ignore_index=0):
        super().__init__()
        self.smoothing = bool(smoothing)
        self.ignore_index = int(ignore_index)

    def forward(self, predicts, batch):
        logits, targets = nrtr_targets(predicts, batch)
        if self.smoothing:
            pad = self.ignore_index if self.ignore_index >= 0 else None
            return {"loss": smoothed_cross_entropy(logits, targets, pad)}
        return {"loss": plain_cross_entropy(logits, targets, self.ignore_index)}
