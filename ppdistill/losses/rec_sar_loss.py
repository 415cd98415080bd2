"""SARLoss: cross-entropy of the SAR decoder against the shifted SAR label."""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.registry import LOSSES

#: PaddleOCR's default; the padding index of the 6623-character Chinese dictionary with space
#: is 6626 = number of CTC classes + 1.
PADDLEOCR_SAR_IGNORE_INDEX = 92


@LOSSES.register()
class SARLoss(nn.Layer):
    """Mean cross-entropy of SAR logits, padding positions ignored.

    ``loss(predicts, batch)``: ``predicts`` are logits [B, T, C], ``batch[1]`` the SAR label
    [B, T] (``[BOS] chars [EOS] PAD...``). The last step of the logits and the first column of
    the label (the start token) are dropped, so step t predicts label t+1; the loss is the mean
    of ``−log_softmax(logit)[target]`` over positions whose target is not ``ignore_index``.
    Returns ``{"loss": 0-D}``.

    Args:
        ignore_index: the padding index ``<PAD>`` (= number of CTC classes + 1, e.g. 6626 for
            ppocr_keys_v1.txt with space). PaddleOCR's default is 92, which is *not* the padding
            index of the usual dictionaries (its train.py patches it for MultiHead configs);
            ppdistill's tools fill the padding index derived from the dictionary into every
            SAR loss that does not set ``ignore_index`` explicitly.

    YAML::

        - SARLoss:
            ignore_index: 6626
    """

    #: the trainer sets ``ignore_index`` = CTC classes + 1 (the <PAD> index) when not given.
    ignore_index_from_dictionary = 1

    def __init__(self, ignore_index=PADDLEOCR_SAR_IGNORE_INDEX):
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, predicts, batch):
        label = batch[1]
        if not isinstance(label, paddle.Tensor):
            label = paddle.to_tensor(label)
        predict = predicts[:, :-1, :]
        label = label.astype("int64")[:, 1:]
        if predict.shape[1] != label.shape[1]:
            raise ValueError(f"SARLoss: logits have {predicts.shape[1]} steps but the label has "
                             f"{label.shape[1] + 1} positions; they must be equal")
        num_classes = predict.shape[2]
        loss = F.cross_entropy(predict.reshape([-1, num_classes]), label.reshape([-1]),
                               ignore_index=self.ignore_index, reduction="mean")
        return {"loss": loss}
