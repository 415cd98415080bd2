"""MobileNetV1Enhance, the PP-OCRv2/v3 recognition backbone, with PaddleOCR's parameter names.

Keys look like ``backbone.conv1._conv.weight``, ``backbone.block_list.11._se.conv1.bias`` and
``backbone.block_list.12._pointwise_conv._batch_norm._variance`` (143 state_dict entries at
scale 0.5), so PaddleOCR's ``ch_PP-OCRv3_rec_train`` / ``ch_PP-OCRv2_rec_train`` checkpoints load
by name.
"""
import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.ops import conv_bn_act
from ppdistill.registry import BACKBONES, ConfigError

__all__ = ["MobileNetV1Enhance", "ConvBNLayer", "DepthwiseSeparable", "SEModule"]

# Rows of (nf1, nf2, groups, stride, dw kernel, use SE) before scaling, in ``block_list`` order.
# A stride of None stands for ``last_conv_stride``; (2, 1) halves the height only.
BLOCKS = (
    (32, 64, 32, 1, 3, False),  # conv2_1
    (64, 128, 64, 1, 3, False),  # conv2_2
    (128, 128, 128, 1, 3, False),  # conv3_1
    (128, 256, 128, (2, 1), 3, False),  # conv3_2
    (256, 256, 256, 1, 3, False),  # conv4_1
    (256, 512, 256, (2, 1), 3, False),  # conv4_2
    (512, 512, 512, 1, 5, False),  # conv5_1 .. conv5_5
    (512, 512, 512, 1, 5, False),
    (512, 512, 512, 1, 5, False),
    (512, 512, 512, 1, 5, False),
    (512, 512, 512, 1, 5, False),
    (512, 1024, 512, (2, 1), 5, True),  # conv5_6
    (1024, 1024, 1024, None, 5, True),  # conv6
)
POOL_TYPES = ("avg", "max")


class ConvBNLayer(nn.Layer):
    """Conv2D (no bias, KaimingNormal init) -> BatchNorm -> hardswish.

    Sub-layers ``_conv`` and ``_batch_norm``. The BatchNorm weight and bias carry their own
    ``L2Decay(0.0)``, so the optimizer's global weight decay does not apply to them (as in
    PaddleOCR). In CPU training, depthwise and 1x1 layers run as one fused node that keeps only
    its input for backward (``ppdistill.ops.conv_bn_act``); the math is paddle's.

    Args:
        num_channels: input channels.
        filter_size: kernel size.
        num_filters: output channels.
        stride: int or (h, w) stride.
        padding: int or (h, w) padding.
        num_groups: convolution groups.
    """

    def __init__(self, num_channels, filter_size, num_filters, stride, padding, num_groups=1):
        super().__init__()
        self._conv = nn.Conv2D(
            num_channels, num_filters, filter_size, stride=stride, padding=padding,
            groups=num_groups, weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal()),
            bias_attr=False)
        no_decay = paddle.regularizer.L2Decay(0.0)
        self._batch_norm = nn.BatchNorm2D(
            num_filters, weight_attr=paddle.ParamAttr(regularizer=no_decay),
            bias_attr=paddle.ParamAttr(regularizer=no_decay))

    def forward(self, x):
        # CPU training: ppdistill's fused kernels, keeping only x for backward (ppdistill.ops)
        return conv_bn_act(x, self._conv, self._batch_norm, "hardswish")


class SEModule(nn.Layer):
    """Squeeze-and-excitation: ``x * hardsigmoid(conv2(relu(conv1(avgpool(x)))))``.

    ``conv1`` is 1x1 C -> C // reduction and ``conv2`` 1x1 back to C, both with bias. The gate is
    Paddle's default hardsigmoid, ``clip(0.1666667 * z + 0.5, 0, 1)`` (the detection SEModule
    uses slope 0.2 instead).

    Args:
        channel: C.
        reduction: squeeze factor (4).
    """

    def __init__(self, channel, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channel, channel // reduction, 1)
        self.conv2 = nn.Conv2D(channel // reduction, channel, 1)

    def forward(self, x):
        gate = F.relu(self.conv1(self.avg_pool(x)))
        gate = F.hardsigmoid(self.conv2(gate))
        return x * gate


class DepthwiseSeparable(nn.Layer):
    """Depthwise ConvBN (k x k, given stride) -> optional SE -> pointwise 1x1 ConvBN.

    Channels are scaled with plain ``int()`` truncation: the depthwise conv maps
    ``num_channels -> int(num_filters1 * scale)`` with ``int(num_groups * scale)`` groups and the
    pointwise conv maps that to ``int(num_filters2 * scale)``. Sub-layers ``_depthwise_conv``,
    ``_se`` (only with ``use_se``) and ``_pointwise_conv``.
    """

    def __init__(self, num_channels, num_filters1, num_filters2, num_groups, stride, scale,
                 dw_size=3, padding=1, use_se=False):
        super().__init__()
        mid = int(num_filters1 * scale)
        self.use_se = use_se
        self._depthwise_conv = ConvBNLayer(num_channels, dw_size, mid, stride, padding,
                                           num_groups=int(num_groups * scale))
        if use_se:
            self._se = SEModule(mid)
        self._pointwise_conv = ConvBNLayer(mid, 1, int(num_filters2 * scale), 1, 0)

    def forward(self, x):
        x = self._depthwise_conv(x)
        if self.use_se:
            x = self._se(x)
        return self._pointwise_conv(x)


@BACKBONES.register()
class MobileNetV1Enhance(nn.Layer):
    """PaddleOCR's enhanced MobileNetV1 for text-line recognition (PP-OCRv2 and PP-OCRv3).

    Stem ``conv1`` (3x3 s2, 3 -> int(32*scale), hardswish), then 13 depthwise-separable blocks
    in ``block_list`` that halve the height three times (strides (2,1)) and keep the width, the
    last two with SE and 5x5 depthwise kernels; the last block uses ``last_conv_stride``. A final
    ``pool`` is ``AvgPool2D(last_pool_kernel_size, stride=last_pool_kernel_size)`` when
    ``last_pool_type`` is ``avg`` and ``MaxPool2D(2, 2)`` otherwise. Output ``[N, int(1024*scale),
    H/32, W/4]`` for the v2 settings (e.g. 32x320 -> 1x80) and ``[N, 512, 1, W/8]`` for v3
    (48x320 -> 1x40); ``out_channels = int(1024 * scale)``.

    Args:
        in_channels: accepted for the BaseModel interface; the stem always takes 3 channels
            (as in PaddleOCR), so another value is rejected.
        scale: channel multiplier (0.5 in PP-OCR).
        last_conv_stride: stride of the last block, an int or ``[h, w]`` (v3: ``[1, 2]``).
        last_pool_type: ``avg`` or ``max``.
        last_pool_kernel_size: kernel (= stride) of the avg pool; ignored by the max pool.

    Difference from PaddleOCR: ``in_channels`` other than 3 is rejected instead of being
    silently ignored.

    YAML (PP-OCRv3; PP-OCRv2 uses only ``scale: 0.5``)::

        Backbone:
          name: MobileNetV1Enhance
          scale: 0.5
          last_conv_stride: [1, 2]
          last_pool_type: avg
          last_pool_kernel_size: [2, 2]
    """

    def __init__(self, in_channels=3, scale=0.5, last_conv_stride=1, last_pool_type="max",
                 last_pool_kernel_size=(3, 2)):
        super().__init__()
        if in_channels != 3:
            raise ConfigError(f"MobileNetV1Enhance: the stem takes 3 input channels, "
                              f"got in_channels={in_channels}")
        if last_pool_type not in POOL_TYPES:
            raise ConfigError(f"MobileNetV1Enhance: last_pool_type must be one of "
                              f"{', '.join(POOL_TYPES)}, got {last_pool_type!r}")
        if not scale or scale <= 0:
            raise ConfigError(f"MobileNetV1Enhance: scale must be positive, got {scale!r}")
        self.scale = scale
        self.conv1 = ConvBNLayer(3, 3, int(32 * scale), 2, 1)
        blocks = []
        channels = int(32 * scale)
        for nf1, nf2, groups, stride, dw_size, use_se in BLOCKS:
            stride = _pair(last_conv_stride, "last_conv_stride") if stride is None else stride
            blocks.append(DepthwiseSeparable(channels, nf1, nf2, groups, stride, scale,
                                             dw_size=dw_size, padding=dw_size // 2, use_se=use_se))
            channels = int(nf2 * scale)
        self.block_list = nn.Sequential(*blocks)
        if last_pool_type == "avg":
            kernel = _pair(last_pool_kernel_size, "last_pool_kernel_size")
            self.pool = nn.AvgPool2D(kernel_size=kernel, stride=kernel, padding=0)
        else:
            self.pool = nn.MaxPool2D(kernel_size=2, stride=2, padding=0)
        self.out_channels = int(1024 * scale)

    def forward(self, x):
        return self.pool(self.block_list(self.conv1(x)))


def _pair(value, name):
    """An int or a 2-element sequence of ints, returned as given (int) or as a list."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    raise ConfigError(f"MobileNetV1Enhance: {name} must be an int or [h, w], got {value!r}")
