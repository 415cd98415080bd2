"""MobileNetV3 for text detection (PaddleOCR's ``det_mobilenet_v3``), with PaddleOCR's parameter names.

The backbone returns the four stage outputs at strides 4, 8, 16 and 32. ``SEModule`` is shared with
the RSEFPN neck (``ppdistill.modeling.necks.db_fpn``).
"""
import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.ops import conv_bn_act
from ppdistill.registry import BACKBONES, ConfigError

__all__ = ["MobileNetV3", "ConvBNLayer", "ResidualUnit", "SEModule", "make_divisible"]

SUPPORTED_SCALES = (0.35, 0.5, 0.75, 1.0, 1.25)
ACTIVATIONS = ("relu", "hardswish")

# Rows of (kernel, expansion channels, output channels, use SE, activation, stride), before scaling.
LARGE_BLOCKS = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 2),
    (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1),
    (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 2),
    (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
)
SMALL_BLOCKS = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 2),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
)
# model name -> (block rows, channels of the final 1x1 conv, index after which stages may be cut)
MODEL_TABLES = {
    "large": (LARGE_BLOCKS, 960, 2),
    "small": (SMALL_BLOCKS, 576, 0),
}


def make_divisible(v, divisor=8, min_value=None):
    """Round ``v`` to the nearest multiple of ``divisor`` (half up, at least ``min_value``).

    If rounding down lost more than 10 % of ``v``, one more ``divisor`` is added.
    Examples: 12 -> 16, 20 -> 24, 92 -> 96, 5.6 -> 8.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNLayer(nn.Layer):
    """Conv2D (no bias) -> BatchNorm -> optional relu/hardswish. Sub-layers ``conv``, ``bn``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, groups: as for ``nn.Conv2D``.
        if_act: apply ``act`` after the BatchNorm.
        act: ``"relu"`` or ``"hardswish"`` (x * relu6(x + 3) / 6).

    In CPU training, depthwise and 1x1 layers run as one fused node that keeps only its input
    for backward (``ppdistill.ops.conv_bn_act``); the math is paddle's.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, groups=1,
                 if_act=True, act=None):
        super().__init__()
        if if_act and act not in ACTIVATIONS:
            raise ConfigError(f"ConvBNLayer: act must be one of {', '.join(ACTIVATIONS)}, "
                              f"got {act!r}")
        self.if_act = if_act
        self.act = act
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm(num_channels=out_channels, act=None)

    def forward(self, x):
        # CPU training: ppdistill's fused kernels, keeping only x for backward (ppdistill.ops)
        return conv_bn_act(x, self.conv, self.bn, self.act if self.if_act else None)


class SEModule(nn.Layer):
    """Squeeze-and-excitation: ``x * hardsigmoid(conv2(relu(conv1(avgpool(x)))), 0.2, 0.5)``.

    ``conv1`` is 1x1 C -> C // reduction and ``conv2`` 1x1 back to C, both with bias. The gate is
    ``clip(0.2 * z + 0.5, 0, 1)`` (slope 0.2, not 1/6, as in PaddleOCR's detection models).

    Args:
        in_channels: C.
        reduction: channel reduction of the bottleneck (floor division, no rounding).
    """

    def __init__(self, in_channels, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(in_channels, in_channels // reduction, 1)
        self.conv2 = nn.Conv2D(in_channels // reduction, in_channels, 1)

    def forward(self, inputs):
        gate = F.relu(self.conv1(self.avg_pool(inputs)))
        gate = F.hardsigmoid(self.conv2(gate), slope=0.2, offset=0.5)
        return inputs * gate


class ResidualUnit(nn.Layer):
    """Inverted residual: 1x1 expand -> kxk depthwise (stride s) -> [SE] -> 1x1 linear projection.

    The block input is added to the output when ``stride == 1`` and ``in_channels ==
    out_channels``. Sub-layers ``expand_conv``, ``bottleneck_conv``, ``mid_se`` (only when
    ``use_se``), ``linear_conv``.
    """

    def __init__(self, in_channels, mid_channels, out_channels, kernel_size, stride, use_se,
                 act=None):
        super().__init__()
        self.if_shortcut = stride == 1 and in_channels == out_channels
        self.if_se = use_se
        self.expand_conv = ConvBNLayer(in_channels, mid_channels, 1, 1, 0, if_act=True, act=act)
        self.bottleneck_conv = ConvBNLayer(mid_channels, mid_channels, kernel_size, stride,
                                           (kernel_size - 1) // 2, groups=mid_channels,
                                           if_act=True, act=act)
        if self.if_se:
            self.mid_se = SEModule(mid_channels)
        self.linear_conv = ConvBNLayer(mid_channels, out_channels, 1, 1, 0, if_act=False)

    def forward(self, inputs):
        x = self.bottleneck_conv(self.expand_conv(inputs))
        if self.if_se:
            x = self.mid_se(x)
        x = self.linear_conv(x)
        if self.if_shortcut:
            x = paddle.add(inputs, x)
        return x


@BACKBONES.register()
class MobileNetV3(nn.Layer):
    """MobileNetV3 detection backbone: a list of 4 feature maps at strides 4, 8, 16, 32.

    Stem ``conv`` (3x3 s2, hardswish) followed by ``stage0`` .. ``stage3``. A new stage starts
    before each stride-2 block after the first few (large: before rows 3, 6, 12; small: before
    rows 1, 3, 8). The last stage ends with a 1x1 ConvBN (hardswish) to
    ``make_divisible(scale * 960)`` (large) or ``make_divisible(scale * 576)`` (small) channels.
    Channel counts are ``make_divisible(scale * c)``.

    Args:
        in_channels: input image channels.
        model_name: ``"large"`` or ``"small"``.
        scale: width multiplier, one of 0.35, 0.5, 0.75, 1.0, 1.25.
        disable_se: build no SE modules at all (PP-OCRv3 students).

    Attributes:
        out_channels: channels of the 4 outputs, e.g. ``[16, 24, 56, 480]`` for large x0.5.

    YAML::

        Backbone:
          name: MobileNetV3
          scale: 0.5
          model_name: large
          disable_se: true
    """

    def __init__(self, in_channels=3, model_name="large", scale=0.5, disable_se=False):
        super().__init__()
        if model_name not in MODEL_TABLES:
            raise ConfigError(f"MobileNetV3: model_name must be one of "
                              f"{', '.join(MODEL_TABLES)}, got {model_name!r}")
        if scale not in SUPPORTED_SCALES:
            raise ConfigError(f"MobileNetV3: scale must be one of "
                              f"{', '.join(map(str, SUPPORTED_SCALES))}, got {scale!r}")
        rows, cls_ch_squeeze, start_idx = MODEL_TABLES[model_name]
        self.disable_se = disable_se

        inplanes = make_divisible(16 * scale)
        self.conv = ConvBNLayer(in_channels, inplanes, 3, 2, 1, if_act=True, act="hardswish")

        stages, self.out_channels, blocks = [], [], []
        for i, (kernel, exp, channels, use_se, act, stride) in enumerate(rows):
            if stride == 2 and i > start_idx:
                self.out_channels.append(inplanes)
                stages.append(nn.Sequential(*blocks))
                blocks = []
            out = make_divisible(scale * channels)
            blocks.append(ResidualUnit(inplanes, make_divisible(scale * exp), out, kernel, stride,
                                       use_se=use_se and not disable_se, act=act))
            inplanes = out
        last = make_divisible(scale * cls_ch_squeeze)
        blocks.append(ConvBNLayer(inplanes, last, 1, 1, 0, if_act=True, act="hardswish"))
        stages.append(nn.Sequential(*blocks))
        self.out_channels.append(last)
        self.stages = stages  # plain list: registered below as stage0..stage3
        for i, stage in enumerate(stages):
            self.add_sublayer(f"stage{i}", stage)

    def forward(self, x):
        x = self.conv(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs
