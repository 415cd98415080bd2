"""Shared test fixtures: tiny registered toy components, deterministic tensors, script loading."""
import ppdistill  # noqa: F401  (first: it loads pyclipper before paddle, see its __init__)
import importlib.util
import os

import numpy as np
import paddle
import pytest
from paddle import nn

from ppdistill.registry import BACKBONES, HEADS


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relative_path, module_name):
    """A repository script (``tools/...``, ``scripts/...``, ``benchmark/...``) as a fresh module
    named ``module_name``, without running its ``__main__`` block."""
    spec = importlib.util.spec_from_file_location(module_name,
                                                  os.path.join(REPO, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@BACKBONES.register("ToyBackbone")
class ToyBackbone(nn.Layer):
    """conv -> BN -> relu, stride 2 (for tests only)."""

    def __init__(self, in_channels=3, channels=4):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, channels, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm(channels)
        self.out_channels = channels

    def forward(self, x):
        return nn.functional.relu(self.bn(self.conv(x)))


@HEADS.register("ToyHead")
class ToyHead(nn.Layer):
    """1x1 conv to ``out_channels`` maps; returns ``{'maps': sigmoid}`` (for tests only)."""

    def __init__(self, in_channels, out_channels=3):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, 1)

    def forward(self, x, targets=None):
        return {"maps": nn.functional.sigmoid(self.conv(x))}


def toy_model_config(channels=4):
    return {"model_type": "det", "algorithm": "DB",
            "Backbone": {"name": "ToyBackbone", "channels": channels},
            "Head": {"name": "ToyHead"}}


def sin_tensor(*shape):
    """S(shape) of LOSSES_AND_METRICS.md §11: sin of the row-major flat index."""
    return paddle.to_tensor(np.sin(np.arange(np.prod(shape))).reshape(shape).astype("float32"))


def cos_tensor(*shape):
    return paddle.to_tensor(np.cos(np.arange(np.prod(shape))).reshape(shape).astype("float32"))


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)
    np.random.seed(0)
    yield
