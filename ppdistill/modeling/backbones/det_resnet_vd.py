"""ResNet-vd for text detection (PaddleOCR's ``det_resnet_vd``), with PaddleOCR's parameter names.

"vd": a three-conv stem instead of one 7x7 conv, and downsampling shortcuts that average-pool
(2x2, ceil mode) before their stride-1 1x1 conv. The building blocks here are shared with the
plain :class:`~ppdistill.modeling.backbones.det_resnet.ResNet`.
"""
import paddle
from paddle import nn
from paddle.nn import functional as F
from paddle.vision.ops import DeformConv2D

from ppdistill.registry import BACKBONES, ConfigError

__all__ = ["ResNet_vd", "ConvBNLayer", "DeformableConvV2", "BottleneckBlock", "BasicBlock",
           "DEPTHS", "NUM_FILTERS", "check_stage_options"]

#: blocks per stage for each supported depth
DEPTHS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3],
          152: [3, 8, 36, 3], 200: [3, 12, 48, 3]}
NUM_FILTERS = [64, 128, 256, 512]


class DeformableConvV2(nn.Layer):
    """Modulated deformable conv (DCNv2): ``conv_dcn(x, offset, sigmoid(mask))``.

    ``conv_offset`` (kxk, same stride/padding, with bias, zero-initialised so the layer starts as
    a plain conv) predicts ``2*k*k*groups`` offsets followed by ``k*k*groups`` mask logits.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 bias_attr=False):
        super().__init__()
        self.offset_channel = 2 * kernel_size ** 2 * groups
        self.mask_channel = kernel_size ** 2 * groups
        if bias_attr:
            bias_attr = paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))
        self.conv_dcn = DeformConv2D(in_channels, out_channels, kernel_size, stride=stride,
                                     padding=(kernel_size - 1) // 2, dilation=1,
                                     deformable_groups=groups, bias_attr=bias_attr)
        zero = paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))
        self.conv_offset = nn.Conv2D(in_channels, groups * 3 * kernel_size ** 2, kernel_size,
                                     stride=stride, padding=(kernel_size - 1) // 2,
                                     weight_attr=zero, bias_attr=zero)

    def forward(self, x):
        offset_mask = self.conv_offset(x)
        offset, mask = paddle.split(offset_mask, [self.offset_channel, self.mask_channel], axis=1)
        return self.conv_dcn(x, offset, mask=F.sigmoid(mask))


class ConvBNLayer(nn.Layer):
    """[2x2 avg-pool, ceil mode] -> kxk conv (no bias, padding (k-1)//2) -> BatchNorm(act).

    Sub-layers ``_pool2d_avg`` (no parameters; used only when ``is_vd_mode``), ``_conv``
    (a :class:`DeformableConvV2` when ``is_dcn``) and ``_batch_norm`` (``act`` fused: relu or
    None).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, dcn_groups=1,
                 is_vd_mode=False, act=None, is_dcn=False):
        super().__init__()
        self.is_vd_mode = is_vd_mode
        self._pool2d_avg = nn.AvgPool2D(kernel_size=2, stride=2, padding=0, ceil_mode=True)
        if is_dcn:
            self._conv = DeformableConvV2(in_channels, out_channels, kernel_size, stride=stride,
                                          padding=(kernel_size - 1) // 2, groups=dcn_groups,
                                          bias_attr=False)
        else:
            self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                                   padding=(kernel_size - 1) // 2, groups=groups,
                                   bias_attr=False)
        self._batch_norm = nn.BatchNorm(out_channels, act=act)

    def forward(self, x):
        if self.is_vd_mode:
            x = self._pool2d_avg(x)
        return self._batch_norm(self._conv(x))


def _projection(in_channels, out_channels, stride, if_first, vd_mode):
    """The ``short`` layer of a stage's first block.

    vd: avg-pool (except for the very first block) then a stride-1 1x1 ConvBN. Plain ResNet: a
    1x1 ConvBN with the block stride.
    """
    if vd_mode:
        return ConvBNLayer(in_channels, out_channels, 1, stride=1, is_vd_mode=not if_first)
    return ConvBNLayer(in_channels, out_channels, 1, stride=stride)


class BottleneckBlock(nn.Layer):
    """``relu(shortcut(x) + conv2(conv1(conv0(x))))``: 1x1 -> 3x3 (stride) -> 1x1 to 4f.

    Sub-layers ``conv0``, ``conv1`` (deformable when ``is_dcn``), ``conv2`` and, when
    ``shortcut`` is False, the projection ``short``.
    """

    def __init__(self, in_channels, out_channels, stride, shortcut=True, if_first=False,
                 is_dcn=False, dcn_groups=2, vd_mode=True):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, out_channels, 1, act="relu")
        self.conv1 = ConvBNLayer(out_channels, out_channels, 3, stride=stride, act="relu",
                                 is_dcn=is_dcn, dcn_groups=dcn_groups)
        self.conv2 = ConvBNLayer(out_channels, out_channels * 4, 1, act=None)
        self.shortcut = shortcut
        if not shortcut:
            self.short = _projection(in_channels, out_channels * 4, stride, if_first, vd_mode)

    def forward(self, inputs):
        y = self.conv2(self.conv1(self.conv0(inputs)))
        short = inputs if self.shortcut else self.short(inputs)
        return F.relu(paddle.add(short, y))


class BasicBlock(nn.Layer):
    """``relu(shortcut(x) + conv1(conv0(x)))``: 3x3 (stride) -> 3x3.

    Sub-layers ``conv0``, ``conv1`` and, when ``shortcut`` is False, the projection ``short``.
    """

    def __init__(self, in_channels, out_channels, stride, shortcut=True, if_first=False,
                 vd_mode=True):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, out_channels, 3, stride=stride, act="relu")
        self.conv1 = ConvBNLayer(out_channels, out_channels, 3, act=None)
        self.shortcut = shortcut
        if not shortcut:
            self.short = _projection(in_channels, out_channels, stride, if_first, vd_mode)

    def forward(self, inputs):
        y = self.conv1(self.conv0(inputs))
        short = inputs if self.shortcut else self.short(inputs)
        return F.relu(paddle.add(short, y))


def check_stage_options(cls_name, layers, dcn_stage, out_indices):
    """Validate ``layers``/``dcn_stage``/``out_indices``; return (dcn_stage, out_indices) lists."""
    if layers not in DEPTHS:
        raise ConfigError(f"{cls_name}: layers must be one of "
                          f"{', '.join(map(str, DEPTHS))}, got {layers!r}")
    dcn_stage = [False] * 4 if dcn_stage is None else list(dcn_stage)
    if len(dcn_stage) != 4:
        raise ConfigError(f"{cls_name}: dcn_stage needs one flag per stage (4), got {dcn_stage!r}")
    if any(dcn_stage) and layers < 50:
        raise ConfigError(f"{cls_name}: dcn_stage is only supported for layers >= 50 "
                          f"(bottleneck blocks), got layers={layers}")
    out_indices = [0, 1, 2, 3] if out_indices is None else list(out_indices)
    if not out_indices or any(i not in (0, 1, 2, 3) for i in out_indices):
        raise ConfigError(f"{cls_name}: out_indices must be a non-empty subset of "
                          f"[0, 1, 2, 3], got {out_indices!r}")
    return dcn_stage, out_indices


@BACKBONES.register()
class ResNet_vd(nn.Layer):
    """ResNet-vd detection backbone: the outputs of the stages in ``out_indices`` (strides 4..32).

    Stem ``conv1_1`` (3x3 s2, in->32), ``conv1_2`` (32->32), ``conv1_3`` (32->64), all relu, then
    3x3 s2 max-pool. Blocks are registered as ``bb_{stage}_{index}``; the first block of each
    stage has a projection ``short`` (avg-pool 2x2 ceil -> 1x1 conv -> BN, no pool in stage 0).
    Bottleneck blocks for ``layers >= 50`` (out channels [256, 512, 1024, 2048]), basic blocks
    otherwise ([64, 128, 256, 512]).

    Args:
        in_channels: input image channels.
        layers: depth, one of 18, 34, 50, 101, 152, 200.
        dcn_stage: 4 flags; a True stage uses deformable 3x3 convs (DCNv2, 2 deformable groups)
            in its bottleneck blocks. Default: all False.
        out_indices: which stages to return, default ``[0, 1, 2, 3]``.

    Attributes:
        out_channels: channels of the returned stages.

    YAML::

        Backbone:
          name: ResNet_vd
          in_channels: 3
          layers: 50
    """

    def __init__(self, in_channels=3, layers=50, dcn_stage=None, out_indices=None):
        super().__init__()
        self.layers = layers
        self.dcn_stage, self.out_indices = check_stage_options("ResNet_vd", layers, dcn_stage,
                                                               out_indices)
        depth = DEPTHS[layers]
        bottleneck = layers >= 50
        stage_in = [64, 256, 512, 1024] if bottleneck else [64, 64, 128, 256]

        self.conv1_1 = ConvBNLayer(in_channels, 32, 3, stride=2, act="relu")
        self.conv1_2 = ConvBNLayer(32, 32, 3, stride=1, act="relu")
        self.conv1_3 = ConvBNLayer(32, 64, 3, stride=1, act="relu")
        self.pool2d_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)

        self.stages, self.out_channels = [], []
        for stage, num_blocks in enumerate(depth):
            filters = NUM_FILTERS[stage]
            out = filters * 4 if bottleneck else filters
            blocks = []
            for i in range(num_blocks):
                args = dict(in_channels=stage_in[stage] if i == 0 else out,
                            out_channels=filters, stride=2 if i == 0 and stage != 0 else 1,
                            shortcut=i != 0, if_first=stage == i == 0)
                if bottleneck:
                    block = BottleneckBlock(is_dcn=self.dcn_stage[stage], **args)
                else:
                    block = BasicBlock(**args)
                blocks.append(self.add_sublayer(f"bb_{stage}_{i}", block))
            if stage in self.out_indices:
                self.out_channels.append(out)
            self.stages.append(nn.Sequential(*blocks))  # plain list: no "stages.*" keys

    def forward(self, inputs):
        y = self.pool2d_max(self.conv1_3(self.conv1_2(self.conv1_1(inputs))))
        outputs = []
        for i, stage in enumerate(self.stages):
            y = stage(y)
            if i in self.out_indices:
                outputs.append(y)
        return outputs
