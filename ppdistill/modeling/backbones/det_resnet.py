"""Plain ResNet for text detection (PaddleOCR's ``det_resnet``, used e.g. by DB++ configs).

Not covered by the reference fact sheet or a reference state_dict: this is the standard ResNet
(7x7 stem, strided 1x1 projection shortcuts) with PaddleOCR's naming scheme as we know it
(``conv``, ``res2a`` ... ``res5c``, ``conv0/conv1/conv2/short``, ``_conv``/``_batch_norm``).
"""
from paddle import nn

from ppdistill.modeling.backbones.det_resnet_vd import (DEPTHS, NUM_FILTERS, BasicBlock,
                                                        BottleneckBlock, ConvBNLayer,
                                                        check_stage_options)
from ppdistill.registry import BACKBONES

__all__ = ["ResNet"]


def _block_name(layers, stage, index):
    """``res{stage+2}{letter}``; the long third stage of 101/152 uses ``res4a``, ``res4b1``, ..."""
    if layers in (101, 152, 200) and stage == 2:
        return "res4a" if index == 0 else f"res4b{index}"
    return f"res{stage + 2}{chr(97 + index)}"


@BACKBONES.register()
class ResNet(nn.Layer):
    """ResNet detection backbone: the outputs of the stages in ``out_indices`` (strides 4..32).

    Stem ``conv`` (7x7 s2, in->64, relu) then 3x3 s2 max-pool. Blocks are registered as
    ``res2a``, ``res2b``, ... ``res5c``; the first block of each stage has a 1x1 projection
    ``short`` with the block's stride (no average pooling, unlike :class:`ResNet_vd`).
    Bottleneck blocks for ``layers >= 50`` (out channels [256, 512, 1024, 2048]), basic blocks
    otherwise ([64, 128, 256, 512]).

    Args:
        in_channels: input image channels.
        layers: depth, one of 18, 34, 50, 101, 152, 200.
        out_indices: which stages to return, default ``[0, 1, 2, 3]``.
        dcn_stage: 4 flags; a True stage uses deformable 3x3 convs (DCNv2, 1 deformable group)
            in its bottleneck blocks. Default: all False.

    Attributes:
        out_channels: channels of the returned stages.

    YAML::

        Backbone:
          name: ResNet
          layers: 50
          dcn_stage: [false, true, true, true]
    """

    def __init__(self, in_channels=3, layers=50, out_indices=None, dcn_stage=None):
        super().__init__()
        self.layers = layers
        self.dcn_stage, self.out_indices = check_stage_options("ResNet", layers, dcn_stage,
                                                               out_indices)
        depth = DEPTHS[layers]
        bottleneck = layers >= 50
        stage_in = [64, 256, 512, 1024] if bottleneck else [64, 64, 128, 256]

        self.conv = ConvBNLayer(in_channels, 64, 7, stride=2, act="relu")
        self.pool2d_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)

        self.stages, self.out_channels = [], []
        for stage, num_blocks in enumerate(depth):
            filters = NUM_FILTERS[stage]
            out = filters * 4 if bottleneck else filters
            blocks = []
            for i in range(num_blocks):
                args = dict(in_channels=stage_in[stage] if i == 0 else out,
                            out_channels=filters, stride=2 if i == 0 and stage != 0 else 1,
                            shortcut=i != 0, vd_mode=False)
                if bottleneck:
                    block = BottleneckBlock(is_dcn=self.dcn_stage[stage], dcn_groups=1, **args)
                else:
                    block = BasicBlock(**args)
                blocks.append(self.add_sublayer(_block_name(layers, stage, i), block))
            if stage in self.out_indices:
                self.out_channels.append(out)
            self.stages.append(nn.Sequential(*blocks))  # plain list: no "stages.*" keys

    def forward(self, inputs):
        y = self.pool2d_max(self.conv(inputs))
        outputs = []
        for i, stage in enumerate(self.stages):
            y = stage(y)
            if i in self.out_indices:
                outputs.append(y)
        return outputs
