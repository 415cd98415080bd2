"""PP-HGNet small (PaddleOCR's ``rec_hgnet``): the PP-OCRv4 server backbone, det and rec variants.

A three-conv stem, then four HG stages. Each HG block runs six 3x3 conv-BN-ReLU layers in a chain,
concatenates the block input with all six outputs (input first), aggregates them with a 1x1
conv-BN-ReLU and re-weights the channels with an effective squeeze-excitation (ESE, true sigmoid).
Parameter names follow PaddleOCR (``stem.0.conv.weight``, ``stages.2.blocks.1.layers.0.bn._mean``,
``stages.1.downsample.conv.weight``, ``stages.0.blocks.0.att.conv.bias``) so its checkpoints load.
"""
import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.registry import BACKBONES, ConfigError

__all__ = ["PPHGNet_small", "ConvBNAct", "ESEModule", "HGBlock", "HGStage",
           "SMALL_STAGES_DET", "SMALL_STAGES_REC"]

#: per stage: (in, mid, out, blocks, has_downsample, downsample stride); PaddleOCR's tables
SMALL_STAGES_DET = ((128, 128, 256, 1, False, 2), (256, 160, 512, 1, True, 2),
                    (512, 192, 768, 2, True, 2), (768, 224, 1024, 1, True, 2))
SMALL_STAGES_REC = ((128, 128, 256, 1, True, (2, 1)), (256, 160, 512, 1, True, (1, 2)),
                    (512, 192, 768, 2, True, (2, 1)), (768, 224, 1024, 1, True, (2, 1)))
SMALL_STEM = (64, 64, 128)
SMALL_LAYERS_PER_BLOCK = 6
#: rec output: adaptive average pool to this size in training, fixed avg pool in eval
REC_TRAIN_POOL = (1, 40)
REC_EVAL_POOL = (3, 2)


def _no_decay():
    return paddle.ParamAttr(regularizer=paddle.regularizer.L2Decay(0.0))


class ConvBNAct(nn.Layer):
    """kxk conv (no bias, padding (k-1)//2) -> BatchNorm2D (no weight decay) -> ReLU if ``use_act``.

    Sub-layers ``conv`` and ``bn`` (the ReLU has no parameters). ``stride`` is an int or [h, w].
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, use_act=True):
        super().__init__()
        self.use_act = use_act
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, groups=groups,
                              weight_attr=paddle.ParamAttr(
                                  initializer=nn.initializer.KaimingNormal()),
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels, weight_attr=_no_decay(), bias_attr=_no_decay())

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.use_act else x


class ESEModule(nn.Layer):
    """Effective squeeze-excitation: ``x * sigmoid(conv(global_avg_pool(x)))``.

    ``conv`` is a 1x1 C -> C conv with bias; the gate is the true logistic sigmoid.
    """

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2D(channels, channels, 1,
                              weight_attr=paddle.ParamAttr(
                                  initializer=nn.initializer.KaimingNormal()))

    def forward(self, x):
        gate = F.sigmoid(self.conv(F.adaptive_avg_pool2d(x, 1)))
        return x * gate


class HGBlock(nn.Layer):
    """One HG block: ``att(aggregation_conv(concat[x, l0, ..., l5]))`` (+ ``x`` if ``identity``).

    ``layers.{i}`` are 3x3 :class:`ConvBNAct` (in -> mid, then mid -> mid), each fed the previous
    one's output; ``aggregation_conv`` is a 1x1 :class:`ConvBNAct` from ``in + layer_num * mid`` to
    ``out``; ``att`` an :class:`ESEModule`.
    """

    def __init__(self, in_channels, mid_channels, out_channels, layer_num, identity=False):
        super().__init__()
        self.identity = identity
        self.layers = nn.LayerList(
            [ConvBNAct(in_channels if i == 0 else mid_channels, mid_channels, 3)
             for i in range(layer_num)])
        self.aggregation_conv = ConvBNAct(in_channels + layer_num * mid_channels, out_channels, 1)
        self.att = ESEModule(out_channels)

    def forward(self, x):
        outputs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        y = self.att(self.aggregation_conv(paddle.concat(outputs, axis=1)))
        return y + x if self.identity else y


class HGStage(nn.Layer):
    """``blocks(downsample(x))``: an optional depthwise 3x3 conv-BN (no activation) with the stage
    stride, then ``block_num`` :class:`HGBlock` (the first in -> out, the others out -> out with
    identity). Without a downsample the attribute is ``False`` and has no parameters, as in
    PaddleOCR.
    """

    def __init__(self, in_channels, mid_channels, out_channels, block_num, layer_num,
                 downsample=True, stride=(2, 1)):
        super().__init__()
        if downsample:
            stride = list(stride) if isinstance(stride, (list, tuple)) else stride
            self.downsample = ConvBNAct(in_channels, in_channels, 3, stride=stride,
                                        groups=in_channels, use_act=False)
        else:
            self.downsample = False
        self.blocks = nn.Sequential(*[
            HGBlock(in_channels if j == 0 else out_channels, mid_channels, out_channels,
                    layer_num, identity=j > 0)
            for j in range(block_num)])

    def forward(self, x):
        if self.downsample:
            x = self.downsample(x)
        return self.blocks(x)


@BACKBONES.register()
class PPHGNet_small(nn.Layer):
    """PP-HGNet small, PaddleOCR's PP-OCRv4 server backbone for detection and recognition.

    ``stem`` (3x3 conv-BN-ReLU 3->64 s2, 64->64, 64->128), then for ``det`` a 3x3 s2 max pool,
    then ``stages.{0..3}`` (:class:`HGStage`, six-layer :class:`HGBlock`; in -> mid -> out
    128->128->256, 256->160->512, 512->192->768 (2 blocks), 768->224->1024).

    - ``det=True``: stage 0 has no downsample, the others stride 2; returns the four stage
      outputs at strides 4, 8, 16, 32, ``out_channels = [256, 512, 768, 1024]`` (the entries
      named by ``out_indices``).
    - ``det=False`` (rec): downsample strides [2,1], [1,2], [2,1], [2,1]; the 1024-channel map is
      pooled to height 1: training ``adaptive_avg_pool2d(x, [1, 40])``, eval
      ``avg_pool2d(x, [3, 2])``. A [N, 3, 48, 320] input gives [N, 1024, 1, 40] in both modes.

    Args:
        in_channels: image channels.
        det: build the detection variant.
        out_indices: which stage outputs the det variant returns (default all four).
        pretrained, use_ssld: accepted for PaddleOCR compatibility; ppdistill does not download
            ImageNet weights, so a true ``pretrained`` is an error (use
            ``Global.pretrained_model``).

    YAML::

        Backbone:
          name: PPHGNet_small
          det: true          # omit for the rec variant (ch_PP-OCRv4_rec_hgnet.yml)
    """

    def __init__(self, in_channels=3, det=False, out_indices=None, pretrained=False,
                 use_ssld=False):
        super().__init__()
        if pretrained:
            raise ConfigError("PPHGNet_small: pretrained=true asks for ImageNet weights, which "
                              "ppdistill does not download; set Global.pretrained_model to a "
                              "local .pdparams file instead")
        out_indices = [0, 1, 2, 3] if out_indices is None else list(out_indices)
        if not out_indices or any(i not in (0, 1, 2, 3) for i in out_indices):
            raise ConfigError(f"PPHGNet_small: out_indices must be a non-empty subset of "
                              f"[0, 1, 2, 3], got {out_indices!r}")
        self.det = bool(det)
        self.out_indices = out_indices
        stem = (in_channels,) + SMALL_STEM
        self.stem = nn.Sequential(*[
            ConvBNAct(stem[i], stem[i + 1], 3, stride=2 if i == 0 else 1)
            for i in range(len(stem) - 1)])
        table = SMALL_STAGES_DET if self.det else SMALL_STAGES_REC
        self.stages = nn.LayerList([
            HGStage(cin, mid, cout, blocks, SMALL_LAYERS_PER_BLOCK, downsample, stride)
            for cin, mid, cout, blocks, downsample, stride in table])
        if self.det:
            self.out_channels = [table[i][2] for i in out_indices]
        else:
            self.out_channels = table[-1][2]

    def forward(self, x):
        x = self.stem(x)
        if self.det:
            x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if self.det and i in self.out_indices:
                outputs.append(x)
        if self.det:
            return outputs
        if self.training:
            return F.adaptive_avg_pool2d(x, list(REC_TRAIN_POOL))
        return F.avg_pool2d(x, list(REC_EVAL_POOL))
