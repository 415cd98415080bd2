"""Feature-pyramid necks of DB text detection (PaddleOCR's ``db_fpn``): DBFPN, RSEFPN, LKPAN.

Each neck takes the backbone's four maps ``[c2, c3, c4, c5]`` (strides 4, 8, 16, 32) and returns
one stride-4 map with ``out_channels`` channels, the concatenation ``[p5, p4, p3, p2]`` of four
``out_channels // 4``-channel maps. All upsampling is nearest-neighbour replication, so the input
image's height and width must be multiples of 32.
"""
import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.modeling.backbones.det_mobilenet_v3 import SEModule
from ppdistill.modeling.necks.intracl import IntraCLBlock
from ppdistill.registry import NECKS, ConfigError

__all__ = ["DBFPN", "RSEFPN", "LKPAN", "RSELayer", "DSConv", "ASFBlock"]


def _kaiming():
    return paddle.ParamAttr(initializer=nn.initializer.KaimingUniform())


def _check_in_channels(cls_name, in_channels):
    if not isinstance(in_channels, (list, tuple)) or len(in_channels) != 4:
        raise ConfigError(f"{cls_name}: in_channels must list the 4 backbone stage channels "
                          f"(strides 4, 8, 16, 32), got {in_channels!r}")
    return list(in_channels)


def _check_pyramid(cls_name, features):
    """Fail clearly when the four maps are not at strides 4/8/16/32 of one image."""
    if not isinstance(features, (list, tuple)) or len(features) != 4:
        raise ValueError(f"{cls_name}: expected a list of 4 backbone feature maps, got "
                         f"{type(features).__name__}")
    if not paddle.in_dynamic_mode():
        return  # symbolic shapes (static graph export): nothing to check
    sizes = [tuple(f.shape[2:]) for f in features]
    for finer, coarser in zip(sizes[:-1], sizes[1:]):
        if finer != (coarser[0] * 2, coarser[1] * 2):
            raise ValueError(f"{cls_name}: feature maps of sizes {sizes} cannot be merged; the "
                             f"input image height and width must be multiples of 32")


def _upsample(x, scale):
    return F.interpolate(x, scale_factor=scale, mode="nearest", align_mode=1)


def _top_down(in2, in3, in4, in5):
    """``out4 = in4 + up2(in5)``, ``out3 = in3 + up2(out4)``, ``out2 = in2 + up2(out3)``."""
    out4 = in4 + _upsample(in5, 2)
    out3 = in3 + _upsample(out4, 2)
    out2 = in2 + _upsample(out3, 2)
    return out2, out3, out4


def _fuse(p2, p3, p4, p5):
    """Upsample to stride 4 and concatenate ``[p5, p4, p3, p2]`` on the channel axis."""
    return paddle.concat([_upsample(p5, 8), _upsample(p4, 4), _upsample(p3, 2), p2], axis=1)


class ASFBlock(nn.Layer):
    """Adaptive scale fusion of DBNet++: re-weights the four fused maps by learned attention.

    ``f = conv(fuse)``; ``s = spatial_scale(mean_c(f)) + f``; ``a = channel_scale(s)`` gives one
    sigmoid weight map per scale; output is ``concat(a[:, i] * features[i])``.
    Sub-layers ``conv`` (3x3, with bias), ``spatial_scale`` (3x3 conv, relu, 1x1 conv, sigmoid on
    one channel, no biases), ``channel_scale`` (1x1 conv to 4 maps, sigmoid, no bias).
    """

    def __init__(self, in_channels, inter_channels, out_features_num=4):
        super().__init__()
        self.out_features_num = out_features_num
        self.conv = nn.Conv2D(in_channels, inter_channels, 3, padding=1)
        self.spatial_scale = nn.Sequential(
            nn.Conv2D(1, 1, 3, padding=1, weight_attr=_kaiming(), bias_attr=False),
            nn.ReLU(),
            nn.Conv2D(1, 1, 1, weight_attr=_kaiming(), bias_attr=False),
            nn.Sigmoid())
        self.channel_scale = nn.Sequential(
            nn.Conv2D(inter_channels, out_features_num, 1, weight_attr=_kaiming(),
                      bias_attr=False),
            nn.Sigmoid())

    def forward(self, fuse_features, features_list):
        if len(features_list) != self.out_features_num:
            raise ValueError(f"ASFBlock: expected {self.out_features_num} feature maps, got "
                             f"{len(features_list)}")
        fuse_features = self.conv(fuse_features)
        spatial = paddle.mean(fuse_features, axis=1, keepdim=True)
        scores = self.channel_scale(self.spatial_scale(spatial) + fuse_features)
        return paddle.concat([scores[:, i:i + 1] * feat for i, feat in enumerate(features_list)],
                             axis=1)


@NECKS.register()
class DBFPN(nn.Layer):
    """The plain DB feature pyramid (no BN, no activation).

    ``in_k = in{k}_conv(c_k)`` (1x1 to ``out_channels``), top-down ``out4 = in4 + up2(in5)``,
    ``out3 = in3 + up2(out4)``, ``out2 = in2 + up2(out3)``; ``p5 = p5_conv(in5)``,
    ``p4 = p4_conv(out4)``, ... (3x3 to ``out_channels // 4``); output
    ``concat[up8(p5), up4(p4), up2(p3), p2]``, optionally re-weighted by an :class:`ASFBlock`.

    Args:
        in_channels: the 4 backbone channel counts.
        out_channels: output channels (4 maps of ``out_channels // 4``).
        use_asf: add DBNet++'s adaptive scale fusion (sub-layer ``asf``).

    YAML::

        Neck:
          name: DBFPN
          out_channels: 256
    """

    def __init__(self, in_channels, out_channels, use_asf=False):
        super().__init__()
        in_channels = _check_in_channels("DBFPN", in_channels)
        self.out_channels = out_channels
        self.use_asf = use_asf
        quarter = out_channels // 4
        for k, channels in zip((2, 3, 4, 5), in_channels):
            setattr(self, f"in{k}_conv", nn.Conv2D(channels, out_channels, 1,
                                                   weight_attr=_kaiming(), bias_attr=False))
        for k in (5, 4, 3, 2):
            setattr(self, f"p{k}_conv", nn.Conv2D(out_channels, quarter, 3, padding=1,
                                                  weight_attr=_kaiming(), bias_attr=False))
        if use_asf:
            self.asf = ASFBlock(out_channels, quarter)

    def forward(self, x):
        _check_pyramid("DBFPN", x)
        c2, c3, c4, c5 = x
        in5, in4 = self.in5_conv(c5), self.in4_conv(c4)
        in3, in2 = self.in3_conv(c3), self.in2_conv(c2)
        out2, out3, out4 = _top_down(in2, in3, in4, in5)
        p5, p4 = self.p5_conv(in5), self.p4_conv(out4)
        p3, p2 = self.p3_conv(out3), self.p2_conv(out2)
        fuse = _fuse(p2, p3, p4, p5)
        if self.use_asf:
            fuse = self.asf(fuse, [_upsample(p5, 8), _upsample(p4, 4), _upsample(p3, 2), p2])
        return fuse


class RSELayer(nn.Layer):
    """``in_conv`` (kxk, padding k//2, no bias) followed by a residual squeeze-excitation.

    Output ``x + SE(x)`` (= ``x * (1 + gate)``) when ``shortcut`` else ``SE(x)``, with
    ``x = in_conv(input)`` and SE the slope-0.2 :class:`SEModule` (sub-layer ``se_block``).
    """

    def __init__(self, in_channels, out_channels, kernel_size, shortcut=True):
        super().__init__()
        self.out_channels = out_channels
        self.shortcut = shortcut
        self.in_conv = nn.Conv2D(in_channels, out_channels, kernel_size,
                                 padding=kernel_size // 2, weight_attr=_kaiming(),
                                 bias_attr=False)
        self.se_block = SEModule(out_channels)

    def forward(self, ins):
        x = self.in_conv(ins)
        return x + self.se_block(x) if self.shortcut else self.se_block(x)


@NECKS.register()
class RSEFPN(nn.Layer):
    """DBFPN with residual-SE convolutions (PP-OCRv3 student neck).

    Same topology as :class:`DBFPN`: ``ins_conv[i]`` (RSELayer, 1x1 to ``out_channels``) replaces
    ``in{i+2}_conv`` and ``inp_conv[i]`` (RSELayer, 3x3 to ``out_channels // 4``) replaces
    ``p{i+2}_conv``; output ``concat[up8(p5), up4(p4), up2(p3), p2]``.

    Args:
        in_channels: the 4 backbone channel counts.
        out_channels: output channels.
        shortcut: RSELayers output ``x + SE(x)`` instead of ``SE(x)``.

    YAML::

        Neck:
          name: RSEFPN
          out_channels: 96
          shortcut: true
    """

    def __init__(self, in_channels, out_channels, shortcut=True):
        super().__init__()
        in_channels = _check_in_channels("RSEFPN", in_channels)
        self.out_channels = out_channels
        self.ins_conv = nn.LayerList()
        self.inp_conv = nn.LayerList()
        for channels in in_channels:
            self.ins_conv.append(RSELayer(channels, out_channels, 1, shortcut=shortcut))
            self.inp_conv.append(RSELayer(out_channels, out_channels // 4, 3, shortcut=shortcut))

    def forward(self, x):
        _check_pyramid("RSEFPN", x)
        c2, c3, c4, c5 = x
        in5, in4 = self.ins_conv[3](c5), self.ins_conv[2](c4)
        in3, in2 = self.ins_conv[1](c3), self.ins_conv[0](c2)
        out2, out3, out4 = _top_down(in2, in3, in4, in5)
        p5, p4 = self.inp_conv[3](in5), self.inp_conv[2](out4)
        p3, p2 = self.inp_conv[1](out3), self.inp_conv[0](out2)
        return _fuse(p2, p3, p4, p5)


class DSConv(nn.Layer):
    """Depthwise-separable large-kernel conv of LKPAN's lite mode.

    ``conv3(relu(bn2(conv2(bn1(conv1(x))))))`` with ``conv1`` depthwise kxk, ``conv2`` 1x1 to
    4x channels and ``conv3`` 1x1 to ``out_channels`` (no biases); when the channel count
    changes, ``conv_end(x)`` (1x1) is added. Without a channel change there is no residual.
    """

    def __init__(self, in_channels, out_channels, kernel_size, padding, stride=1, act="relu"):
        super().__init__()
        if act not in ("relu", "hardswish", None):
            raise ConfigError(f"DSConv: act must be relu, hardswish or None, got {act!r}")
        self.act = act
        self.conv1 = nn.Conv2D(in_channels, in_channels, kernel_size, stride, padding,
                               groups=in_channels, bias_attr=False)
        self.bn1 = nn.BatchNorm(num_channels=in_channels, act=None)
        self.conv2 = nn.Conv2D(in_channels, in_channels * 4, 1, 1, bias_attr=False)
        self.bn2 = nn.BatchNorm(num_channels=in_channels * 4, act=None)
        self.conv3 = nn.Conv2D(in_channels * 4, out_channels, 1, 1, bias_attr=False)
        self.has_end = in_channels != out_channels
        if self.has_end:
            self.conv_end = nn.Conv2D(in_channels, out_channels, 1, 1, bias_attr=False)

    def forward(self, inputs):
        x = self.bn2(self.conv2(self.bn1(self.conv1(inputs))))
        if self.act == "relu":
            x = F.relu(x)
        elif self.act == "hardswish":
            x = F.hardswish(x)
        x = self.conv3(x)
        if self.has_end:
            x = x + self.conv_end(inputs)
        return x


@NECKS.register()
class LKPAN(nn.Layer):
    """Large-kernel path-aggregation network (PP-OCRv3 teacher neck).

    ``in_k = ins_conv[k-2](c_k)`` (1x1), top-down as in DBFPN, ``f_k = inp_conv[k-2](.)``
    (9x9, padding 4, to ``out_channels // 4``), bottom-up ``pan3 = f3 + pan_head_conv[0](f2)``,
    ``pan4 = f4 + pan_head_conv[1](pan3)``, ``pan5 = f5 + pan_head_conv[2](pan4)`` (3x3 s2), then
    ``pan_lat_conv`` (9x9) on ``f2, pan3, pan4, pan5`` and ``concat[up8(p5), up4(p4), up2(p3), p2]``.
    No biases, no BN and no activation in large mode; in lite mode the 9x9 layers are
    :class:`DSConv`. With ``intracl`` (PP-OCRv4 det teacher) four
    :class:`~ppdistill.modeling.necks.intracl.IntraCLBlock` (``out_channels // 4``, reduce
    factor 2), ``incl1`` ... ``incl4``, refine ``p2`` ... ``p5`` before the upsampling.

    Args:
        in_channels: the 4 backbone channel counts.
        out_channels: output channels.
        mode: ``"large"`` (plain 9x9 convs) or ``"lite"`` (DSConv), case-insensitive.
        intracl: add the IntraCL blocks (``ch_PP-OCRv4_det_teacher.yml``).

    YAML::

        Neck:
          name: LKPAN
          out_channels: 256
          intracl: false     # true in the PP-OCRv4 det teacher
    """

    def __init__(self, in_channels, out_channels, mode="large", intracl=False):
        super().__init__()
        in_channels = _check_in_channels("LKPAN", in_channels)
        if not isinstance(mode, str) or mode.lower() not in ("large", "lite"):
            raise ConfigError(f"LKPAN: mode must be 'large' or 'lite', got {mode!r}")
        self.out_channels = out_channels
        quarter = out_channels // 4
        if mode.lower() == "lite":
            def p_layer(cin, cout):
                return DSConv(cin, cout, kernel_size=9, padding=4)
        else:
            def p_layer(cin, cout):
                return nn.Conv2D(cin, cout, 9, padding=4, weight_attr=_kaiming(),
                                 bias_attr=False)
        self.ins_conv = nn.LayerList()
        self.inp_conv = nn.LayerList()
        self.pan_head_conv = nn.LayerList()
        self.pan_lat_conv = nn.LayerList()
        for i, channels in enumerate(in_channels):
            self.ins_conv.append(nn.Conv2D(channels, out_channels, 1, weight_attr=_kaiming(),
                                           bias_attr=False))
            self.inp_conv.append(p_layer(out_channels, quarter))
            if i > 0:
                self.pan_head_conv.append(nn.Conv2D(quarter, quarter, 3, stride=2, padding=1,
                                                    weight_attr=_kaiming(), bias_attr=False))
            self.pan_lat_conv.append(p_layer(quarter, quarter))
        self.intracl = bool(intracl)
        if self.intracl:  # registered after pan_lat_conv: PaddleOCR's state_dict order
            for k in (1, 2, 3, 4):
                setattr(self, f"incl{k}", IntraCLBlock(quarter, reduce_factor=2))

    def forward(self, x):
        _check_pyramid("LKPAN", x)
        c2, c3, c4, c5 = x
        in5, in4 = self.ins_conv[3](c5), self.ins_conv[2](c4)
        in3, in2 = self.ins_conv[1](c3), self.ins_conv[0](c2)
        out2, out3, out4 = _top_down(in2, in3, in4, in5)
        f5, f4 = self.inp_conv[3](in5), self.inp_conv[2](out4)
        f3, f2 = self.inp_conv[1](out3), self.inp_conv[0](out2)
        pan3 = f3 + self.pan_head_conv[0](f2)
        pan4 = f4 + self.pan_head_conv[1](pan3)
        pan5 = f5 + self.pan_head_conv[2](pan4)
        p2, p3 = self.pan_lat_conv[0](f2), self.pan_lat_conv[1](pan3)
        p4, p5 = self.pan_lat_conv[2](pan4), self.pan_lat_conv[3](pan5)
        if self.intracl:
            p5, p4 = self.incl4(p5), self.incl3(p4)
            p3, p2 = self.incl2(p3), self.incl1(p2)
        return _fuse(p2, p3, p4, p5)
