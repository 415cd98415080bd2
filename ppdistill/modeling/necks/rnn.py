"""Sequence necks for recognition: turn a ``[N, C, 1, W]`` map into a ``[N, W, D]`` sequence.

``SequenceEncoder`` is PaddleOCR's neck (``Neck: {name: SequenceEncoder, encoder_type: rnn}``
in PP-OCRv2) and the CTC-branch neck of ``MultiHead`` (``Neck: {name: svtr, ...}`` in
PP-OCRv3). Parameter names match PaddleOCR's (``neck.encoder.lstm.weight_ih_l0``,
``head.ctc_encoder.encoder.svtr_block.0.mixer.qkv.weight``, ...).
"""
import math

import paddle
from paddle import nn

from ppdistill.modeling.necks.rec_svtr import EncoderWithSVTR
from ppdistill.registry import NECKS, ConfigError

__all__ = ["SequenceEncoder", "Im2Seq", "EncoderWithRNN", "EncoderWithFC", "ENCODER_TYPES"]

ENCODER_TYPES = ("reshape", "fc", "rnn", "svtr")


class Im2Seq(nn.Layer):
    """``[N, C, 1, W] -> [N, W, C]`` (no parameters). The height must be 1."""

    def __init__(self, in_channels):
        super().__init__()
        self.out_channels = in_channels

    def forward(self, x):
        if x.shape[2] not in (1, -1):  # -1: unknown height while exporting
            raise ValueError(f"Im2Seq: expected a feature map of height 1, got shape {x.shape} "
                             f"(check the input image height and the backbone strides)")
        return x.squeeze(axis=2).transpose([0, 2, 1])


class EncoderWithRNN(nn.Layer):
    """Two-layer bidirectional LSTM over ``[N, T, C]``; ``out_channels = 2 * hidden_size``.

    Sub-layer ``lstm`` (``nn.LSTM``), whose state_dict lists every weight twice, as
    ``weight_ih_l0`` and as ``0.cell_fw.weight_ih`` (Paddle's layout, same as PaddleOCR's).
    """

    def __init__(self, in_channels, hidden_size):
        super().__init__()
        self.out_channels = hidden_size * 2
        self.lstm = nn.LSTM(in_channels, hidden_size, num_layers=2, direction="bidirectional")

    def forward(self, x):
        return self.lstm(x)[0]


class EncoderWithFC(nn.Layer):
    """One Linear ``fc`` (C -> hidden_size, bias) with Uniform(+-1/sqrt(C)) init and its own
    ``L2Decay(1e-5)``; ``out_channels = hidden_size``."""

    def __init__(self, in_channels, hidden_size):
        super().__init__()
        self.out_channels = hidden_size
        bound = 1.0 / math.sqrt(in_channels)
        attr = paddle.ParamAttr(regularizer=paddle.regularizer.L2Decay(1e-5),
                                initializer=nn.initializer.Uniform(-bound, bound))
        self.fc = nn.Linear(in_channels, hidden_size, weight_attr=attr, bias_attr=attr)

    def forward(self, x):
        return self.fc(x)


@NECKS.register()
class SequenceEncoder(nn.Layer):
    """Reshape a height-1 feature map to a sequence and encode it.

    ``encoder_type``:

    - ``reshape``: only ``[N, C, 1, W] -> [N, W, C]``; ``out_channels = in_channels``.
    - ``fc``: reshape, then :class:`EncoderWithFC` (``out_channels = hidden_size``).
    - ``rnn``: reshape, then :class:`EncoderWithRNN` (``out_channels = 2 * hidden_size``).
    - ``svtr``: :class:`EncoderWithSVTR` on the 4-D map first, then reshape
      (``out_channels = dims``). Only this type uses the SVTR arguments below.

    Sub-layers ``encoder_reshape`` (no parameters) and ``encoder`` (absent for ``reshape``).

    Args:
        in_channels: backbone channels C.
        encoder_type: one of ``reshape``, ``fc``, ``rnn``, ``svtr``.
        hidden_size: width of the fc / rnn encoders (48).
        dims, depth, hidden_dims, use_guide, num_heads, qkv_bias, mlp_ratio, drop_rate,
        attn_drop_rate, drop_path, kernel_size, qk_scale: :class:`EncoderWithSVTR` arguments;
            left unset they take its defaults (dims 64, depth 2, hidden_dims 120, use_guide
            False, num_heads 8, qkv_bias True, mlp_ratio 2.0, drop_rate 0.1, attn_drop_rate 0.1,
            drop_path 0.0, kernel_size [3, 3], qk_scale None).

    Difference from PaddleOCR: SVTR arguments given with another ``encoder_type`` are an error
    instead of being silently ignored, and ``cascadernn`` is not provided.

    YAML (PP-OCRv2)::

        Neck:
          name: SequenceEncoder
          encoder_type: rnn
          hidden_size: 64
    """

    def __init__(self, in_channels, encoder_type, hidden_size=48, dims=None, depth=None,
                 hidden_dims=None, use_guide=None, num_heads=None, qkv_bias=None, mlp_ratio=None,
                 drop_rate=None, attn_drop_rate=None, drop_path=None, kernel_size=None,
                 qk_scale=None):
        super().__init__()
        if encoder_type not in ENCODER_TYPES:
            raise ConfigError(f"SequenceEncoder: unknown encoder_type {encoder_type!r} "
                              f"(supported: {', '.join(ENCODER_TYPES)})")
        svtr_args = {key: value for key, value in dict(
            dims=dims, depth=depth, hidden_dims=hidden_dims, use_guide=use_guide,
            num_heads=num_heads, qkv_bias=qkv_bias, mlp_ratio=mlp_ratio, drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate, drop_path=drop_path, kernel_size=kernel_size,
            qk_scale=qk_scale).items() if value is not None}
        if svtr_args and encoder_type != "svtr":
            raise ConfigError(f"SequenceEncoder: {', '.join(sorted(svtr_args))} only apply to "
                              f"encoder_type 'svtr', not {encoder_type!r}")
        self.encoder_type = encoder_type
        self.encoder_reshape = Im2Seq(in_channels)
        self.out_channels = in_channels
        self.only_reshape = encoder_type == "reshape"
        if encoder_type == "svtr":
            self.encoder = EncoderWithSVTR(in_channels, **svtr_args)
        elif encoder_type == "rnn":
            self.encoder = EncoderWithRNN(in_channels, hidden_size)
        elif encoder_type == "fc":
            self.encoder = EncoderWithFC(in_channels, hidden_size)
        if not self.only_reshape:
            self.out_channels = self.encoder.out_channels

    def forward(self, x):
        if self.encoder_type == "svtr":
            return self.encoder_reshape(self.encoder(x))
        x = self.encoder_reshape(x)
        return x if self.only_reshape else self.encoder(x)
