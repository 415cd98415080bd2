"""PFHeadLocal (PaddleOCR's ``det_db_head.PFHeadLocal``): the PP-OCRv4 det teacher's DB head with a
local refinement branch (CBN) that corrects the shrink map from the head's own features."""
import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.modeling.backbones.det_mobilenet_v3 import ConvBNLayer
from ppdistill.modeling.heads.det_db_head import DBHead
from ppdistill.registry import HEADS, ConfigError

__all__ = ["PFHeadLocal", "LocalModule"]

#: mode -> divisor of in_channels for LocalModule's hidden channels
MODES = {"large": 4, "small": 8}


class LocalModule(nn.Layer):
    """``last_1(last_3(concat([init_map, x])))``: the refinement branch of :class:`PFHeadLocal`.

    ``last_3`` is a 3x3 conv (no bias, padding 1) -> BatchNorm -> ReLU from ``in_c + 1`` to
    ``mid_c`` channels (sub-layers ``conv``, ``bn``); ``last_1`` is a 1x1 conv ``mid_c -> 1`` with
    bias. The 1-channel ``init_map`` (the shrink map) comes first in the concatenation. The
    output is a logit map; ``distance_map`` is accepted and unused, as in PaddleOCR.
    """

    def __init__(self, in_c, mid_c):
        super().__init__()
        self.last_3 = ConvBNLayer(in_c + 1, mid_c, 3, 1, 1, if_act=True, act="relu")
        self.last_1 = nn.Conv2D(mid_c, 1, 1)

    def forward(self, x, init_map, distance_map=None):
        return self.last_1(self.last_3(paddle.concat([init_map, x], axis=1)))


@HEADS.register()
class PFHeadLocal(DBHead):
    """DB head plus a local CBN branch (PP-OCRv4 det teacher, ``ch_PP-OCRv4_det_teacher.yml``).

    ``binarize`` and ``thresh`` are the two :class:`~ppdistill.modeling.heads.det_db_head.Head`
    branches of :class:`DBHead`. Let ``f`` be the binarize branch's ``conv_bn2`` output
    ([N, C/4, H/2, W/2], after its ReLU) and ``shrink = sigmoid(conv3(f))``. Then
    ``cbn = sigmoid(cbn_layer(up_conv(f), shrink))`` with ``up_conv`` a 2x nearest upsample and
    ``cbn_layer`` a :class:`LocalModule` (``C/4 -> C/4`` hidden channels in mode ``large``,
    ``C/8`` in mode ``small``).

    Output (``H, W`` = the input image size):

    - eval: ``{"maps": 0.5 * (shrink + cbn), "cbn_maps": cbn}``, each [N, 1, H, W]; the
      threshold branch is not run.
    - training: with ``thresh = thresh(x)`` and ``binary = 1 / (1 + exp(-k (shrink - thresh)))``
      (from the *base* shrink map): ``{"maps": concat([cbn, thresh, binary]) [N, 3, H, W],
      "distance_maps": cbn, "cbn_maps": binary}``. The names are PaddleOCR's: in training
      ``cbn_maps`` holds the binary map and channel 0 of ``maps`` the refined (cbn) map, so
      :class:`~ppdistill.losses.det_db_loss.DBLoss` trains the refined map with the shrink loss.

    An exported model returns ``maps`` first, then ``cbn_maps`` (``ppdistill.utils.export``;
    PaddleOCR's export puts ``cbn_maps`` first, so its ``predict_det`` would read that map).

    Args:
        in_channels: channels of the neck output (C).
        k: amplification factor of the step function.
        mode: ``"large"`` or ``"small"``.
        kernel_list: kernel sizes of each branch's three convs (as :class:`DBHead`).

    YAML::

        Head:
          name: PFHeadLocal
          k: 50
          mode: "large"
    """

    def __init__(self, in_channels, k=50, mode="small", kernel_list=(3, 2, 2)):
        super().__init__(in_channels, k=k, kernel_list=kernel_list)
        if mode not in MODES:
            raise ConfigError(f"PFHeadLocal: mode must be one of {', '.join(MODES)}, "
                              f"got {mode!r}")
        self.mode = mode
        self.up_conv = nn.Upsample(scale_factor=2, mode="nearest", align_mode=1)
        self.cbn_layer = LocalModule(in_channels // 4, in_channels // MODES[mode])

    def _shrink_and_features(self, x):
        """The binarize branch's sigmoid map and its ``conv_bn2`` features."""
        branch = self.binarize
        features = branch.conv_bn2(branch.conv2(branch.conv_bn1(branch.conv1(x))))
        return F.sigmoid(branch.conv3(features)), features

    def forward(self, x, targets=None):
        shrink_maps, features = self._shrink_and_features(x)
        cbn_maps = F.sigmoid(self.cbn_layer(self.up_conv(features), shrink_maps, None))
        if not self.training:
            return {"maps": 0.5 * (shrink_maps + cbn_maps), "cbn_maps": cbn_maps}
        threshold_maps = self.thresh(x)
        binary_maps = self.step_function(shrink_maps, threshold_maps)
        return {"maps": paddle.concat([cbn_maps, threshold_maps, binary_maps], axis=1),
                "distance_maps": cbn_maps, "cbn_maps": binary_maps}
