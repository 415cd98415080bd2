"""DB (Differentiable Binarization) detection head (PaddleOCR's ``det_db_head``)."""
import math

import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.modeling.fast_conv import shared_input_convs
from ppdistill.registry import HEADS, ConfigError

__all__ = ["DBHead", "Head"]


def _bias_attr(channels):
    bound = 1.0 / math.sqrt(channels * 1.0)
    return paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))


def _bn_relu(channels):
    return nn.BatchNorm(num_channels=channels,
                        param_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(1.0)),
                        bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(1e-4)),
                        act="relu")


class Head(nn.Layer):
    """One DB branch: a 1-channel probability map at 4x the input resolution.

    ``sigmoid(conv3(conv_bn2(conv2(conv_bn1(conv1(x))))))``: ``conv1`` kxk (k =
    ``kernel_list[0]``, padding k//2, C -> C//4, no bias), BatchNorm+relu, ``conv2`` transposed
    conv (kernel ``kernel_list[1]``, stride 2, with bias), BatchNorm+relu, ``conv3`` transposed
    conv to 1 channel (kernel ``kernel_list[2]``, stride 2, with bias). With ``fix_nan``, NaNs
    after each BatchNorm+relu are replaced by 0 in training mode (PP-OCRv5); eval is unchanged.
    """

    def __init__(self, in_channels, kernel_list=(3, 2, 2), fix_nan=False):
        super().__init__()
        self.fix_nan = bool(fix_nan)
        quarter = in_channels // 4
        kaiming = paddle.ParamAttr(initializer=nn.initializer.KaimingUniform())
        self.conv1 = nn.Conv2D(in_channels, quarter, kernel_list[0],
                               padding=int(kernel_list[0] // 2), weight_attr=paddle.ParamAttr(),
                               bias_attr=False)
        self.conv_bn1 = _bn_relu(quarter)
        self.conv2 = nn.Conv2DTranspose(quarter, quarter, kernel_list[1], stride=2,
                                        weight_attr=kaiming, bias_attr=_bias_attr(quarter))
        self.conv_bn2 = _bn_relu(quarter)
        self.conv3 = nn.Conv2DTranspose(quarter, 1, kernel_list[2], stride=2,
                                        weight_attr=paddle.ParamAttr(
                                            initializer=nn.initializer.KaimingUniform()),
                                        bias_attr=_bias_attr(quarter))

    def _nan_to_zero(self, x):
        if self.fix_nan and self.training:
            return paddle.where(paddle.isnan(x), paddle.zeros_like(x), x)
        return x

    def forward(self, x, conv1_out=None):
        """``conv1_out``: ``conv1(x)`` when the caller computed it already (``x`` is unused)."""
        x = self._nan_to_zero(self.conv_bn1(self.conv1(x) if conv1_out is None else conv1_out))
        x = self._nan_to_zero(self.conv_bn2(self.conv2(x)))
        return F.sigmoid(self.conv3(x))


@HEADS.register()
class DBHead(nn.Layer):
    """DB head: shrink (probability) map, threshold map and their differentiable binarisation.

    ``shrink = binarize(x)``, ``thresh = thresh(x)`` (two :class:`Head` branches with separate
    weights) and ``binary = 1 / (1 + exp(-k * (shrink - thresh)))``.

    Output, with ``H, W`` = 4x the neck resolution (the input image size):

    - training: ``{"maps": concat([shrink, thresh, binary], axis=1)}``, shape ``[N, 3, H, W]``;
    - eval: ``{"maps": shrink}``, shape ``[N, 1, H, W]`` (the threshold branch is not run).

    Args:
        in_channels: channels of the neck output.
        k: amplification factor of the step function.
        kernel_list: kernel sizes of ``conv1``, ``conv2``, ``conv3`` in each branch.
        fix_nan: in training, replace NaNs by 0 after each branch's two BatchNorm+relu layers
            (PaddleOCR's PP-OCRv5 ``fix_nan``); no parameters, no effect in eval.

    YAML::

        Head:
          name: DBHead
          k: 50
          kernel_list: [7, 2, 2]   # default [3, 2, 2]
          fix_nan: True            # PP-OCRv5, default False
    """

    def __init__(self, in_channels, k=50, kernel_list=(3, 2, 2), fix_nan=False):
        super().__init__()
        if not isinstance(kernel_list, (list, tuple)) or len(kernel_list) != 3 or not all(
                isinstance(v, int) and v > 0 for v in kernel_list):
            raise ConfigError(f"DBHead: kernel_list must be 3 positive ints, e.g. [3, 2, 2], "
                              f"got {kernel_list!r}")
        kernel_list = list(kernel_list)
        if not isinstance(in_channels, int) or in_channels < 4:
            raise ConfigError(f"DBHead: in_channels must be an int >= 4 (the neck's "
                              f"out_channels), got {in_channels!r}")
        self.k = k
        self.binarize = Head(in_channels, kernel_list, fix_nan=fix_nan)
        self.thresh = Head(in_channels, kernel_list, fix_nan=fix_nan)

    def step_function(self, x, y):
        """``1 / (1 + exp(-k * (x - y)))``."""
        return paddle.reciprocal(1 + paddle.exp(-self.k * (x - y)))

    def forward(self, x, targets=None):
        if not self.training:
            return {"maps": self.binarize(x)}
        # both branches' conv1 read x: one GEMM in a frozen teacher's CPU forward (fast_conv)
        shrink_in, thresh_in = shared_input_convs(x, [self.binarize.conv1, self.thresh.conv1])
        shrink_maps = self.binarize(x, shrink_in)
        threshold_maps = self.thresh(x, thresh_in)
        binary_maps = self.step_function(shrink_maps, threshold_maps)
        return {"maps": paddle.concat([shrink_maps, threshold_maps, binary_maps], axis=1)}
