"""DBLoss: the Differentiable Binarization detection loss (shrink, threshold and binary maps)."""
import paddle
from paddle import nn

from ppdistill.losses.det_basic_loss import BalanceLoss, DiceLoss, MaskL1Loss
from ppdistill.registry import LOSSES


def split_det_labels(batch, loss_name):
    """``(threshold_map, threshold_mask, shrink_map, shrink_mask)`` from a DB training batch."""
    if batch is None or len(batch) < 5:
        got = "None" if batch is None else f"{len(batch)} entries"
        raise ValueError(f"{loss_name}: expected the DB training batch [image, threshold_map, "
                         f"threshold_mask, shrink_map, shrink_mask], got {got}")
    return tuple(batch[1:5])


def check_train_maps(maps, loss_name, model=None):
    """Raise unless ``maps`` is the ``[B, 3, H, W]`` train-mode DB output."""
    where = f" of {model!r}" if model else ""
    if not isinstance(maps, paddle.Tensor) or maps.ndim != 4 or maps.shape[1] < 3:
        shape = list(maps.shape) if hasattr(maps, "shape") else type(maps).__name__
        raise ValueError(f"{loss_name}: the maps{where} must be the train-mode DB output "
                         f"[B, 3, H, W] (shrink, threshold, binary), got {shape}; is the model "
                         f"in eval mode?")


@LOSSES.register()
class DBLoss(nn.Layer):
    """``loss = α·L_shrink + β·L_threshold + L_binary + L_cbn``.

    With ``maps = predicts["maps"]`` (``[B, 3, H, W]``) and the batch ``[image, threshold_map,
    threshold_mask, shrink_map, shrink_mask]``:

    - ``loss_shrink_maps = alpha · BalanceLoss(maps[:,0], shrink_map, shrink_mask)``
    - ``loss_threshold_maps = beta · MaskL1Loss(maps[:,1], threshold_map, threshold_mask)``
    - ``loss_binary_maps = DiceLoss(maps[:,2], shrink_map, shrink_mask)``
    - ``loss_cbn = BalanceLoss(predicts["cbn_maps"][:,0], shrink_map, shrink_mask)`` when the
      output has ``distance_maps`` (PP-OCRv4 local-refinement head), else 0.

    The BalanceLoss uses ``balance_loss``, ``main_loss_type`` and ``negative_ratio = ohem_ratio``
    (and its own ``eps = 1e-6``, as in PaddleOCR); Dice and MaskL1 use ``eps``.

    Difference from PaddleOCR: ``loss_cbn`` and ``loss`` are 0-D (PaddleOCR's zero placeholder has
    shape [1] and broadcasts ``loss`` to shape [1]); the values are the same.

    YAML::

        Loss:
          name: DBLoss
          balance_loss: true
          main_loss_type: DiceLoss
          alpha: 5
          beta: 10
          ohem_ratio: 3
    """

    def __init__(self, balance_loss=True, main_loss_type="DiceLoss", alpha=5, beta=10,
                 ohem_ratio=3, eps=1e-6):
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.dice_loss = DiceLoss(eps=eps)
        self.l1_loss = MaskL1Loss(eps=eps)
        self.bce_loss = BalanceLoss(balance_loss=balance_loss, main_loss_type=main_loss_type,
                                    negative_ratio=ohem_ratio)

    def forward(self, predicts, labels):
        if not isinstance(predicts, dict) or "maps" not in predicts:
            keys = f" with keys {list(predicts)}" if isinstance(predicts, dict) else ""
            raise ValueError("DBLoss: expected the DB head output {'maps': [B, 3, H, W], ...}, "
                             f"got {type(predicts).__name__}{keys}")
        maps = predicts["maps"]
        check_train_maps(maps, "DBLoss")
        threshold_map, threshold_mask, shrink_map, shrink_mask = split_det_labels(labels, "DBLoss")
        loss_shrink_maps = self.alpha * self.bce_loss(maps[:, 0, :, :], shrink_map, shrink_mask)
        loss_threshold_maps = self.beta * self.l1_loss(maps[:, 1, :, :], threshold_map,
                                                       threshold_mask)
        loss_binary_maps = self.dice_loss(maps[:, 2, :, :], shrink_map, shrink_mask)
        if "distance_maps" in predicts:
            loss_cbn = self.bce_loss(predicts["cbn_maps"][:, 0, :, :], shrink_map, shrink_mask)
        else:
            loss_cbn = paddle.zeros([], dtype=maps.dtype)
        loss = loss_shrink_maps + loss_threshold_maps + loss_binary_maps + loss_cbn
        return {"loss": loss, "loss_shrink_maps": loss_shrink_maps,
                "loss_threshold_maps": loss_threshold_maps, "loss_binary_maps": loss_binary_maps,
                "loss_cbn": loss_cbn}
