"""SVTRNet, the single-visual-model text recogniser used as the PP-OCRv4 rec distillation teacher.

Parameter names follow PaddleOCR's ``rec_svtrnet``: ``pos_embed``,
``patch_embed.proj.{0,1}.{conv,norm}``, ``blocks{1,2,3}.N.{norm1,mixer,norm2,mlp}``,
``sub_sample{1,2}.{conv,norm}`` and, with ``last_stage``, ``last_conv`` (153 + 1 entries for the
v4 teacher), so PaddleOCR checkpoints load by name.
"""
import numpy as np
import paddle
from paddle import nn

from ppdistill.modeling.necks.rec_svtr import (Attention, DropPath, Mlp, SVTRConvBNLayer,
                                               init_transformer_weights)
from ppdistill.registry import BACKBONES, ConfigError

__all__ = ["SVTRNet", "SVTRBlock", "SVTRAttention", "ConvMixer", "PatchEmbed", "SubSample"]

#: activation names accepted in ``act`` (PaddleOCR writes them as ``nn.<Class>`` strings).
ACTIVATIONS = {"GELU": nn.GELU, "Swish": nn.Swish, "ReLU": nn.ReLU, "Hardswish": nn.Hardswish}
MIXERS = ("Global", "Local", "Conv")


def _activation(name, path):
    short = name[3:] if isinstance(name, str) and name.startswith("nn.") else name
    if short not in ACTIVATIONS:
        raise ConfigError(f"{path}: unsupported activation {name!r} (supported: "
                          f"{', '.join('nn.' + n for n in ACTIVATIONS)})")
    return ACTIVATIONS[short]


def _layer_norm(name, path):
    if name not in ("nn.LayerNorm", "LayerNorm"):
        raise ConfigError(f"{path}: only nn.LayerNorm is supported, got {name!r}")
    return nn.LayerNorm


class ConvMixer(nn.Layer):
    """Local mixing by a grouped conv on the token grid: tokens ``[N, h*w, C]`` ->
    ``[N, C, h, w]`` -> ``local_mixer`` (k x k, groups = num_heads, with bias, KaimingNormal)
    -> tokens."""

    def __init__(self, dim, num_heads=8, hw=(8, 25), local_k=(3, 3)):
        super().__init__()
        self.hw = list(hw)
        self.dim = dim
        self.local_mixer = nn.Conv2D(
            dim, dim, list(local_k), 1, [local_k[0] // 2, local_k[1] // 2], groups=num_heads,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal()))

    def forward(self, x):
        x = x.transpose([0, 2, 1]).reshape([0, self.dim, self.hw[0], self.hw[1]])
        return self.local_mixer(x).flatten(2).transpose([0, 2, 1])


class SVTRAttention(Attention):
    """Multi-head self-attention over tokens (:class:`~ppdistill.modeling.necks.rec_svtr.Attention`);
    "Local" adds a -inf mask outside a window.

    ``softmax((q * scale) k^T [+ mask]) v`` with ``scale = qk_scale or head_dim ** -0.5``
    (q scaled before the product), heads concatenated, ``proj``. For "Local" the mask lets token
    (h, w) attend only to tokens within ``local_k`` = [kh, kw] centred on it.
    """

    def __init__(self, dim, num_heads=8, mixer="Global", hw=None, local_k=(7, 11),
                 qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__(dim, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop)
        self.mixer = mixer
        if mixer == "Local" and hw is not None:
            self.mask = paddle.to_tensor(self.local_mask(hw, local_k)).unsqueeze([0, 1])

    @staticmethod
    def local_mask(hw, local_k):
        """``[h*w, h*w]`` float32: 0 where |dh| <= kh//2 and |dw| <= kw//2 (window cut at the
        borders as PaddleOCR's padded construction does), -inf elsewhere."""
        height, width = hw
        kh, kw = local_k
        rows = np.arange(height * width)
        dh = rows[:, None] // width - rows[None, :] // width
        dw = rows[:, None] % width - rows[None, :] % width
        # PaddleOCR's window for query (h, w) covers rows h - kh//2 .. h + kh - 1 - kh//2.
        inside = (dh <= kh // 2) & (-dh <= kh - 1 - kh // 2) & \
                 (dw <= kw // 2) & (-dw <= kw - 1 - kw // 2)
        return np.where(inside, 0.0, -np.inf).astype("float32")


class SVTRBlock(nn.Layer):
    """Mixer + MLP block. ``prenorm=True`` (PaddleOCR's name) is *post*-norm:
    ``x = norm1(x + mixer(x)); x = norm2(x + mlp(x))``; ``prenorm=False`` is norm-first:
    ``x += mixer(norm1(x)); x += mlp(norm2(x))``. Residual branches go through DropPath.
    Sub-layers ``norm1``, ``mixer``, ``norm2``, ``mlp`` (fc1 dim -> dim*mlp_ratio, fc2 back)."""

    def __init__(self, dim, num_heads, mixer="Global", local_mixer=(7, 11), hw=None,
                 mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path=0.0, act_layer=nn.GELU, epsilon=1e-6, prenorm=True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=epsilon)
        if mixer in ("Global", "Local"):
            self.mixer = SVTRAttention(dim, num_heads, mixer, hw, local_mixer, qkv_bias,
                                       qk_scale, attn_drop, drop)
        elif mixer == "Conv":
            self.mixer = ConvMixer(dim, num_heads, hw, local_mixer)
        else:
            raise ConfigError(f"SVTRNet.mixer: unknown mixer {mixer!r} (supported: "
                              f"{', '.join(MIXERS)})")
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, epsilon=epsilon)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.prenorm = prenorm

    def forward(self, x):
        if self.prenorm:
            x = self.norm1(x + self.drop_path(self.mixer(x)))
            return self.norm2(x + self.drop_path(self.mlp(x)))
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Layer):
    """``sub_num`` stride-2 3x3 conv-BN-GELU layers (``proj.{i}``, with bias), halving the
    channels from ``embed_dim`` backwards; output tokens ``[N, (H/2^s)(W/2^s), embed_dim]``.
    The input must be exactly ``img_size``."""

    def __init__(self, img_size, in_channels=3, embed_dim=768, sub_num=2):
        super().__init__()
        if sub_num not in (2, 3):
            raise ConfigError(f"SVTRNet.sub_num: must be 2 or 3, got {sub_num!r}")
        self.img_size = list(img_size)
        self.num_patches = (img_size[1] // 2 ** sub_num) * (img_size[0] // 2 ** sub_num)
        widths = [embed_dim // 2 ** (sub_num - 1 - i) for i in range(sub_num)]
        layers, prev = [], in_channels
        for width in widths:
            layers.append(SVTRConvBNLayer(prev, width, kernel_size=3, stride=2, padding=1,
                                          bias_attr=None, act=nn.GELU))
            prev = width
        self.proj = nn.Sequential(*layers)

    def forward(self, x):
        height, width = x.shape[2], x.shape[3]
        if [height, width] != self.img_size:
            raise ValueError(f"SVTRNet: input size {height}x{width} does not match img_size "
                             f"{self.img_size[0]}x{self.img_size[1]} (resize the images to it)")
        return self.proj(x).flatten(2).transpose([0, 2, 1])


class SubSample(nn.Layer):
    """Patch merging between stages on the token grid ``[N, C, h, w]``, height stride 2.

    "Conv": ``conv`` 3x3 stride ``stride`` pad 1 (with bias, KaimingNormal) -> tokens.
    "Pool": mean of avg- and max-pool ([3, 5], pad [1, 2]) -> tokens -> Linear ``proj``.
    Then ``norm`` (LayerNorm, default eps 1e-5)."""

    def __init__(self, in_channels, out_channels, types="Pool", stride=(2, 1)):
        super().__init__()
        self.types = types
        if types == "Pool":
            self.avgpool = nn.AvgPool2D(kernel_size=[3, 5], stride=list(stride), padding=[1, 2])
            self.maxpool = nn.MaxPool2D(kernel_size=[3, 5], stride=list(stride), padding=[1, 2])
            self.proj = nn.Linear(in_channels, out_channels)
        else:
            self.conv = nn.Conv2D(
                in_channels, out_channels, 3, stride=list(stride), padding=1,
                weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal()))
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x):
        if self.types == "Pool":
            x = (self.avgpool(x) + self.maxpool(x)) * 0.5
            return self.norm(self.proj(x.flatten(2).transpose([0, 2, 1])))
        return self.norm(self.conv(x).flatten(2).transpose([0, 2, 1]))


@BACKBONES.register()
class SVTRNet(nn.Layer):
    """SVTR: patch embedding, three stages of mixing blocks with patch merging, optional head.

    Forward on ``[N, in_channels, H, W]`` (H, W = ``img_size``; sub_num 2 gives a token grid
    h x w = H/4 x W/4):

    1. ``patch_embed`` -> tokens ``[N, h*w, embed_dim[0]]``, ``+ pos_embed``, dropout.
    2. ``blocks1`` (``depth[0]`` blocks), ``sub_sample1`` (h -> h/2, width embed_dim[1]),
       ``blocks2``, ``sub_sample2`` (h/2 -> h/4), ``blocks3``; ``mixer[i]`` picks block i's
       mixer (Global / Local attention or Conv), ``local_mixer[stage]`` its window.
       DropPath rates rise linearly from 0 to ``drop_path_rate`` over all blocks.
    3. ``prenorm`` false: a final LayerNorm ``norm``.
    4. ``last_stage``: adaptive avg-pool of the ``[N, C, h/4, w]`` grid to [1, out_char_num]
       -> ``last_conv`` 1x1 (no bias) to ``out_channels`` -> hardswish -> dropout
       (``last_drop``, downscale in inference) -> ``[N, out_channels, 1, out_char_num]``.
       Without it the output is the tokens ``[N, h/4 * w, embed_dim[2]]``.

    ``out_channels`` is the config value either way (as in PaddleOCR), so a head built on a
    ``last_stage: false`` SVTRNet expects channels the tokens do not have; the PP-OCRv4
    distillation teacher therefore needs ``last_stage: true`` (see
    ``configs/rec/ch_PP-OCRv4_rec_distill.yml``).

    Args:
        img_size: [H, W] of the (fixed-size) input.
        in_channels: image channels.
        embed_dim, depth, num_heads: per stage.
        mixer: one of Global / Local / Conv per block (``sum(depth)`` entries).
        local_mixer: [kh, kw] per stage (Local attention window or Conv kernel).
        patch_merging: "Conv", "Pool" or anything else for none.
        mlp_ratio, qkv_bias, qk_scale: block settings.
        drop_rate, attn_drop_rate, drop_path_rate, last_drop: dropouts.
        norm_layer, sub_norm: only ``nn.LayerNorm``.
        epsilon: LayerNorm epsilon inside the blocks.
        out_channels, out_char_num: the ``last_stage`` output size.
        block_unit: only ``Block``.
        act: block MLP activation, e.g. ``nn.GELU``.
        last_stage: add the pooling head (step 4).
        sub_num: number of stride-2 patch-embedding convs (2 or 3).
        prenorm: post-norm blocks without a final norm (see :class:`SVTRBlock`).
        use_lenhead: also return a length prediction ``len_conv(mean(tokens))``.

    Difference from PaddleOCR: unknown arguments are rejected (PaddleOCR swallows them in
    ``**kwargs``) and names are resolved from tables, never ``eval``.

    YAML (PP-OCRv4 distillation teacher)::

        Backbone:
          name: SVTRNet
          img_size: [48, 320]
          out_char_num: 40
          out_channels: 192
          patch_merging: Conv
          embed_dim: [64, 128, 256]
          depth: [3, 6, 3]
          num_heads: [2, 4, 8]
          mixer: [Conv, Conv, Conv, Conv, Conv, Conv,
                  Global, Global, Global, Global, Global, Global]
          local_mixer: [[5, 5], [5, 5], [5, 5]]
          last_stage: true
          prenorm: true
    """

    def __init__(self, img_size=(32, 100), in_channels=3, embed_dim=(64, 128, 256),
                 depth=(3, 6, 3), num_heads=(2, 4, 8), mixer=("Local",) * 6 + ("Global",) * 6,
                 local_mixer=((7, 11), (7, 11), (7, 11)), patch_merging="Conv", mlp_ratio=4,
                 qkv_bias=True, qk_scale=None, drop_rate=0.0, last_drop=0.1, attn_drop_rate=0.0,
                 drop_path_rate=0.1, norm_layer="nn.LayerNorm", sub_norm="nn.LayerNorm",
                 epsilon=1e-6, out_channels=192, out_char_num=25, block_unit="Block",
                 act="nn.GELU", last_stage=True, sub_num=2, prenorm=True, use_lenhead=False):
        super().__init__()
        path = "SVTRNet"
        embed_dim, depth, num_heads = list(embed_dim), list(depth), list(num_heads)
        mixer = list(mixer)
        for name, value in (("embed_dim", embed_dim), ("depth", depth),
                            ("num_heads", num_heads), ("local_mixer", list(local_mixer))):
            if len(value) != 3:
                raise ConfigError(f"{path}.{name}: expected 3 entries (one per stage), "
                                  f"got {value!r}")
        if len(mixer) < sum(depth):
            raise ConfigError(f"{path}.mixer: needs one entry per block ({sum(depth)}), "
                              f"got {len(mixer)}")
        if block_unit != "Block":
            raise ConfigError(f"{path}.block_unit: only 'Block' is provided, got {block_unit!r}")
        _layer_norm(norm_layer, f"{path}.norm_layer")
        _layer_norm(sub_norm, f"{path}.sub_norm")
        act_layer = _activation(act, f"{path}.act")
        self.img_size = list(img_size)
        self.embed_dim = embed_dim
        self.out_channels = out_channels
        self.prenorm = prenorm
        self.patch_merging = patch_merging if patch_merging in ("Conv", "Pool") else None
        self.last_stage = last_stage
        self.use_lenhead = use_lenhead

        self.patch_embed = PatchEmbed(self.img_size, in_channels, embed_dim[0], sub_num)
        self.hw = [self.img_size[0] // 2 ** sub_num, self.img_size[1] // 2 ** sub_num]
        self.pos_embed = self.create_parameter(
            [1, self.patch_embed.num_patches, embed_dim[0]],
            default_initializer=nn.initializer.TruncatedNormal(std=0.02))
        self.pos_drop = nn.Dropout(p=drop_rate)
        rates = np.linspace(0, drop_path_rate, sum(depth))
        starts = [0, depth[0], depth[0] + depth[1]]
        grids = [self.hw, [self.hw[0] // 2, self.hw[1]], [self.hw[0] // 4, self.hw[1]]]
        if self.patch_merging is None:
            grids = [self.hw] * 3
        for stage in range(3):
            blocks = nn.LayerList([
                SVTRBlock(embed_dim[stage], num_heads[stage], mixer=mixer[starts[stage] + i],
                          local_mixer=list(local_mixer[stage]), hw=grids[stage],
                          mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                          drop=drop_rate, attn_drop=attn_drop_rate,
                          drop_path=float(rates[starts[stage] + i]), act_layer=act_layer,
                          epsilon=epsilon, prenorm=prenorm)
                for i in range(depth[stage])])
            setattr(self, f"blocks{stage + 1}", blocks)
            if stage < 2 and self.patch_merging is not None:
                setattr(self, f"sub_sample{stage + 1}",
                        SubSample(embed_dim[stage], embed_dim[stage + 1], self.patch_merging))
        self.grids = grids
        if last_stage:
            self.avg_pool = nn.AdaptiveAvgPool2D([1, out_char_num])
            self.last_conv = nn.Conv2D(embed_dim[2], out_channels, 1, bias_attr=False)
            self.hardswish = nn.Hardswish()
            self.dropout = nn.Dropout(p=last_drop, mode="downscale_in_infer")
        if not prenorm:
            self.norm = nn.LayerNorm(embed_dim[-1], epsilon=epsilon)
        if use_lenhead:
            self.len_conv = nn.Linear(embed_dim[2], out_channels)
            self.hardswish_len = nn.Hardswish()
            self.dropout_len = nn.Dropout(p=last_drop, mode="downscale_in_infer")
        self.apply(init_transformer_weights)

    @property
    def fixed_input_size(self):
        """``[H, W]``: the only input size accepted (used by export for the input spec)."""
        return list(self.img_size)

    def _to_grid(self, x, stage):
        height, width = self.grids[stage]
        return x.transpose([0, 2, 1]).reshape([0, self.embed_dim[stage], height, width])

    def forward_features(self, x):
        x = self.pos_drop(self.patch_embed(x) + self.pos_embed)
        for stage in range(3):
            for block in getattr(self, f"blocks{stage + 1}"):
                x = block(x)
            if stage < 2 and self.patch_merging is not None:
                x = getattr(self, f"sub_sample{stage + 1}")(self._to_grid(x, stage))
        return x if self.prenorm else self.norm(x)

    def forward(self, x):
        x = self.forward_features(x)
        if self.use_lenhead:
            len_x = self.dropout_len(self.hardswish_len(self.len_conv(x.mean(1))))
        if self.last_stage:
            x = self.avg_pool(self._to_grid(x, 2))
            x = self.dropout(self.hardswish(self.last_conv(x)))
        return (x, len_x) if self.use_lenhead else x

