"""VQASerTokenLayoutLMLoss: token classification loss of LayoutLM-style SER (key information
extraction), the base of PaddleOCR's KIE distillation losses."""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.registry import LOSSES

#: the SER batch (PaddleOCR's KIE KeepKeys order): [input_ids, bbox, attention_mask,
#: token_type_ids, image, labels, ...].
SER_ATTENTION_MASK = 2
SER_LABELS = 5


def active_rows(tensor, attention_mask, width, loss_name="loss"):
    """``tensor`` as rows ``[N, width]``, keeping only the tokens whose mask is 1."""
    if tensor.shape[-1] != width and width != 1:
        raise ValueError(f"{loss_name}: expected {width} values in the last axis, got "
                         f"{list(tensor.shape)}")
    rows = tensor.reshape([-1, width])
    if attention_mask is None:
        return rows
    keep = paddle.nonzero(attention_mask.reshape([-1]) == 1).reshape([-1])
    return paddle.gather(rows, keep, axis=0)


@LOSSES.register()
class VQASerTokenLayoutLMLoss(nn.Layer):
    """Mean cross-entropy of token logits ``[B, L, num_classes]`` over the tokens whose
    attention mask (``batch[2]``) is 1, against ``batch[5]`` (labels ``[B, L]``). Labels equal
    to −100 (paddle's default ignore index) are ignored. Returns ``{"loss": 0-D}``.

    Args:
        num_classes: number of SER classes.
        key: when the prediction is a dict, use ``predicts[key]``.

    YAML::

        Loss:
          name: VQASerTokenLayoutLMLoss
          num_classes: 7
          key: backbone_out
    """

    def __init__(self, num_classes, key=None):
        super().__init__()
        self.num_classes = int(num_classes)
        self.key = key

    def forward(self, predicts, batch):
        if isinstance(predicts, dict) and self.key is not None:
            predicts = predicts[self.key]
        mask = batch[SER_ATTENTION_MASK]
        logits = active_rows(predicts, mask, self.num_classes, "VQASerTokenLayoutLMLoss")
        labels = batch[SER_LABELS]
        labels = (labels if isinstance(labels, paddle.Tensor) else paddle.to_tensor(labels))
        labels = active_rows(labels.astype("int64").reshape([-1, 1]), mask, 1).reshape([-1])
        return {"loss": F.cross_entropy(logits, labels, reduction="mean")}
