"""The SVTR sequence encoder of the PP-OCRv3 CTC branch and its building blocks.

``EncoderWithSVTR`` is selected by ``SequenceEncoder(encoder_type="svtr")`` (see ``rnn.py``);
``Mlp`` is also used by the NRTR head. Parameter names follow PaddleOCR's ``rec_svtrnet`` /
``necks/rnn.py`` (``encoder.conv1.conv.weight``, ``encoder.svtr_block.0.mixer.qkv.weight``, ...).
"""
import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.registry import ConfigError

__all__ = ["EncoderWithSVTR", "SVTRConvBNLayer", "Attention", "Mlp", "Block"]


class SVTRConvBNLayer(nn.Layer):
    """Conv2D (no bias by default, KaimingUniform init) -> BatchNorm2D (eps 1e-5) -> activation.

    PaddleOCR's ``rec_svtrnet.ConvBNLayer``: sub-layers ``conv`` and ``norm``.

    Args:
        in_channels, out_channels: channels.
        kernel_size, stride, padding, groups: as in Conv2D.
        bias_attr: False (no bias) or a ParamAttr.
        act: activation layer class (``nn.Swish`` in the SVTR neck).
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0,
                 bias_attr=False, groups=1, act=nn.GELU):
        super().__init__()
        self.conv = nn.Conv2D(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingUniform()),
            bias_attr=bias_attr)
        self.norm = nn.BatchNorm2D(out_channels)
        self.act = act()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class DropPath(nn.Dropout):
    """Stochastic depth: in training, zero a whole sample's residual branch with probability
    ``drop_prob`` and divide the kept ones by ``1 - drop_prob``; identity in evaluation.

    A Dropout subclass, so a frozen sub-model pins it to evaluation (deterministic) like its
    other dropouts; it has no parameters, as in PaddleOCR.
    """

    def __init__(self, drop_prob=0.0):
        super().__init__(p=float(drop_prob))
        self.drop_prob = float(drop_prob)

    def forward(self, x):
        if self.drop_prob <= 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = paddle.floor(keep + paddle.rand([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype))
        return x / keep * mask


class Mlp(nn.Layer):
    """``drop(fc2(drop(act(fc1(x)))))``; sub-layers ``fc1`` and ``fc2`` (both with bias).

    Args:
        in_features: input width.
        hidden_features: width of ``fc1`` (defaults to ``in_features``).
        out_features: width of ``fc2`` (defaults to ``in_features``).
        act_layer: activation layer class.
        drop: dropout probability after the activation and after ``fc2``.
    """

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU,
                 drop=0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class Attention(nn.Layer):
    """Global multi-head self-attention over tokens ``[N, L, dim]``.

    ``qkv(x)`` is split into q, k, v of ``num_heads`` heads each (feature index =
    ``s * dim + head * head_dim + d`` with s = 0, 1, 2 for q, k, v); then
    ``softmax((q * scale) k^T) v`` with ``scale = qk_scale or head_dim ** -0.5`` (q is scaled
    before the product), heads concatenated, ``proj``, dropout.

    Args:
        dim: token width; must be divisible by ``num_heads``.
        num_heads: number of heads.
        qkv_bias: whether ``qkv`` has a bias.
        qk_scale: explicit scale, or None for ``head_dim ** -0.5``.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after ``proj``.
    """

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0,
                 proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dim = dim
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.mask = None  # an additive [1, 1, L, L] attention mask (SVTRNet's "Local" mixer)

    def forward(self, x):
        qkv = self.qkv(x).reshape([0, -1, 3, self.num_heads, self.head_dim])
        qkv = qkv.transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = paddle.matmul(q, k, transpose_y=True)
        if self.mask is not None:
            attn = attn + self.mask
        attn = self.attn_drop(F.softmax(attn, axis=-1))
        x = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([0, -1, self.dim])
        return self.proj_drop(self.proj(x))


class Block(nn.Layer):
    """Norm-first transformer block: ``x += mixer(norm1(x)); x += mlp(norm2(x))``.

    PaddleOCR's ``Block`` with mixer "Global" and ``prenorm=False``. Sub-layers ``norm1``,
    ``mixer`` (:class:`Attention`), ``norm2``, ``mlp`` (:class:`Mlp` of width
    ``int(dim * mlp_ratio)``). Stochastic depth (``drop_path``) drops the whole residual branch
    of a sample with that probability in training and rescales the kept ones.
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0,
                 attn_drop=0.0, drop_path=0.0, act_layer=nn.GELU, epsilon=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=epsilon)
        self.mixer = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                               attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, epsilon=epsilon)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x):
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class EncoderWithSVTR(nn.Layer):
    """The SVTR-LCNet neck of PP-OCRv3: local convs + global attention over a 4-D feature map.

    With C = in_channels and Hd = hidden_dims (all activations Swish)::

        z = stop_gradient(x) if use_guide else x;  h = z
        z = conv2(conv1(z))                        # kxk C -> C/8, 1x1 C/8 -> Hd
        z = norm(blocks(flatten_hw(z)))            # depth x Block, LayerNorm eps 1e-6
        z = conv3(unflatten(z))                    # 1x1 Hd -> C
        out = conv1x1(conv4(concat(h, z)))         # kxk 2C -> C/8, 1x1 C/8 -> dims

    With ``use_guide`` the neck (and the CTC head above it) sends no gradient into the backbone.
    ``out_channels = dims``. Linear layers start TruncatedNormal(0.02) with zero bias,
    LayerNorms with weight 1 and bias 0.

    Args:
        in_channels: C.
        dims: output channels.
        depth: number of transformer blocks.
        hidden_dims: token width Hd.
        use_guide: stop the gradient into the input.
        num_heads, qkv_bias, mlp_ratio, qk_scale: attention/MLP settings.
        drop_rate, attn_drop_rate, drop_path: dropout probabilities.
        kernel_size: [kh, kw] of ``conv1`` and ``conv4`` (padding kh//2, kw//2).

    YAML (inside a MultiHead CTC branch)::

        Neck: {name: svtr, dims: 64, depth: 2, hidden_dims: 120, use_guide: True}
    """

    def __init__(self, in_channels, dims=64, depth=2, hidden_dims=120, use_guide=False,
                 num_heads=8, qkv_bias=True, mlp_ratio=2.0, drop_rate=0.1, attn_drop_rate=0.1,
                 drop_path=0.0, kernel_size=(3, 3), qk_scale=None):
        super().__init__()
        kernel_size = list(kernel_size)
        if len(kernel_size) != 2:
            raise ConfigError(f"EncoderWithSVTR: kernel_size must be [kh, kw], got {kernel_size}")
        padding = [kernel_size[0] // 2, kernel_size[1] // 2]
        self.depth = depth
        self.use_guide = use_guide
        self.conv1 = SVTRConvBNLayer(in_channels, in_channels // 8, kernel_size=kernel_size,
                                     padding=padding, act=nn.Swish)
        self.conv2 = SVTRConvBNLayer(in_channels // 8, hidden_dims, kernel_size=1, act=nn.Swish)
        self.svtr_block = nn.LayerList([
            Block(hidden_dims, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate,
                  drop_path=drop_path, act_layer=nn.Swish, epsilon=1e-5)
            for _ in range(depth)])
        self.norm = nn.LayerNorm(hidden_dims, epsilon=1e-6)
        self.conv3 = SVTRConvBNLayer(hidden_dims, in_channels, kernel_size=1, act=nn.Swish)
        self.conv4 = SVTRConvBNLayer(2 * in_channels, in_channels // 8, kernel_size=kernel_size,
                                     padding=padding, act=nn.Swish)
        self.conv1x1 = SVTRConvBNLayer(in_channels // 8, dims, kernel_size=1, act=nn.Swish)
        self.out_channels = dims
        self.apply(init_transformer_weights)

    def forward(self, x):
        if self.use_guide:
            z = x.clone()
            z.stop_gradient = True
        else:
            z = x
        h = z
        z = self.conv2(self.conv1(z))
        _, channels, height, width = z.shape
        z = z.flatten(2).transpose([0, 2, 1])
        for block in self.svtr_block:
            z = block(z)
        z = self.norm(z)
        z = z.reshape([-1, height, width, channels]).transpose([0, 3, 1, 2])
        z = self.conv3(z)
        z = paddle.concat([h, z], axis=1)
        return self.conv1x1(self.conv4(z))


def init_transformer_weights(layer):
    """PaddleOCR's SVTR initialisation: Linear weights truncated-normal (std 0.02), biases 0;
    LayerNorm weight 1, bias 0."""
    if isinstance(layer, nn.Linear):
        nn.initializer.TruncatedNormal(std=0.02)(layer.weight)
        if layer.bias is not None:
            nn.initializer.Constant(0.0)(layer.bias)
    elif isinstance(layer, nn.LayerNorm):
        nn.initializer.Constant(1.0)(layer.weight)
        nn.initializer.Constant(0.0)(layer.bias)
