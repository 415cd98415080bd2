"""PPLCNetV3: channel rounding, det/rec layout and outputs, rep() fusion and its inverse."""
import logging

import numpy as np
import paddle
import pytest
from lcnetv3_helpers import randomize

from ppdistill.modeling.backbones import build_backbone
from ppdistill.modeling.backbones.rec_lcnetv3 import (
    LearnableRepLayer, PPLCNetV3, load_fused_into_training_form, make_divisible)
from ppdistill.registry import ConfigError


def np_out(layer, x):
    out = layer(paddle.to_tensor(x))
    return [o.numpy() for o in out] if isinstance(out, list) else out.numpy()


@pytest.mark.parametrize("scale,expected", [
    (0.75, {16: 16, 32: 32, 64: 48, 128: 96, 256: 192, 512: 384}),
    (0.95, {16: 16, 32: 32, 64: 64, 128: 128, 256: 240, 512: 480}),
])
def test_channel_rounding_to_multiples_of_16(scale, expected):
    assert {c: make_divisible(c * scale) for c in expected} == expected
    assert make_divisible(5) == 16  # floor of one divisor
    assert make_divisible(0.35 * 64) == 32  # 22.4 rounds to 16, < 0.9 * 22.4, so + 16


def test_det_layout_and_outputs():
    model = PPLCNetV3(scale=0.75, det=True)
    assert model.out_channels == [12, 18, 42, 360]
    sd = model.state_dict()
    assert len(sd) == 839
    assert list(sd["layer_list.3.weight"].shape) == [360, 384, 1, 1]
    assert list(sd["blocks6.0.se.conv1.weight"].shape) == [48, 192, 1, 1]
    assert list(sd["blocks5.1.dw_conv.conv_kxk.3.conv.weight"].shape) == [192, 1, 5, 5]
    assert list(sd["blocks5.1.dw_conv.conv_1x1.conv.weight"].shape) == [192, 1, 1, 1]
    # identity BN only for stride 1 and in == out; pw_conv has no 1x1 branch
    assert model.blocks3[0].dw_conv.identity is None  # stride 2
    assert model.blocks3[0].pw_conv.identity is None  # 32 -> 48
    assert model.blocks3[1].pw_conv.identity is not None
    assert model.blocks6[2].dw_conv.identity is not None
    assert model.blocks2[0].pw_conv.conv_1x1 is None
    model.eval()
    out = np_out(model, np.random.rand(1, 3, 64, 96).astype("float32"))
    assert [list(o.shape) for o in out] == [[1, 12, 16, 24], [1, 18, 8, 12], [1, 42, 4, 6],
                                           [1, 360, 2, 3]]


def test_rec_layout_and_pooling_by_mode():
    model = PPLCNetV3(scale=0.95)
    assert model.out_channels == 480
    assert len(model.state_dict()) == 831
    assert model.blocks3[0].dw_conv.identity is not None  # rec keeps stride 1 here
    assert model.blocks6[2].dw_conv.identity is None  # tuple stride (2, 1): never an identity
    assert model.blocks6[1].se.conv1.weight.shape == [120, 480, 1, 1]
    x = np.random.rand(1, 3, 48, 200).astype("float32")
    model.train()
    assert list(np_out(model, x).shape) == [1, 480, 1, 40]  # adaptive pool: T = 40 always
    model.eval()
    assert list(np_out(model, x).shape) == [1, 480, 1, 25]  # avg_pool [3, 2]: T = W / 8


def test_activation_skipped_only_for_int_stride_2():
    """act.lab with scale 0 and bias 7 makes the output exactly 7 iff the activation runs."""
    for stride, act_runs in ((2, False), ((2, 1), True), (1, True)):
        layer = LearnableRepLayer(4, 4, 3, stride=stride, groups=4, num_conv_branches=2)
        layer.act.lab.scale.set_value(np.zeros([1], "float32"))
        layer.act.lab.bias.set_value(np.full([1], 7.0, "float32"))
        layer.eval()
        out = np_out(layer, np.random.rand(1, 4, 8, 8).astype("float32"))
        assert np.all(out == 7.0) == act_runs, stride


# (in, out, kernel, stride, groups): every combination of branches that PPLCNetV3 builds
BRANCH_CASES = {
    "dw_identity_kxk_1x1": (6, 6, 3, 1, 6),
    "dw_k5_stride2_no_identity": (6, 6, 5, 2, 6),
    "dw_tuple_stride_no_identity": (6, 6, 5, (2, 1), 6),
    "pw_identity_kxk": (6, 6, 1, 1, 1),
    "pw_kxk_only": (6, 8, 1, 1, 1),
}


@pytest.mark.parametrize("case", sorted(BRANCH_CASES))
def test_rep_equals_training_form_with_random_bn(case):
    cin, cout, k, stride, groups = BRANCH_CASES[case]
    layer = randomize(LearnableRepLayer(cin, cout, k, stride=stride, groups=groups,
                                        num_conv_branches=4), seed=3)
    layer.eval()
    x = np.random.RandomState(1).randn(2, cin, 11, 10).astype("float32")
    before = np_out(layer, x)
    layer.rep()
    assert layer.is_repped
    keys = layer.state_dict()
    assert "reparam_conv.weight" in keys and "reparam_conv.bias" in keys
    assert "conv_kxk.0.conv.weight" in keys  # branches are kept
    np.testing.assert_allclose(np_out(layer, x), before, atol=1e-5, rtol=0)
    fused = layer.reparam_conv.weight.numpy().copy()
    layer.rep()  # idempotent
    np.testing.assert_array_equal(layer.reparam_conv.weight.numpy(), fused)


def test_fused_kernel_known_values():
    """Only the identity branch and a 1x1 branch are non-zero: the fused 3x3 kernel is a centred
    gamma/std delta plus the padded 1x1 kernel times its own gamma/std."""
    layer = LearnableRepLayer(2, 2, 3, stride=1, groups=2, num_conv_branches=1)
    for name, value in layer.state_dict().items():
        value.set_value(np.zeros(value.shape, "float32") if name.endswith("conv.weight")
                        else value.numpy())
    ident, one = layer.identity, layer.conv_1x1
    ident.weight.set_value(np.array([2.0, 3.0], "float32"))
    ident._variance.set_value(np.array([4.0 - 1e-5, 1.0 - 1e-5], "float32"))  # std 2 and 1
    ident._mean.set_value(np.array([1.0, 0.0], "float32"))
    ident.bias.set_value(np.array([0.5, 0.0], "float32"))
    one.conv.weight.set_value(np.array([5.0, 7.0], "float32").reshape(2, 1, 1, 1))
    one.bn._variance.set_value(np.full([2], 1.0 - 1e-5, "float32"))
    weight, bias = layer.fused_kernel_bias()
    expected = np.zeros((2, 1, 3, 3), "float32")
    expected[0, 0, 1, 1] = 2.0 / 2 + 5.0
    expected[1, 0, 1, 1] = 3.0 / 1 + 7.0
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-6)
    # identity bias: 0.5 - 1 * 2 / 2 = -0.5; the conv BNs have beta 0, mean 0
    np.testing.assert_allclose(bias.numpy(), [-0.5, 0.0], atol=1e-6)


@pytest.mark.parametrize("det,scale,shape", [(True, 0.75, (1, 3, 64, 96)),
                                             (False, 0.95, (1, 3, 48, 64))])
def test_backbone_rep_matches_eval(det, scale, shape):
    model = randomize(PPLCNetV3(scale=scale, det=det), seed=1)
    model.eval()
    x = np.random.RandomState(2).rand(*shape).astype("float32")
    before = np_out(model, x)
    assert model.rep() == 28
    assert model.rep() == 0
    after = np_out(model, x)
    for b, a in zip(before if det else [before], after if det else [after]):
        assert np.abs(b).max() > 0.05  # well-scaled, not a trivial comparison
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert len(model.state_dict()) == (839 if det else 831) + 56


def test_inverse_round_trip_layer():
    """§2.7: fused (W, b) written into a differently-initialised training form reproduces the
    eval output, and re-fusing it gives (W, b) back exactly."""
    src = randomize(LearnableRepLayer(6, 6, 3, stride=1, groups=6, num_conv_branches=4), seed=5)
    dst = randomize(LearnableRepLayer(6, 6, 3, stride=1, groups=6, num_conv_branches=4), seed=9)
    for name in ("lab", "act.lab"):  # not part of the fused conv: copied as an importer would
        for p in ("scale", "bias"):
            dst.state_dict()[f"{name}.{p}"].set_value(src.state_dict()[f"{name}.{p}"].numpy())
    weight, bias = src.fused_kernel_bias()
    load_fused_into_training_form(dst, weight, bias.numpy())
    assert float(dst.conv_kxk[1].conv.weight.abs().max()) == 0.0
    assert float(dst.identity.weight.abs().max()) == 0.0
    refused_w, refused_b = dst.fused_kernel_bias()
    np.testing.assert_array_equal(refused_w.numpy(), weight.numpy())
    np.testing.assert_array_equal(refused_b.numpy(), bias.numpy())
    src.eval()
    dst.eval()
    x = np.random.RandomState(0).randn(1, 6, 9, 9).astype("float32")
    np.testing.assert_allclose(np_out(dst, x), np_out(src, x), atol=1e-6, rtol=0)


def test_inverse_round_trip_whole_det_backbone():
    src = randomize(PPLCNetV3(scale=0.75, det=True), seed=4)
    src.eval()
    x = np.random.RandomState(3).rand(1, 3, 64, 64).astype("float32")
    reference = np_out(src, x)
    src.rep()
    dst = PPLCNetV3(scale=0.75, det=True)
    fused_layers = {n: l for n, l in src.named_sublayers() if isinstance(l, LearnableRepLayer)}
    # everything outside the rep layers (conv1, se, layer_list, labs) is copied unchanged
    dst.set_state_dict({k: v for k, v in src.state_dict().items() if "reparam_conv" not in k})
    for name, layer in dst.named_sublayers():
        if isinstance(layer, LearnableRepLayer):
            fused = fused_layers[name].reparam_conv
            load_fused_into_training_form(layer, fused.weight, fused.bias)
    dst.eval()
    for got, want in zip(np_out(dst, x), reference):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_inverse_rejects_wrong_shapes_and_layers():
    layer = LearnableRepLayer(4, 4, 3, groups=4, num_conv_branches=2)
    with pytest.raises(ValueError, match="do not fit"):
        load_fused_into_training_form(layer, np.zeros((4, 4, 3, 3)), np.zeros(4))
    with pytest.raises(TypeError, match="LearnableRepLayer"):
        load_fused_into_training_form(paddle.nn.Conv2D(4, 4, 3), np.zeros((4, 1, 3, 3)),
                                      np.zeros(4))


def test_config_arguments(caplog):
    cfg = {"name": "PPLCNetV3", "scale": 0.75, "det": True, "pretrained": True}
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        assert build_backbone(cfg).out_channels == [12, 18, 42, 360]  # pretrained: ignored
    assert "Backbone.pretrained=True is ignored" in caplog.text
    with pytest.raises(ConfigError, match="did you mean 'lr_mult_list'"):
        build_backbone({"name": "PPLCNetV3", "lr_mult_lis": [1.0] * 6})
    with pytest.raises(ConfigError, match="lr_mult_list must be a list of 6"):
        build_backbone({"name": "PPLCNetV3", "lr_mult_list": [1.0] * 5})
    model = PPLCNetV3(scale=0.5, lr_mult_list=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], lab_lr=0.5)
    assert model.conv1.conv.weight.optimize_attr["learning_rate"] == pytest.approx(0.1)
    assert model.blocks6[0].dw_conv.lab.scale.optimize_attr["learning_rate"] == \
        pytest.approx(0.3)
    assert model.blocks6[0].dw_conv.conv_kxk[0].bn.weight.regularizer._coeff == 0.0


def test_custom_net_config():
    table = {"blocks2": [[3, 16, 16, 1, False]], "blocks3": [[3, 16, 32, 2, False]],
             "blocks4": [[3, 32, 32, [2, 1], False]], "blocks5": [[3, 32, 64, 2, False]],
             "blocks6": [[5, 64, 64, 1, True]]}
    model = PPLCNetV3(scale=1.0, conv_kxk_num=1, net_config=table)
    assert model.blocks4[0].dw_conv.stride == (2, 1)
    assert model.out_channels == 64 and len(model.blocks2[0].dw_conv.conv_kxk) == 1
    model.eval()
    # 48x64 -> conv1 24x32 -> blocks3 12x16 -> blocks4 6x16 -> blocks5 3x8 -> pool [3, 2] 1x4
    assert list(np_out(model, np.random.rand(1, 3, 48, 64).astype("float32")).shape) == \
        [1, 64, 1, 4]
    with pytest.raises(ConfigError, match="net_config must map exactly"):
        PPLCNetV3(net_config={"blocks2": []})
    bad = dict(table, blocks2=[[3, 16, 16, 1]])
    with pytest.raises(ConfigError, match=r"net_config.blocks2\[0\]"):
        PPLCNetV3(net_config=bad)
