"""Import Paddle inference models written by paddle.jit.save (this paddle's format) back into
training form: a plain conv/BN model and a re-parameterised (``rep()``-ed) LearnableRepLayer."""
import numpy as np
import paddle
import pytest
from paddle import nn

from conftest import toy_model_config
from ppdistill.importer import ImportFailed, import_weights
from ppdistill.importer.core import read_export
from ppdistill.importer.graph import weighted_ops
from ppdistill.modeling.architectures import build_model
from ppdistill.modeling.backbones.rec_lcnetv3 import LCNetV3Block, LearnableRepLayer, SELayer
from ppdistill.registry import BACKBONES


@BACKBONES.register("ImporterRepToy")
class ImporterRepToy(nn.Layer):
    """stem conv -> BN, then a depthwise and a pointwise LearnableRepLayer and an SE (tests)."""

    def __init__(self, in_channels=3, channels=8):
        super().__init__()
        self.stem = nn.Conv2D(in_channels, channels, 3, stride=2, padding=1, bias_attr=False)
        self.bn = nn.BatchNorm2D(channels)
        self.dw = LearnableRepLayer(channels, channels, 3, stride=1, groups=channels,
                                    num_conv_branches=4)
        self.se = SELayer(channels)
        self.pw = LearnableRepLayer(channels, channels, 1, num_conv_branches=4)
        self.out_channels = channels

    def forward(self, x):
        return self.pw(self.se(self.dw(self.bn(self.stem(x)))))

    def rep(self):
        for layer in (self.dw, self.pw):
            layer.rep()


def _randomise(model, seed):
    """Random weights, BN statistics and learnable affine blocks (so no branch is trivial)."""
    rng = np.random.RandomState(seed)
    state = model.state_dict()
    new = {}
    for key, value in state.items():
        shape = value.shape
        if key.endswith("_variance"):
            new[key] = (0.5 + rng.rand(*shape)).astype("float32")
        elif key.endswith(("lab.scale", "bn.weight", "identity.weight")):
            new[key] = (1 + 0.3 * rng.standard_normal(shape)).astype("float32")
        else:
            new[key] = (0.3 * rng.standard_normal(shape)).astype("float32")
    model.set_state_dict(new)


def _export(model, directory):
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, -1, -1], "float32", "x")]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    paddle.jit.save(static, str(directory / "inference"))
    return str(directory)


def _config(backbone):
    arch = toy_model_config()
    arch["Backbone"] = backbone
    return {"Global": {}, "Architecture": arch}


def _randomised_source(backbone, seed, image_seed):
    """(config, randomised eval-mode model, a 1x3x20x28 image, the model's maps on it)."""
    config = _config({"name": backbone})
    source = build_model(config["Architecture"])
    _randomise(source, seed)
    source.eval()
    image = paddle.to_tensor(np.random.RandomState(image_seed).uniform(-1, 1, (1, 3, 20, 28))
                             .astype("float32"))
    return config, source, image, source(image)["maps"].numpy()


def test_plain_model_roundtrip_is_exact(tmp_path):
    config = {"Global": {}, "Architecture": toy_model_config()}
    source = build_model(config["Architecture"])
    _randomise(source, 1)
    source_state = {k: v.numpy().copy() for k, v in source.state_dict().items()}
    result = import_weights(config, _export(source, tmp_path))
    assert result.export_kind in ("paddle", "paddle_pir")
    assert result.max_diff < 1e-6
    for key, value in source_state.items():
        np.testing.assert_allclose(np.asarray(result.state_dict[key]), value, rtol=1e-6,
                                   err_msg=key)


def test_repped_export_goes_back_into_training_form(tmp_path):
    config, source, image, expected = _randomised_source("ImporterRepToy", 2, 3)
    source.backbone.rep()
    directory = _export(source, tmp_path)
    _, _, graph, _ = read_export(directory)
    assert [op.kind for op in weighted_ops(graph)].count("conv") == 6  # stem, dw, 2 SE, pw, head
    result = import_weights(config, directory)
    assert result.max_diff < 1e-5
    state = {k: np.asarray(v) for k, v in result.state_dict.items()}
    assert "backbone.dw.reparam_conv.weight" not in state  # training form, not repped
    np.testing.assert_array_equal(state["backbone.dw.conv_kxk.1.conv.weight"], 0)
    np.testing.assert_array_equal(state["backbone.dw.identity.weight"], 0)
    np.testing.assert_array_equal(state["backbone.pw.conv_kxk.0.bn._mean"], 0)
    model = build_model(config["Architecture"])
    model.set_state_dict(result.state_dict)
    model.eval()
    np.testing.assert_allclose(model(image)["maps"].numpy(), expected, atol=1e-5)


@BACKBONES.register("ImporterRepToyStride2")
class ImporterRepToyStride2(ImporterRepToy):
    """ImporterRepToy with a stride-2 depthwise layer (no activation, one affine block) next."""

    def __init__(self, in_channels=3, channels=8):
        super().__init__(in_channels, channels)
        self.down = LearnableRepLayer(channels, channels, 3, stride=2, groups=channels,
                                      num_conv_branches=2)

    def forward(self, x):  # written out: paddle 2.6's to_static cannot convert super()
        return self.down(self.pw(self.se(self.dw(self.bn(self.stem(x))))))

    def rep(self):
        super().rep()
        self.down.rep()


def test_ppdistill_export_with_folded_affine_blocks_goes_back_into_training_form(tmp_path):
    """tools/export_model.py folds each rep layer's lab into its conv and writes act.lab as one
    scale op: the importer reads that and puts lab back as the identity."""
    from ppdistill.utils.export import export_model
    config, source, image, expected = _randomised_source("ImporterRepToyStride2", 4, 5)
    directory = export_model(config, source, str(tmp_path))[""]
    _, _, graph, _ = read_export(directory)
    kinds = [op.kind for op in weighted_ops(graph)]
    # stem, dw, 2 SE, pw, down, head convs; one scalar affine (act.lab) for dw and for pw only
    assert kinds.count("conv") == 7 and kinds.count("affine") == 2
    result = import_weights(config, directory)
    assert result.max_diff < 1e-5
    state = {k: np.asarray(v) for k, v in result.state_dict.items()}
    for layer in ("dw", "pw", "down"):
        np.testing.assert_array_equal(state[f"backbone.{layer}.lab.scale"], 1)
        np.testing.assert_array_equal(state[f"backbone.{layer}.lab.bias"], 0)
    np.testing.assert_allclose(state["backbone.dw.act.lab.scale"],
                               source.backbone.dw.act.lab.scale.numpy(), rtol=1e-6)
    model = build_model(config["Architecture"])
    model.set_state_dict(result.state_dict)
    model.eval()
    np.testing.assert_allclose(model(image)["maps"].numpy(), expected, atol=1e-5)


@BACKBONES.register("ImporterBlockToy")
class ImporterBlockToy(nn.Layer):
    """stem conv -> BN, then a PPLCNetV3 block without SE and one with SE (tests)."""

    def __init__(self, in_channels=3, channels=8):
        super().__init__()
        self.stem = nn.Conv2D(in_channels, channels, 3, stride=2, padding=1, bias_attr=False)
        self.bn = nn.BatchNorm2D(channels)
        self.plain = LCNetV3Block(channels, channels, 1, 3, conv_kxk_num=2)
        self.with_se = LCNetV3Block(channels, channels, (2, 1), 5, use_se=True, conv_kxk_num=2)
        self.out_channels = channels

    def forward(self, x):
        return self.with_se(self.plain(self.bn(self.stem(x))))


def test_export_with_a_depthwise_affine_in_the_pointwise_conv_goes_back(tmp_path):
    """A block without SE exports its depthwise act.lab inside the 1x1 conv (no op of its own):
    the importer sets that act.lab to the identity and the pointwise conv carries it."""
    from ppdistill.utils.export import export_model
    config, source, image, expected = _randomised_source("ImporterBlockToy", 6, 7)
    directory = export_model(config, source, str(tmp_path))[""]
    kinds = [op.kind for op in weighted_ops(read_export(directory)[2])]
    # act.lab ops: plain.pw, with_se.dw, with_se.pw (plain.dw's is inside plain.pw's conv)
    assert kinds.count("affine") == 3
    result = import_weights(config, directory)
    assert result.max_diff < 1e-5
    state = {k: np.asarray(v) for k, v in result.state_dict.items()}
    for name in ("plain.dw_conv.lab", "plain.dw_conv.act.lab", "plain.pw_conv.lab"):
        np.testing.assert_array_equal(state[f"backbone.{name}.scale"], 1)
        np.testing.assert_array_equal(state[f"backbone.{name}.bias"], 0)
    np.testing.assert_allclose(state["backbone.with_se.dw_conv.act.lab.bias"],
                               source.backbone.with_se.dw_conv.act.lab.bias.numpy(), rtol=1e-6)
    model = build_model(config["Architecture"])
    model.set_state_dict(result.state_dict)
    model.eval()
    np.testing.assert_allclose(model(image)["maps"].numpy(), expected, atol=1e-5)


def test_paddle_export_that_does_not_fit_names_the_layer(tmp_path):
    source = build_model(_config({"name": "ToyBackbone", "channels": 6})["Architecture"])
    with pytest.raises(ImportFailed, match="layer 'backbone.conv'"):
        import_weights({"Global": {}, "Architecture": toy_model_config()},
                       _export(source, tmp_path))
