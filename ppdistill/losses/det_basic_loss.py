"""The building blocks of the DB detection loss: Dice, masked L1, BCE and the balanced loss.

Each is called on ``[B, H, W]`` tensors (a prediction, its ground truth and a 0/1 mask) and sums
over the whole batch at once, as PaddleOCR does. Results are 0-D unless stated otherwise.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.registry import LOSSES, ConfigError, suggest


def _check_same_shape(loss_name, **tensors):
    shapes = {name: list(t.shape) for name, t in tensors.items() if t is not None}
    if len({tuple(s) for s in shapes.values()}) > 1:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{loss_name}: inputs must have the same shape, got {described}")


def _as_dtype(tensor, dtype):
    return tensor if tensor.dtype == dtype else tensor.astype(dtype)


@LOSSES.register()
class DiceLoss(nn.Layer):
    """``1 − 2·Σ(p·g·m) / (Σ(p·m) + Σ(g·m) + eps)`` over every element of the batch (0-D).

    ``forward(pred, gt, mask, weights=None)``; with ``weights`` the mask becomes ``weights·mask``.

    YAML (as a BalanceLoss main loss): ``main_loss_type: DiceLoss``
    """

    def __init__(self, eps=1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, pred, gt, mask, weights=None):
        _check_same_shape("DiceLoss", pred=pred, gt=gt, mask=mask, weights=weights)
        gt, mask = _as_dtype(gt, pred.dtype), _as_dtype(mask, pred.dtype)
        if weights is not None:
            mask = _as_dtype(weights, pred.dtype) * mask
        intersection = paddle.sum(pred * gt * mask)
        union = paddle.sum(pred * mask) + paddle.sum(gt * mask) + self.eps
        return 1 - 2.0 * intersection / union


@LOSSES.register()
class MaskL1Loss(nn.Layer):
    """``Σ(|p − g|·m) / (Σ m + eps)`` over every element of the batch (0-D).

    YAML (as a BalanceLoss main loss): ``main_loss_type: MaskL1Loss``
    """

    def __init__(self, eps=1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, pred, gt, mask):
        gt, mask = _as_dtype(gt, pred.dtype), _as_dtype(mask, pred.dtype)
        return paddle.sum(paddle.abs(pred - gt) * mask) / (paddle.sum(mask) + self.eps)


@LOSSES.register()
class BCELoss(nn.Layer):
    """Binary cross-entropy on probabilities (``paddle.nn.functional.binary_cross_entropy``).

    ``reduction`` is ``mean`` (0-D), ``sum`` (0-D) or ``none`` (per element, the form
    :class:`BalanceLoss` uses for hard-negative mining). ``forward(pred, gt, mask=None,
    weight=None)``: mask and weight are accepted for a uniform call signature and not used, as in
    PaddleOCR.

    YAML (as a BalanceLoss main loss): ``main_loss_type: BCELoss``
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ConfigError(f"BCELoss: reduction must be one of mean, sum, none, "
                              f"got {reduction!r}")
        self.reduction = reduction

    def forward(self, pred, gt, mask=None, weight=None):
        return F.binary_cross_entropy(pred, _as_dtype(gt, pred.dtype), reduction=self.reduction)


#: main losses BalanceLoss can use. PaddleOCR also lists CrossEntropy and Euclidean, but they do
#: not accept the mask argument BalanceLoss passes, so they never ran there either.
BALANCE_MAIN_LOSSES = {
    "DiceLoss": lambda eps: DiceLoss(eps),
    "MaskL1Loss": lambda eps: MaskL1Loss(eps),
    "BCELoss": lambda eps: BCELoss(reduction="none"),
}


@LOSSES.register()
class BalanceLoss(nn.Layer):
    """A loss balanced between positives and the hardest negatives (OHEM).

    With ``positive = gt·mask``, ``negative = (1 − gt)·mask``, ``P = int(Σ positive)``,
    ``N = int(min(Σ negative, P·negative_ratio))`` and ``L = main_loss(pred, gt, mask)``::

        loss = (Σ positive·L + Σ top_N(negative·L)) / (P + N + eps)     (N > 0)
        loss = Σ positive·L / (P + eps)                                   (N = 0)

    ``balance_loss=False`` returns ``L`` itself; ``return_origin=True`` returns
    ``(loss, L)``. The top-N negatives are chosen with ``paddle.topk`` on the device.

    ``main_loss_type``: ``DiceLoss`` (default; ``L`` is a scalar, so no real hard-negative mining
    happens and the result is ``L·(P+N)/(P+N+eps)``, as in PaddleOCR), ``MaskL1Loss`` (scalar too)
    or ``BCELoss`` (per-pixel ``L``: real OHEM over the hardest negative pixels).

    Difference from PaddleOCR: ``CrossEntropy`` and ``Euclidean`` are rejected at construction
    (PaddleOCR accepts the names and then fails on the first batch).

    YAML (inside DBLoss): ``balance_loss: true``, ``main_loss_type: DiceLoss``,
    ``ohem_ratio: 3`` (becomes ``negative_ratio``).
    """

    def __init__(self, balance_loss=True, main_loss_type="DiceLoss", negative_ratio=3,
                 return_origin=False, eps=1e-6):
        super().__init__()
        if main_loss_type not in BALANCE_MAIN_LOSSES:
            raise ConfigError(
                f"BalanceLoss: main_loss_type {main_loss_type!r} is not supported"
                f"{suggest(main_loss_type, BALANCE_MAIN_LOSSES)} "
                f"(supported: {', '.join(BALANCE_MAIN_LOSSES)})")
        if negative_ratio < 0:
            raise ConfigError(f"BalanceLoss: negative_ratio must be >= 0, got {negative_ratio!r}")
        self.balance_loss = balance_loss
        self.main_loss_type = main_loss_type
        self.negative_ratio = negative_ratio
        self.return_origin = return_origin
        self.eps = eps
        self.loss = BALANCE_MAIN_LOSSES[main_loss_type](eps)

    def forward(self, pred, gt, mask=None):
        if mask is None:
            mask = paddle.ones_like(pred)
        _check_same_shape("BalanceLoss", pred=pred, gt=gt, mask=mask)
        gt, mask = _as_dtype(gt, pred.dtype), _as_dtype(mask, pred.dtype)
        positive = gt * mask
        negative = (1 - gt) * mask
        positive_count = int(float(positive.sum()))
        negative_count = int(min(float(negative.sum()), positive_count * self.negative_ratio))
        loss = self.loss(pred, gt, mask=mask)
        if not self.balance_loss:
            return loss
        positive_loss = paddle.sum(positive * loss)
        if negative_count > 0:
            negative_loss = (negative * loss).reshape([-1])
            hardest, _ = paddle.topk(negative_loss, k=negative_count)
            balance = ((positive_loss + paddle.sum(hardest))
                       / (positive_count + negative_count + self.eps))
        else:
            balance = positive_loss / (positive_count + self.eps)
        return (balance, loss) if self.return_origin else balance
