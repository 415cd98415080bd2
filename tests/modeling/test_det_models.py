"""Detection models: PaddleOCR parameter names/shapes, conformance numerics, variants, errors."""
import json
import os

import numpy as np
import paddle
import pytest
import yaml

from ppdistill.modeling.architectures import BaseModel, build_model
from ppdistill.modeling.backbones.det_mobilenet_v3 import MobileNetV3, SEModule, make_divisible
from ppdistill.modeling.backbones.det_resnet import ResNet
from ppdistill.modeling.backbones.det_resnet_vd import (ConvBNLayer, DeformableConvV2,
                                                        ResNet_vd)
from ppdistill.modeling.heads.det_db_head import DBHead
from ppdistill.modeling.necks.db_fpn import DBFPN, LKPAN, RSEFPN
from ppdistill.registry import BACKBONES, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CONFIGS = os.path.join(ROOT, "configs", "det")


def _fixture_json(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return json.load(handle)


def _config(name):
    with open(os.path.join(CONFIGS, name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _features(channels, size=64, batch=1):
    """Backbone-like maps at strides 4, 8, 16, 32 of a ``size`` x ``size`` image."""
    return [paddle.randn([batch, c, size // s, size // s]) for c, s in zip(channels, (4, 8, 16, 32))]


# --- (1) whole Architecture of the shipped configs == PaddleOCR's state_dict ----------------------

@pytest.fixture(scope="module")
def cml_model():
    return build_model(_config("ch_PP-OCRv3_det_cml.yml")["Architecture"])


@pytest.mark.parametrize("config_name, fixture", [
    ("ch_PP-OCRv3_det_cml.yml", "det_cml.json"),
    ("ch_PP-OCRv3_det_dml.yml", "det_dml.json"),
])
def test_config_state_dict_matches_paddleocr(config_name, fixture, cml_model):
    reference = _fixture_json(fixture)
    if "cml" in config_name:
        model = cml_model
    else:
        model = build_model(_config(config_name)["Architecture"])
    got = [(name, list(value.shape)) for name, value in model.state_dict().items()]
    expected = [(entry["name"], entry["shape"]) for entry in reference["state_dict"]]
    assert len(got) == len(expected) == reference["num_state_dict_entries"]
    mismatches = [(g, e) for g, e in zip(got, expected) if g != e]
    assert not mismatches, mismatches[:5]
    trainable = [name for name, p in model.named_parameters() if not p.stop_gradient]
    assert sorted(trainable) == sorted(reference["trainable"])


def test_cml_sub_model_entry_counts(cml_model):
    model = cml_model
    counts = {}
    for name in model.state_dict():
        sub_model, part = name.split(".")[:2]
        counts[(sub_model, part)] = counts.get((sub_model, part), 0) + 1
    assert counts[("Student", "backbone")] == 235 and counts[("Student", "neck")] == 40
    assert counts[("Teacher", "backbone")] == 275 and counts[("Teacher", "neck")] == 15
    assert counts[("Student2", "head")] == counts[("Teacher", "head")] == 26
    assert model.Student.backbone.out_channels == [16, 24, 56, 480]
    assert model.Teacher.backbone.out_channels == [256, 512, 1024, 2048]


def test_other_shipped_configs_build_with_expected_sub_models():
    distill = build_model(_config("ch_PP-OCRv3_det_distill.yml")["Architecture"])
    assert distill.model_name_list == ["Student", "Teacher"]
    assert distill.frozen_names == {"Teacher"}
    student = build_model(_config("ch_PP-OCRv3_det_student.yml")["Architecture"])
    assert isinstance(student, BaseModel)
    student_keys = [k for k in distill.state_dict() if k.startswith("Student.")]
    assert [f"Student.{k}" for k in student.state_dict()] == student_keys


# --- (2) conformance: PaddleOCR's seeded weights give PaddleOCR's output ---------------------------

def test_student_conformance_output():
    meta = _fixture_json("det_student.json")
    arrays = np.load(os.path.join(FIXTURES, "det_student.npz"))
    config = dict(meta["sub_model_config"])
    config.pop("pretrained", None)
    model = BaseModel(config)
    prefix = "w/Student."
    weights = {k[len(prefix):]: arrays[k].astype("float32") for k in arrays.files
               if k.startswith(prefix)}
    own = model.state_dict()
    assert set(weights) == set(own)
    assert all(list(own[k].shape) == list(v.shape) for k, v in weights.items())
    model.set_state_dict(weights)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(arrays["input/x"].astype("float32")))
    expected = arrays["output/maps"]
    assert list(out) == ["maps"] and list(out["maps"].shape) == list(expected.shape)
    np.testing.assert_allclose(out["maps"].numpy(), expected, rtol=0, atol=1e-4)


# --- (3) DBHead train vs eval ---------------------------------------------------------------------

def test_db_head_train_and_eval_outputs():
    head = DBHead(in_channels=16, k=50)
    x = paddle.randn([2, 16, 8, 6])
    head.train()
    maps = head(x, targets=None)["maps"]
    assert list(maps.shape) == [2, 3, 32, 24]
    shrink, thresh, binary = (maps[:, i].numpy() for i in range(3))
    np.testing.assert_allclose(binary, 1 / (1 + np.exp(-50 * (shrink - thresh))), atol=1e-6)
    assert 0 <= shrink.min() and shrink.max() <= 1
    head.eval()
    out = head(x)
    assert list(out) == ["maps"] and list(out["maps"].shape) == [2, 1, 32, 24]


def test_db_head_kernel_list_and_parameter_shapes():
    head = DBHead(in_channels=256, kernel_list=[7, 2, 2])
    shapes = {k: list(v.shape) for k, v in head.state_dict().items()}
    assert len(shapes) == 26
    assert shapes["binarize.conv1.weight"] == [64, 256, 7, 7]
    assert shapes["thresh.conv2.weight"] == [64, 64, 2, 2] and shapes["thresh.conv2.bias"] == [64]
    assert shapes["binarize.conv3.weight"] == [64, 1, 2, 2]
    assert "binarize.conv1.bias" not in shapes
    with pytest.raises(ConfigError, match="kernel_list"):
        DBHead(in_channels=96, kernel_list=[3, 2])


# --- (4) every backbone and neck variant runs on a tiny input -------------------------------------

@pytest.mark.parametrize("cls, kwargs, channels", [
    (MobileNetV3, dict(model_name="large", scale=0.5, disable_se=True), [16, 24, 56, 480]),
    (MobileNetV3, dict(model_name="large", scale=1.0), [24, 40, 112, 960]),
    (MobileNetV3, dict(model_name="small", scale=0.5), [8, 16, 24, 288]),
    (MobileNetV3, dict(model_name="small", scale=0.35, disable_se=True), [8, 8, 16, 200]),
    (ResNet_vd, dict(layers=18), [64, 128, 256, 512]),
    (ResNet_vd, dict(layers=34), [64, 128, 256, 512]),
    (ResNet_vd, dict(layers=50), [256, 512, 1024, 2048]),
    (ResNet, dict(layers=18), [64, 128, 256, 512]),
    (ResNet, dict(layers=50), [256, 512, 1024, 2048]),
])
def test_backbone_variants_forward(cls, kwargs, channels):
    backbone = cls(in_channels=3, **kwargs)
    assert backbone.out_channels == channels
    backbone.eval()
    with paddle.no_grad():
        outs = backbone(paddle.randn([1, 3, 64, 64]))
    assert [list(o.shape) for o in outs] == [[1, c, 64 // s, 64 // s]
                                             for c, s in zip(channels, (4, 8, 16, 32))]


@pytest.mark.parametrize("scale, large, small", [
    (0.35, [8, 16, 40, 336], [8, 8, 16, 200]),
    (0.75, [24, 32, 88, 720], [16, 24, 40, 432]),
    (1.25, [32, 48, 144, 1200], [24, 32, 64, 720]),
])
def test_mobilenet_v3_out_channels_per_scale(scale, large, small):
    assert MobileNetV3(model_name="large", scale=scale).out_channels == large
    assert MobileNetV3(model_name="small", scale=scale).out_channels == small


@pytest.mark.parametrize("cls, kwargs", [
    (DBFPN, dict(out_channels=32)),
    (DBFPN, dict(out_channels=32, use_asf=True)),
    (RSEFPN, dict(out_channels=32, shortcut=True)),
    (RSEFPN, dict(out_channels=32, shortcut=False)),
    (LKPAN, dict(out_channels=32, mode="large")),
    (LKPAN, dict(out_channels=32, mode="Lite")),
])
def test_neck_variants_forward(cls, kwargs):
    in_channels = [8, 16, 24, 40]
    neck = cls(in_channels=in_channels, **kwargs)
    assert neck.out_channels == 32
    out = neck(_features(in_channels))
    assert list(out.shape) == [1, 32, 16, 16]


def test_neck_on_image_size_not_multiple_of_32_fails_clearly():
    neck = RSEFPN(in_channels=[8, 16, 24, 40], out_channels=32)
    feats = [paddle.randn([1, c, h, h]) for c, h in zip([8, 16, 24, 40], [25, 13, 7, 4])]
    with pytest.raises(ValueError, match="multiples of 32"):
        neck(feats)


def test_neck_key_layouts():
    dbfpn = DBFPN([8, 16, 24, 40], 32, use_asf=True)
    assert list(dbfpn.state_dict())[:8] == [f"in{k}_conv.weight" for k in (2, 3, 4, 5)] + [
        f"p{k}_conv.weight" for k in (5, 4, 3, 2)]
    assert "asf.channel_scale.0.weight" in dbfpn.state_dict()
    lite = LKPAN([8, 16, 24, 40], 32, mode="lite").state_dict()
    assert list(lite["inp_conv.0.conv1.weight"].shape) == [32, 1, 9, 9]
    assert "inp_conv.0.conv_end.weight" in lite  # 32 -> 8 channels
    assert "pan_lat_conv.0.conv_end.weight" not in lite  # 8 -> 8: no residual at all
    assert len([k for k in lite if k.startswith("pan_head_conv.")]) == 3


# --- building blocks, checked against hand-computed numbers ---------------------------------------

def test_make_divisible_examples():
    assert [make_divisible(v) for v in (8, 12, 20, 36, 52, 60, 92, 5.6)] == [
        8, 16, 24, 40, 56, 64, 96, 8]


def test_se_module_uses_hardsigmoid_slope_0_2():
    se = SEModule(4)
    x = paddle.to_tensor(np.linspace(-2, 2, 2 * 4 * 3 * 3).reshape(2, 4, 3, 3).astype("float32"))
    w1, b1 = se.conv1.weight.numpy()[:, :, 0, 0], se.conv1.bias.numpy()
    w2, b2 = se.conv2.weight.numpy()[:, :, 0, 0], se.conv2.bias.numpy()
    pooled = x.numpy().mean(axis=(2, 3))
    gate = np.clip(0.2 * (np.maximum(pooled @ w1.T + b1, 0) @ w2.T + b2) + 0.5, 0, 1)
    np.testing.assert_allclose(se(x).numpy(), x.numpy() * gate[:, :, None, None], atol=1e-6)


def test_mobilenet_v3_se_layers_follow_disable_se():
    with_se = MobileNetV3(model_name="large", scale=0.5, disable_se=False).state_dict()
    assert list(with_se["stage1.0.mid_se.conv1.weight"].shape) == [10, 40, 1, 1]
    assert list(with_se["stage1.0.mid_se.conv2.weight"].shape) == [40, 10, 1, 1]
    assert "stage0.1.mid_se.conv1.weight" not in with_se
    without = MobileNetV3(model_name="large", scale=0.5, disable_se=True).state_dict()
    assert not [k for k in without if "mid_se" in k]
    assert list(without["stage3.3.conv.weight"].shape) == [480, 80, 1, 1]


def test_resnet_vd_shortcuts():
    keys = ResNet_vd(layers=18).state_dict()
    assert list(keys["bb_0_0.short._conv.weight"].shape) == [64, 64, 1, 1]
    assert "bb_0_1.short._conv.weight" not in keys
    model = ResNet_vd(layers=18)
    assert not model.bb_0_0.short.is_vd_mode and model.bb_1_0.short.is_vd_mode
    assert model.bb_1_0.short._conv._stride == [1, 1] and model.bb_1_0.conv0._conv._stride == [2, 2]
    plain = ResNet(layers=18)
    assert list(plain.state_dict()["conv._conv.weight"].shape) == [64, 3, 7, 7]
    assert plain.res3a.short._conv._stride == [2, 2] and not plain.res3a.short.is_vd_mode


def test_vd_conv_pools_with_ceil_mode_and_exclusive_average():
    layer = ConvBNLayer(1, 1, 1, is_vd_mode=True)
    layer._conv.weight.set_value(np.ones([1, 1, 1, 1], "float32"))
    layer.eval()  # BN with running stats 0/1, weight 1, bias 0: (x - 0) / sqrt(1 + 1e-5)
    x = np.arange(9, dtype="float32").reshape(1, 1, 3, 3)
    expected = np.array([[2, 3.5], [6.5, 8]], "float32") / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(layer(paddle.to_tensor(x)).numpy()[0, 0], expected, atol=1e-5)


def test_deformable_conv_starts_as_half_a_plain_conv():
    dcn = DeformableConvV2(4, 6, 3, stride=1, groups=2)
    x = paddle.randn([1, 4, 8, 8])
    plain = paddle.nn.functional.conv2d(x, dcn.conv_dcn.weight, padding=1)
    # zero-initialised offsets, mask = sigmoid(0) = 0.5
    np.testing.assert_allclose(dcn(x).numpy(), 0.5 * plain.numpy(), atol=1e-5)
    backbone = ResNet_vd(layers=50, dcn_stage=[False, True, False, False], out_indices=[1, 3])
    assert backbone.out_channels == [512, 2048]
    assert "bb_1_0.conv1._conv.conv_offset.weight" in backbone.state_dict()
    outs = backbone(paddle.randn([1, 3, 64, 64]))
    assert [list(o.shape) for o in outs] == [[1, 512, 8, 8], [1, 2048, 2, 2]]


@pytest.mark.parametrize("build, match", [
    (lambda: MobileNetV3(scale=0.6), "scale"),
    (lambda: MobileNetV3(model_name="medium"), "model_name"),
    (lambda: ResNet_vd(layers=42), "layers"),
    (lambda: ResNet_vd(layers=18, dcn_stage=[False, True, True, True]), "dcn_stage"),
    (lambda: ResNet(layers=50, out_indices=[4]), "out_indices"),
    (lambda: LKPAN([8, 16, 24, 40], 32, mode="huge"), "mode"),
    (lambda: RSEFPN(96, 32), "in_channels"),
])
def test_invalid_arguments_raise_config_error(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_registry_rejects_unknown_backbone_key():
    with pytest.raises(ConfigError, match="did you mean 'disable_se'"):
        BACKBONES.build({"name": "MobileNetV3", "disable_SE": True}, "Architecture.Backbone")
