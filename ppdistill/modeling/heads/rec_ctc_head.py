"""CTCHead: per-time-step classifier for CTC recognition (PaddleOCR's ``rec_ctc_head``)."""
import math
import numbers

import paddle
from paddle import nn
from paddle.nn import functional as F

from ppdistill.modeling.heads.class_count import DictionarySizedHead
from ppdistill.registry import HEADS, ConfigError

__all__ = ["CTCHead", "fc_param_attrs"]


def fc_param_attrs(l2_decay, fan_in):
    """(weight_attr, bias_attr): Uniform(+-1/sqrt(fan_in)) init and an own ``L2Decay(l2_decay)``.

    A parameter-level regularizer replaces the optimizer's global one for that parameter.
    """
    bound = 1.0 / math.sqrt(fan_in * 1.0)
    return [paddle.ParamAttr(regularizer=paddle.regularizer.L2Decay(l2_decay),
                             initializer=nn.initializer.Uniform(-bound, bound))
            for _ in range(2)]


@HEADS.register()
class CTCHead(DictionarySizedHead, nn.Layer):
    """Linear classifier over a ``[N, T, in_channels]`` sequence.

    ``logits = fc(x)``, or ``fc2(fc1(x))`` (no activation in between) when ``mid_channels`` is
    set. Training returns the logits ``[N, T, out_channels]`` (or ``(features, logits)`` with
    ``return_feats``, features being the input or the ``fc1`` output); evaluation always returns
    ``softmax(logits, axis=2)``. ``targets`` is ignored. Every weight and bias carries its own
    ``L2Decay(fc_decay)`` and starts Uniform(+-1/sqrt(fan_in)).

    Args:
        in_channels: sequence width (set by the model from the neck).
        out_channels: classes = blank + dictionary characters (+ space); filled in from the
            dictionary by the trainer when the config leaves it out.
        fc_decay: L2 factor of the head's own regularizer.
        mid_channels: width of an intermediate Linear, or None.
        return_feats: also return the features in training.

    YAML (PP-OCRv2)::

        Head:
          name: CTCHead
          mid_channels: 96
          fc_decay: 0.00002
    """

    label_decoder = "CTCLabelDecode"
    dictionary_extra_classes = 0  # blank + characters (+ space)

    def __init__(self, in_channels, out_channels, fc_decay=0.0004, mid_channels=None,
                 return_feats=False):
        super().__init__()
        if not isinstance(out_channels, numbers.Integral) or out_channels < 2:
            raise ConfigError(f"CTCHead: out_channels must be an int >= 2 (blank + characters), "
                              f"got {out_channels!r} (the trainer fills it in from the dictionary)")
        if mid_channels is None:
            weight_attr, bias_attr = fc_param_attrs(fc_decay, in_channels)
            self.fc = nn.Linear(in_channels, out_channels, weight_attr=weight_attr,
                                bias_attr=bias_attr)
        else:
            weight_attr, bias_attr = fc_param_attrs(fc_decay, in_channels)
            self.fc1 = nn.Linear(in_channels, mid_channels, weight_attr=weight_attr,
                                 bias_attr=bias_attr)
            weight_attr, bias_attr = fc_param_attrs(fc_decay, mid_channels)
            self.fc2 = nn.Linear(mid_channels, out_channels, weight_attr=weight_attr,
                                 bias_attr=bias_attr)
        self.out_channels = out_channels
        self.mid_channels = mid_channels
        self.return_feats = return_feats

    def forward(self, x, targets=None):
        if self.mid_channels is None:
            logits = self.fc(x)
        else:
            x = self.fc1(x)
            logits = self.fc2(x)
        if not self.training:
            return F.softmax(logits, axis=2)
        if self.return_feats:
            return x, logits
        return logits
