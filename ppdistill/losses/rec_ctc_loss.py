"""CTCLoss: connectionist temporal classification loss of a recognition head."""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.registry import LOSSES


def _as_tensor(value, dtype):
    if not isinstance(value, paddle.Tensor):
        value = paddle.to_tensor(value)
    return value.astype(dtype)


@LOSSES.register()
class CTCLoss(nn.Layer):
    """Mean CTC loss over the batch.

    ``loss(predicts, batch)``: ``predicts`` are raw logits [B, T, C] (a list/tuple: its last
    element); ``batch[1]`` the zero-padded labels [B, L] (class 0 is the blank) and ``batch[2]``
    the label lengths [B]. Per sample ``l_b = −log Σ_alignments Π_t softmax(logits)[t, π_t]``
    over all T steps (not divided by any length); with ``use_focal_loss``
    ``l_b ← l_b · (1 − exp(−l_b))²``. Returns ``{"loss": mean_b l_b}`` (0-D).

    Args:
        use_focal_loss: weight hard samples more (focal CTC).

    YAML::

        Loss:
          name: CTCLoss
          use_focal_loss: false
    """

    def __init__(self, use_focal_loss=False):
        super().__init__()
        self.use_focal_loss = bool(use_focal_loss)

    def forward(self, predicts, batch):
        if isinstance(predicts, (list, tuple)):
            predicts = predicts[-1]
        if isinstance(predicts, dict):
            raise ValueError(f"CTCLoss: got a dict of head outputs ({', '.join(map(str, predicts))});"
                             f" use MultiLoss, or multi_head in DistillationCTCLoss")
        if not isinstance(predicts, paddle.Tensor) or predicts.ndim != 3:
            raise ValueError(f"CTCLoss: expected logits [B, T, C], got "
                             f"{getattr(predicts, 'shape', type(predicts).__name__)}")
        batch_size, steps = predicts.shape[0], predicts.shape[1]
        logits = predicts.transpose([1, 0, 2])
        labels = _as_tensor(batch[1], "int32")
        label_lengths = _as_tensor(batch[2], "int64").reshape([-1])
        input_lengths = paddle.full([batch_size], steps, dtype="int64")
        loss = F.ctc_loss(logits, labels, input_lengths, label_lengths, blank=0,
                          reduction="none").reshape([-1])
        if self.use_focal_loss:
            weight = (1.0 - paddle.exp(-loss)) ** 2
            loss = loss * weight
        return {"loss": loss.mean()}
