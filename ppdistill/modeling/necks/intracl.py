"""IntraCL block (PaddleOCR's ``necks/intracl.py``): the intra-class module of the PP-OCRv4 det
teacher's LKPAN (``LKPAN(intracl=True)``), from "Improving text detection with IntraCL".

It mixes large square, vertical and horizontal receptive fields on a channel-reduced copy of the
map and adds the result back as a BN-ReLU residual.
"""
from paddle import nn
from paddle.nn import functional as F

from ppdistill.registry import ConfigError

__all__ = ["IntraCLBlock"]

#: the cascaded kernel sizes, largest first
KERNELS = (7, 5, 3)


class IntraCLBlock(nn.Layer):
    """``out = x + relu(bn(conv1x1_return_channel(s3)))`` with cascaded multi-shape convolutions.

    With ``r = conv1x1_reduce_channel(x)`` (C -> C / reduce_factor):

    - ``s7 = c_layer_7x7(r) + v_layer_7x1(r) + q_layer_1x7(r)``
    - ``s5 = c_layer_5x5(s7) + v_layer_5x1(s7) + q_layer_1x5(s7)``
    - ``s3 = c_layer_3x3(s5) + v_layer_3x1(s5) + q_layer_1x3(s5)``

    ``c_layer_kxk`` is a kxk conv, ``v_layer_kx1`` a (k, 1) conv and ``q_layer_1xk`` a (1, k)
    conv, all stride 1, "same" padding and with bias; ``bn`` is BatchNorm2D(C). Sub-layers are
    registered in PaddleOCR's order (reduce, return, v 7/5/3, q 7/5/3, c 7/5/3, bn), which is
    also the state_dict order.

    Args:
        in_channels: C, the channels of the map (64 in LKPAN with out_channels 256).
        reduce_factor: C is divided by this for the inner convolutions (LKPAN uses 2).

    Built by LKPAN, not from YAML directly::

        Neck:
          name: LKPAN
          out_channels: 256
          intracl: true      # four IntraCLBlock(out_channels // 4, reduce_factor=2)
    """

    def __init__(self, in_channels=96, reduce_factor=4):
        super().__init__()
        if not isinstance(in_channels, int) or not isinstance(reduce_factor, int) or \
                reduce_factor <= 0 or in_channels % reduce_factor:
            raise ConfigError(f"IntraCLBlock: in_channels ({in_channels!r}) must be a multiple of "
                              f"reduce_factor ({reduce_factor!r})")
        inner = in_channels // reduce_factor
        self.conv1x1_reduce_channel = nn.Conv2D(in_channels, inner, 1)
        self.conv1x1_return_channel = nn.Conv2D(inner, in_channels, 1)
        for k in KERNELS:
            setattr(self, f"v_layer_{k}x1", nn.Conv2D(inner, inner, (k, 1), padding=(k // 2, 0)))
        for k in KERNELS:
            setattr(self, f"q_layer_1x{k}", nn.Conv2D(inner, inner, (1, k), padding=(0, k // 2)))
        for k in KERNELS:
            setattr(self, f"c_layer_{k}x{k}", nn.Conv2D(inner, inner, k, padding=k // 2))
        self.bn = nn.BatchNorm2D(in_channels)

    def forward(self, x):
        y = self.conv1x1_reduce_channel(x)
        for k in KERNELS:
            square = getattr(self, f"c_layer_{k}x{k}")
            vertical = getattr(self, f"v_layer_{k}x1")
            horizontal = getattr(self, f"q_layer_1x{k}")
            y = square(y) + vertical(y) + horizontal(y)
        return x + F.relu(self.bn(self.conv1x1_return_channel(y)))
