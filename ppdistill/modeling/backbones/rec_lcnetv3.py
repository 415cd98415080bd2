"""PP-LCNetV3 (PaddleOCR's ``rec_lcnetv3``): the PP-OCRv4 / PP-OCRv5 mobile det and rec backbone.

Every spatial and pointwise convolution is a :class:`LearnableRepLayer`, a MobileOne-style sum of
parallel Conv-BN branches (plus a BN "identity" branch and a 1x1 branch) followed by learnable
affine blocks. For deployment :meth:`LearnableRepLayer.rep` folds the branches into one conv
(``reparam_conv``); :func:`load_fused_into_training_form` is the inverse, used by importers that
only have the fused weights. Sub-layer names equal PaddleOCR's, so checkpoints load by name.
"""
import logging

import numpy as np
import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.modeling.backbones.det_mobilenet_v3 import make_divisible as _make_divisible
from ppdistill.ops.rep_layer import rep_layer_forward
from ppdistill.registry import BACKBONES, ConfigError

__all__ = [
    "PPLCNetV3", "LearnableRepLayer", "LCNetV3Block", "LearnableAffineBlock", "ConvBNLayer",
    "SELayer", "make_divisible", "load_fused_into_training_form", "NET_CONFIG_DET",
    "NET_CONFIG_REC",
]

STAGES = ("blocks2", "blocks3", "blocks4", "blocks5", "blocks6")

# Rows of [kernel, in_c, out_c, stride, use_se] per stage, before scaling (PaddleOCR's tables).
NET_CONFIG_DET = {
    "blocks2": [[3, 16, 32, 1, False]],
    "blocks3": [[3, 32, 64, 2, False], [3, 64, 64, 1, False]],
    "blocks4": [[3, 64, 128, 2, False], [3, 128, 128, 1, False]],
    "blocks5": [[3, 128, 256, 2, False]] + [[5, 256, 256, 1, False]] * 4,
    "blocks6": [[5, 256, 512, 2, True], [5, 512, 512, 1, True],
                [5, 512, 512, 1, False], [5, 512, 512, 1, False]],
}
# Recognition keeps the width longer: tuple strides (2, 1) halve only the height.
NET_CONFIG_REC = {
    "blocks2": [[3, 16, 32, 1, False]],
    "blocks3": [[3, 32, 64, 1, False], [3, 64, 64, 1, False]],
    "blocks4": [[3, 64, 128, (2, 1), False], [3, 128, 128, 1, False]],
    "blocks5": [[3, 128, 256, (1, 2), False]] + [[5, 256, 256, 1, False]] * 4,
    "blocks6": [[5, 256, 512, (2, 1), True], [5, 512, 512, 1, True],
                [5, 512, 512, (2, 1), False], [5, 512, 512, 1, False]],
}
# Output widths of the det projections ``layer_list`` (times scale, truncated).
DET_PROJECTION_CHANNELS = (16, 24, 56, 480)


def make_divisible(v, divisor=16, min_value=None):
    """MobileNetV3's channel rounding with PPLCNetV3's divisor 16 (nearest multiple, half up;
    one more ``divisor`` when rounding down lost over 10 %): x0.75: 64 -> 48, 256 -> 192,
    512 -> 384; x0.95: 256 -> 240, 512 -> 480."""
    return _make_divisible(v, divisor, min_value)


#: ``act_affine`` (scale, bias) of a folded layer whose affine does nothing: no scale op
IDENTITY_AFFINE = (1.0, 0.0)


class LearnableAffineBlock(nn.Layer):
    """``scale * x + bias`` with two learnable scalars (keys ``scale``, ``bias``, in that order).

    Both parameters train with learning-rate multiplier ``lr_mult * lab_lr``.
    """

    def __init__(self, scale_value=1.0, bias_value=0.0, lr_mult=1.0, lab_lr=0.1):
        super().__init__()
        attr = paddle.ParamAttr(learning_rate=lr_mult * lab_lr)
        self.scale = self.create_parameter(
            shape=[1], attr=attr, default_initializer=nn.initializer.Constant(scale_value))
        attr = paddle.ParamAttr(learning_rate=lr_mult * lab_lr)
        self.bias = self.create_parameter(
            shape=[1], attr=attr, default_initializer=nn.initializer.Constant(bias_value))

    def forward(self, x):
        return self.scale * x + self.bias


class ConvBNLayer(nn.Layer):
    """Conv2D k x k (no bias, padding (k-1)//2, KaimingNormal) -> BatchNorm2D, no activation.

    Sub-layers ``conv``, ``bn``; the BN's weight and bias are excluded from weight decay.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, groups=1, lr_mult=1.0):
        super().__init__()
        self.conv = nn.Conv2D(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=(kernel_size - 1) // 2, groups=groups,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal(),
                                         learning_rate=lr_mult),
            bias_attr=False)
        no_decay = paddle.regularizer.L2Decay(0.0)
        self.bn = nn.BatchNorm2D(
            out_channels,
            weight_attr=paddle.ParamAttr(regularizer=no_decay, learning_rate=lr_mult),
            bias_attr=paddle.ParamAttr(regularizer=no_decay, learning_rate=lr_mult))

    def forward(self, x):
        return self.bn(self.conv(x))


class Act(nn.Layer):
    """Hardswish (``act``) followed by a :class:`LearnableAffineBlock` (``lab``)."""

    def __init__(self, lr_mult=1.0, lab_lr=0.1):
        super().__init__()
        self.act = nn.Hardswish()
        self.lab = LearnableAffineBlock(lr_mult=lr_mult, lab_lr=lab_lr)

    def forward(self, x):
        return self.lab(self.act(x))


def _fuse_bn(kernel, bn):
    """Fold eval-mode BatchNorm ``bn`` into ``kernel``: returns (kernel * g/s, beta - mu * g/s)."""
    std = paddle.sqrt(bn._variance + bn._epsilon)
    t = bn.weight / std
    return kernel * t.reshape([-1, 1, 1, 1]), bn.bias - bn._mean * t


class LearnableRepLayer(nn.Layer):
    """A re-parameterisable conv: sum of parallel branches -> ``lab`` -> [``act``].

    Training form (sub-layers in key order): ``identity`` (a BatchNorm2D on the input; only when
    ``in_channels == out_channels`` and ``stride == 1``), ``conv_kxk.{0..B-1}`` (B =
    ``num_conv_branches`` ConvBNLayers k x k), ``conv_1x1`` (ConvBNLayer 1x1; only when k > 1),
    ``lab``, ``act``. Output = ``lab(sum of branches)``, then ``act`` unless ``stride`` is the int
    2 (tuple strides such as ``(2, 1)`` keep the activation, as in PaddleOCR).

    :meth:`rep` fuses the branches (with BN running statistics) into one biased conv
    ``reparam_conv``; afterwards, in any mode, output = ``lab(reparam_conv(x))`` then ``act``
    under the same stride rule. The branches are kept (their keys stay in the state_dict, as in
    PaddleOCR's reference version); a second ``rep()`` does nothing.

    In CPU training (float32, BNs with batch statistics, not repped) the training form runs as
    one fused node that keeps only ``x`` for backward and recomputes the branch convs there
    (``ppdistill.ops.rep_layer``); the math is paddle's, ``PPDISTILL_CPU_KERNELS=0`` turns it
    off.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1,
                 num_conv_branches=1, lr_mult=1.0, lab_lr=0.1):
        super().__init__()
        self.is_repped = False
        self.affine_folded = False
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.padding = (kernel_size - 1) // 2
        self.num_conv_branches = num_conv_branches
        # PaddleOCR compares with the int 1, so a tuple stride never gets an identity branch.
        if in_channels == out_channels and isinstance(stride, int) and stride == 1:
            self.identity = nn.BatchNorm2D(
                in_channels, weight_attr=paddle.ParamAttr(learning_rate=lr_mult),
                bias_attr=paddle.ParamAttr(learning_rate=lr_mult))
        else:
            self.identity = None
        self.conv_kxk = nn.LayerList([
            ConvBNLayer(in_channels, out_channels, kernel_size, stride, groups=groups,
                        lr_mult=lr_mult)
            for _ in range(num_conv_branches)])
        if kernel_size > 1:
            self.conv_1x1 = ConvBNLayer(in_channels, out_channels, 1, stride, groups=groups,
                                        lr_mult=lr_mult)
        else:
            self.conv_1x1 = None
        self.lab = LearnableAffineBlock(lr_mult=lr_mult, lab_lr=lab_lr)
        self.act = Act(lr_mult=lr_mult, lab_lr=lab_lr)
        self.apply_act = not (isinstance(stride, int) and stride == 2)
        if not self.apply_act:
            # PaddleOCR keeps act.lab's keys here but never runs it: not trainable, so that the
            # no-gradient audit does not report it and the optimizer skips it.
            for param in self.act.parameters():
                param.stop_gradient = True

    def forward(self, x):
        if self.affine_folded:  # deployment form (fold_affine)
            out = self.reparam_conv(x)
            if self.apply_act:
                out = F.hardswish(out)
                if self.act_affine != IDENTITY_AFFINE:  # else folded into the next conv
                    out = paddle.scale(out, scale=self.act_affine[0], bias=self.act_affine[1])
            return out
        if self.is_repped:
            out = self.reparam_conv(x)
        else:
            # CPU training: one fused node that keeps only x for backward (ppdistill.ops)
            fused = rep_layer_forward(x, self)
            if fused is not None:
                return fused
            out = 0
            if self.identity is not None:
                out = out + self.identity(x)
            if self.conv_1x1 is not None:
                out = out + self.conv_1x1(x)
            for branch in self.conv_kxk:
                out = out + branch(x)
        out = self.lab(out)
        if self.apply_act:
            out = self.act(out)
        return out

    def identity_kernel(self):
        """The identity branch as a float32 k x k kernel ``[in, in/groups, k, k]`` (a centred
        delta per channel; the identity matrix for a 1x1 layer)."""
        in_per_group = self.in_channels // self.groups
        k = self.kernel_size
        kernel = np.zeros((self.in_channels, in_per_group, k, k), dtype="float32")
        kernel[np.arange(self.in_channels), np.arange(self.in_channels) % in_per_group,
               k // 2, k // 2] = 1
        return paddle.to_tensor(kernel)

    @paddle.no_grad()
    def fused_kernel_bias(self):
        """(weight, bias) of the single conv equal to all branches in eval mode (BN folded)."""
        terms = []
        for branch in self.conv_kxk:
            terms.append(_fuse_bn(branch.conv.weight, branch.bn))
        if self.conv_1x1 is not None:
            k1, b1 = _fuse_bn(self.conv_1x1.conv.weight, self.conv_1x1.bn)
            pad = self.kernel_size // 2
            terms.append((F.pad(k1, [pad, pad, pad, pad]), b1))
        if self.identity is not None:
            kernel = self.identity_kernel().astype(self.identity.weight.dtype)
            terms.append(_fuse_bn(kernel, self.identity))
        weight, bias = terms[0]
        for k, b in terms[1:]:
            weight, bias = weight + k, bias + b
        return weight, bias

    @paddle.no_grad()
    def rep(self):
        """Fuse all branches into ``reparam_conv`` (a biased Conv2D); idempotent."""
        if self.is_repped:
            return
        weight, bias = self.fused_kernel_bias()
        self.reparam_conv = nn.Conv2D(self.in_channels, self.out_channels, self.kernel_size,
                                      stride=self.stride, padding=self.padding,
                                      groups=self.groups)
        self.reparam_conv.weight.set_value(weight.astype(self.reparam_conv.weight.dtype))
        self.reparam_conv.bias.set_value(bias.astype(self.reparam_conv.bias.dtype))
        self.is_repped = True

    @paddle.no_grad()
    def fold_affine(self):
        """Deployment form, after :meth:`rep`: ``lab`` goes into ``reparam_conv`` (weight × scale,
        bias × scale + bias) and ``act.lab`` becomes the constants ``act_affine`` of one scale op
        after hardswish, so an exported program runs ``conv → hardswish → scale`` instead of
        ``conv → multiply → add → hardswish → multiply → add`` (on paddle.inference + oneDNN the
        v4 mobile rec student takes ~30 % less time). The eval output is unchanged up to float32
        rounding; the affine blocks no longer train. Idempotent."""
        if not self.is_repped:
            raise RuntimeError("fold_affine() needs the fused layer: call rep() first")
        if self.affine_folded:
            return
        scale, shift = self.lab.scale, self.lab.bias
        weight = self.reparam_conv.weight
        self.reparam_conv.weight.set_value(weight * scale.astype(weight.dtype))
        bias = self.reparam_conv.bias
        self.reparam_conv.bias.set_value(bias * scale.astype(bias.dtype)
                                         + shift.astype(bias.dtype))
        self.act_affine = (float(self.act.lab.scale.numpy().reshape(-1)[0]),
                           float(self.act.lab.bias.numpy().reshape(-1)[0]))
        self.affine_folded = True

    @paddle.no_grad()
    def fold_output_affine_into(self, pointwise):
        """Deployment form across two folded layers: this layer's output affine ``act_affine``
        (``s * y + b``) goes into ``pointwise``, a folded 1x1 conv layer (stride 1, no padding,
        one group) that reads this layer's output directly: its kernel becomes ``s * W`` and its
        bias ``bias + b * sum_i W[:, i]`` (summed in float64), which is exact for a 1x1 conv (no
        zero padding for ``b`` to miss) and leaves this layer without its scale op. Returns
        whether it folded (nothing to do without an activation or with an identity affine)."""
        if not (self.affine_folded and pointwise.affine_folded):
            raise RuntimeError("fold_output_affine_into() needs both layers in deployment form: "
                               "call fold_affine() first")
        if not (pointwise.kernel_size == 1 and pointwise.groups == 1 and pointwise.stride == 1
                and pointwise.in_channels == self.out_channels):
            raise ValueError("fold_output_affine_into() folds only into a 1x1, stride-1, "
                             "single-group conv layer reading this layer's channels")
        if not self.apply_act or self.act_affine == IDENTITY_AFFINE:
            return False
        scale, shift = self.act_affine
        conv = pointwise.reparam_conv
        weight = conv.weight.numpy().astype("float64")
        bias = conv.bias.numpy().astype("float64") + shift * weight.sum(axis=(1, 2, 3))
        conv.weight.set_value((weight * scale).astype(str(conv.weight.numpy().dtype)))
        conv.bias.set_value(bias.astype(str(conv.bias.numpy().dtype)))
        self.act_affine = IDENTITY_AFFINE
        return True


def _set(param, value):
    param.set_value(np.broadcast_to(np.asarray(value, dtype="float32"), param.shape)
                    .astype(str(param.numpy().dtype)))


@paddle.no_grad()
def load_fused_into_training_form(layer, weight, bias):
    """Write a fused conv (``weight``, ``bias``) into ``layer``'s training-form branches.

    The inverse of :meth:`LearnableRepLayer.rep`, for importing deployment-only (already fused)
    weights into a trainable model. Afterwards the layer's **eval** output equals
    ``lab(conv(x, weight) + bias)`` (then ``act`` as usual):

    - ``conv_kxk.0``: conv weight = ``weight``; BN weight 1, bias ``bias``, mean 0, variance
      ``1 - eps`` (so ``sqrt(var + eps)`` is exactly 1 in float32);
    - the other ``conv_kxk`` branches and ``conv_1x1``: conv weight 0; BN weight 0, bias 0,
      mean 0, variance 1;
    - ``identity``: weight 0, bias 0, mean 0, variance 1;
    - ``lab`` and ``act.lab`` are left unchanged (they are not part of the fused conv).

    In train mode the BNs normalise with batch statistics, so only the eval function is exact.
    If the layer is already repped, its ``reparam_conv`` is refreshed as well.

    Args:
        layer: a :class:`LearnableRepLayer`.
        weight: ``[out, in/groups, k, k]`` array or tensor.
        bias: ``[out]`` array or tensor.
    """
    if not isinstance(layer, LearnableRepLayer):
        raise TypeError(f"expected a LearnableRepLayer, got {type(layer).__name__}")
    if layer.affine_folded:
        raise ValueError("the layer is in deployment form (fold_affine): its conv carries lab")
    weight = np.asarray(weight.numpy() if isinstance(weight, paddle.Tensor) else weight)
    bias = np.asarray(bias.numpy() if isinstance(bias, paddle.Tensor) else bias)
    main = layer.conv_kxk[0]
    if list(weight.shape) != list(main.conv.weight.shape) or \
            list(bias.shape) != [layer.out_channels]:
        raise ValueError(
            f"fused weight/bias shapes {list(weight.shape)}/{list(bias.shape)} do not fit the "
            f"layer ({list(main.conv.weight.shape)}/{[layer.out_channels]})")
    _set(main.conv.weight, weight)
    _set(main.bn.weight, 1.0)
    _set(main.bn.bias, bias)
    _set(main.bn._mean, 0.0)
    _set(main.bn._variance, np.float32(1.0) - np.float32(main.bn._epsilon))
    zeroed = list(layer.conv_kxk)[1:] + ([layer.conv_1x1] if layer.conv_1x1 is not None else [])
    for branch in zeroed:
        _set(branch.conv.weight, 0.0)
        for name, value in (("weight", 0.0), ("bias", 0.0), ("_mean", 0.0), ("_variance", 1.0)):
            _set(getattr(branch.bn, name), value)
    if layer.identity is not None:
        for name, value in (("weight", 0.0), ("bias", 0.0), ("_mean", 0.0), ("_variance", 1.0)):
            _set(getattr(layer.identity, name), value)
    if layer.is_repped:
        _set(layer.reparam_conv.weight, weight)
        _set(layer.reparam_conv.bias, bias)


class SELayer(nn.Layer):
    """Squeeze-and-excitation with PaddleOCR's default hardsigmoid (slope 1/6, offset 0.5).

    ``x * hardsigmoid(conv2(relu(conv1(avgpool(x)))))``; ``conv1`` 1x1 C -> C//reduction and
    ``conv2`` back to C, both with bias.
    """

    def __init__(self, channel, reduction=4, lr_mult=1.0):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channel, channel // reduction, 1,
                               weight_attr=paddle.ParamAttr(learning_rate=lr_mult),
                               bias_attr=paddle.ParamAttr(learning_rate=lr_mult))
        self.conv2 = nn.Conv2D(channel // reduction, channel, 1,
                               weight_attr=paddle.ParamAttr(learning_rate=lr_mult),
                               bias_attr=paddle.ParamAttr(learning_rate=lr_mult))

    def forward(self, x):
        gate = F.relu(self.conv1(self.avg_pool(x)))
        gate = F.hardsigmoid(self.conv2(gate))
        return x * gate


class LCNetV3Block(nn.Layer):
    """Depthwise ``dw_conv`` (k x k, stride) -> optional ``se`` -> pointwise ``pw_conv`` (1x1).

    Both convs are :class:`LearnableRepLayer` with ``conv_kxk_num`` branches.
    """

    def __init__(self, in_channels, out_channels, stride, dw_size, use_se=False, conv_kxk_num=4,
                 lr_mult=1.0, lab_lr=0.1):
        super().__init__()
        self.use_se = use_se
        self.dw_conv = LearnableRepLayer(in_channels, in_channels, dw_size, stride=stride,
                                         groups=in_channels, num_conv_branches=conv_kxk_num,
                                         lr_mult=lr_mult, lab_lr=lab_lr)
        if use_se:
            self.se = SELayer(in_channels, lr_mult=lr_mult)
        self.pw_conv = LearnableRepLayer(in_channels, out_channels, 1, stride=1,
                                         num_conv_branches=conv_kxk_num, lr_mult=lr_mult,
                                         lab_lr=lab_lr)

    def fold_affine_across_layers(self):
        """Deployment form (after the layers' ``fold_affine``): without SE, ``dw_conv``'s
        output affine goes into ``pw_conv``'s 1x1 conv
        (:meth:`LearnableRepLayer.fold_output_affine_into`), one scale op less per block. With SE
        the gate multiplies in between, so nothing moves. Returns whether it folded."""
        if self.use_se or not (self.dw_conv.affine_folded and self.pw_conv.affine_folded):
            return False
        return self.dw_conv.fold_output_affine_into(self.pw_conv)

    def forward(self, x):
        x = self.dw_conv(x)
        if self.use_se:
            x = self.se(x)
        return self.pw_conv(x)


def _stride(value, path):
    """A stride from the table or YAML: an int, or a 2-list/tuple kept as a tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"{path}: a stride must be an int or [h, w], got {value!r}")
        return tuple(int(v) for v in value)
    return int(value)


def _check_net_config(net_config):
    if not isinstance(net_config, dict) or sorted(net_config) != sorted(STAGES):
        raise ConfigError(f"PPLCNetV3: net_config must map exactly {', '.join(STAGES)} to rows "
                          f"of [kernel, in_c, out_c, stride, use_se], got {net_config!r}")
    checked = {}
    for stage in STAGES:
        rows = []
        for i, row in enumerate(net_config[stage]):
            if not isinstance(row, (list, tuple)) or len(row) != 5:
                raise ConfigError(f"PPLCNetV3: net_config.{stage}[{i}] must be "
                                  f"[kernel, in_c, out_c, stride, use_se], got {row!r}")
            k, in_c, out_c, s, se = row
            rows.append([int(k), in_c, out_c, _stride(s, f"PPLCNetV3: net_config.{stage}[{i}]"),
                         bool(se)])
        checked[stage] = rows
    return checked


@BACKBONES.register()
class PPLCNetV3(nn.Layer):
    """PP-LCNetV3, PaddleOCR's PP-OCRv4/v5 mobile backbone, for detection or recognition.

    ``conv1`` (ConvBN 3x3 s2, 3 -> make_divisible(16 * scale), no activation), then stages
    ``blocks2`` .. ``blocks6`` of :class:`LCNetV3Block` built from ``net_config`` rows
    ``[kernel, in_c, out_c, stride, use_se]`` with channels ``make_divisible(c * scale)``
    (multiples of 16).

    - det: returns the outputs of blocks3..blocks6 (strides 4, 8, 16, 32), each projected by
      ``layer_list.{i}`` (1x1 conv with bias) to ``int(c * scale)`` for c in 16, 24, 56, 480;
      ``out_channels`` is that list, ``[12, 18, 42, 360]`` for x0.75.
    - rec: returns ``[N, make_divisible(512 * scale), 1, T]``: train mode pools adaptively to
      ``[1, 40]``, eval mode uses ``avg_pool2d`` kernel ``[3, 2]`` (T = W / 8).

    :meth:`rep` fuses every :class:`LearnableRepLayer` for deployment (export does this).

    Args:
        scale: width multiplier (0.75 for det, 0.95 for rec in PP-OCRv4/v5).
        conv_kxk_num: parallel k x k branches per LearnableRepLayer.
        lr_mult_list: 6 learning-rate multipliers (conv1, blocks2 .. blocks6).
        lab_lr: extra multiplier for the learnable affine blocks.
        det: detection layout and outputs (else recognition).
        net_config: ppdistill extension; replaces the built-in det/rec table (same row format).
        in_channels: input channels (PaddleOCR always builds 3; BaseModel passes 3 by default).
        pretrained: accepted and **ignored**, exactly as PaddleOCR does (its PPLCNetV3 swallows
            it in ``**kwargs``, so ``pretrained: true`` or a URL there never loads anything); a
            set value logs one warning. Use ``Global.pretrained_model`` to load weights.

    YAML::

        Backbone:
          name: PPLCNetV3
          scale: 0.75
          det: True
    """

    def __init__(self, scale=1.0, conv_kxk_num=4, lr_mult_list=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
                 lab_lr=0.1, det=False, net_config=None, in_channels=3, pretrained=None):
        super().__init__()
        if not isinstance(lr_mult_list, (list, tuple)) or len(lr_mult_list) != 6:
            raise ConfigError(f"PPLCNetV3: lr_mult_list must be a list of 6 numbers (conv1, "
                              f"blocks2..blocks6), got {lr_mult_list!r}")
        if not isinstance(conv_kxk_num, int) or conv_kxk_num < 1:
            raise ConfigError(f"PPLCNetV3: conv_kxk_num must be a positive int, "
                              f"got {conv_kxk_num!r}")
        if pretrained:
            logging.getLogger("ppdistill").warning(
                "PPLCNetV3: Backbone.pretrained=%r is ignored (as in PaddleOCR); load weights "
                "with Global.pretrained_model", pretrained)
        self.scale = scale
        self.det = bool(det)
        self.lr_mult_list = list(lr_mult_list)
        if net_config is None:
            net_config = NET_CONFIG_DET if self.det else NET_CONFIG_REC
        self.net_config = _check_net_config(net_config)

        self.conv1 = ConvBNLayer(in_channels, make_divisible(16 * scale), 3, 2,
                                 lr_mult=self.lr_mult_list[0])
        for i, stage in enumerate(STAGES):
            blocks = [LCNetV3Block(make_divisible(in_c * scale), make_divisible(out_c * scale),
                                   stride=s, dw_size=k, use_se=se, conv_kxk_num=conv_kxk_num,
                                   lr_mult=self.lr_mult_list[i + 1], lab_lr=lab_lr)
                      for k, in_c, out_c, s, se in self.net_config[stage]]
            self.add_sublayer(stage, nn.Sequential(*blocks))
        # = make_divisible(512 * scale) for the built-in tables, as in PaddleOCR
        self.out_channels = make_divisible(self.net_config["blocks6"][-1][2] * scale)
        if self.det:
            stage_channels = [make_divisible(self.net_config[s][-1][2] * scale)
                              for s in STAGES[1:]]
            self.out_channels = [int(c * scale) for c in DET_PROJECTION_CHANNELS]
            self.layer_list = nn.LayerList([
                nn.Conv2D(c_in, c_out, 1) for c_in, c_out in zip(stage_channels,
                                                                 self.out_channels)])

    def forward(self, x):
        x = self.blocks2(self.conv1(x))
        outputs = []
        for stage in STAGES[1:]:
            x = getattr(self, stage)(x)
            outputs.append(x)
        if self.det:
            return [proj(feat) for proj, feat in zip(self.layer_list, outputs)]
        if self.training:
            return F.adaptive_avg_pool2d(x, [1, 40])
        return F.avg_pool2d(x, [3, 2])

    def rep(self):
        """Re-parameterise every LearnableRepLayer (idempotent); returns how many were fused."""
        count = 0
        for layer in self.sublayers():
            if isinstance(layer, LearnableRepLayer) and not layer.is_repped:
                layer.rep()
                count += 1
        return count
