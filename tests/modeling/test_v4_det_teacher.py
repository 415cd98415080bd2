"""PP-OCRv4 det teacher pieces: PPHGNet_small (det and rec), LKPAN's IntraCL blocks, PFHeadLocal,
and the state_dict parity of ch_PP-OCRv4_det_teacher.yml / ch_PP-OCRv4_det_cml.yml."""
import gzip
import json
import os

import numpy as np
import paddle
import pytest
import yaml
from paddle.nn import functional as F

from ppdistill.losses.det_basic_loss import BalanceLoss
from ppdistill.losses.det_db_loss import DBLoss
from ppdistill.losses.distillation_det_loss import DistillationDBLoss, DistillationDilaDBLoss
from ppdistill.modeling.architectures import build_model
from ppdistill.modeling.backbones.rec_hgnet import ESEModule, HGBlock, PPHGNet_small
from ppdistill.modeling.fast_conv import enable_fast_frozen_convs
from ppdistill.modeling.heads.det_pfhead_local import PFHeadLocal
from ppdistill.modeling.necks.db_fpn import LKPAN
from ppdistill.modeling.necks.intracl import IntraCLBlock
from ppdistill.postprocess.db_postprocess import DBPostProcess
from ppdistill.registry import BACKBONES, HEADS, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CONFIGS = os.path.join(ROOT, "configs", "det")


def _reference(name):
    path = os.path.join(FIXTURES, name)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def _architecture(name):
    with open(os.path.join(CONFIGS, name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["Architecture"]


def _keys(layer):
    return [(name, list(value.shape)) for name, value in layer.state_dict().items()]


def _randomize_bn(layer, seed=0):
    """Random BN statistics and affine parameters, so eval-mode BN is not the identity."""
    rng = np.random.RandomState(seed)
    for sub in layer.sublayers(include_self=True):
        if isinstance(sub, (paddle.nn.BatchNorm2D, paddle.nn.BatchNorm)):
            n = sub.weight.shape[0]
            sub.weight.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))
            sub.bias.set_value(rng.uniform(-0.2, 0.2, n).astype("float32"))
            sub._mean.set_value(rng.uniform(-0.2, 0.2, n).astype("float32"))
            sub._variance.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))


def _bn_eval(bn, x):
    return F.batch_norm(x, bn._mean, bn._variance, bn.weight, bn.bias, training=False,
                        epsilon=1e-5)


# --- state_dict parity with PaddleOCR -------------------------------------------------------------

@pytest.mark.parametrize("config_name, fixture, count", [
    ("ch_PP-OCRv4_det_teacher.yml", "v4_det_teacher_keys.json", 367),
    ("ch_PP-OCRv4_det_cml.yml", "v4_det_cml_keys.json.gz", 2126),
])
def test_config_state_dict_matches_paddleocr(config_name, fixture, count):
    reference = _reference(fixture)
    model = build_model(_architecture(config_name))
    got = _keys(model)
    expected = [(name, shape) for name, shape in reference["state_dict"]]
    assert len(got) == len(expected) == reference["num_state_dict_entries"] == count
    mismatches = [(g, e) for g, e in zip(got, expected) if g != e]
    assert not mismatches, mismatches[:5]
    trainable = [name for name, p in model.named_parameters() if not p.stop_gradient]
    # PPLCNetV3's int-stride-2 layers keep act.lab's keys but never run it: ppdistill does not
    # train those parameters (PaddleOCR lists them as trainable; they never get a gradient).
    unused = {f"{layer_name}.act.{param_name}" for layer_name, layer in model.named_sublayers()
              if getattr(layer, "apply_act", True) is False
              for param_name, _ in layer.act.named_parameters()}
    assert all(".dw_conv.act.lab." in name for name in unused)
    assert sorted(trainable) == sorted(set(reference["trainable"]) - unused)


def test_teacher_part_entry_counts():
    model = build_model(_architecture("ch_PP-OCRv4_det_teacher.yml"))
    counts = {}
    for name in model.state_dict():
        counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + 1
    assert counts == {"backbone": 215, "neck": 119, "head": 33}
    assert model.backbone.out_channels == [256, 512, 768, 1024]
    assert isinstance(model.head, PFHeadLocal) and model.neck.intracl


# --- PPHGNet_small --------------------------------------------------------------------------------

def test_hgnet_det_outputs_at_strides_4_to_32():
    paddle.seed(0)
    model = PPHGNet_small(det=True)
    model.eval()
    outs = model(paddle.randn([1, 3, 64, 64]))
    assert [list(o.shape) for o in outs] == [[1, 256, 16, 16], [1, 512, 8, 8], [1, 768, 4, 4],
                                             [1, 1024, 2, 2]]
    reference = [(n[len("backbone."):], s) for n, s in
                 _reference("v4_det_teacher_keys.json")["state_dict"] if n.startswith("backbone.")]
    assert _keys(model) == reference and len(reference) == 215
    assert model.stages[0].downsample is False


def test_hgnet_det_out_indices_select_stages():
    model = PPHGNet_small(det=True, out_indices=[1, 3])
    model.eval()
    outs = model(paddle.randn([1, 3, 64, 64]))
    assert model.out_channels == [512, 1024]
    assert [o.shape[1] for o in outs] == [512, 1024]


def test_hgnet_rec_variant_structure_and_output_shape():
    paddle.seed(0)
    model = PPHGNet_small()  # rec: det false
    assert BACKBONES.get("PPHGNet_small") is PPHGNet_small
    assert model.out_channels == 1024
    keys = dict(_keys(model))
    assert len(keys) == 220
    assert keys["stages.0.downsample.conv.weight"] == [128, 1, 3, 3]
    assert keys["stages.2.blocks.1.aggregation_conv.conv.weight"] == [768, 1920, 1, 1]
    assert [list(s.downsample.conv._stride) for s in model.stages] == [[2, 1], [1, 2], [2, 1],
                                                                       [2, 1]]
    x = paddle.randn([1, 3, 48, 320])
    model.train()
    assert list(model(x).shape) == [1, 1024, 1, 40]
    model.eval()
    assert list(model(x).shape) == [1, 1024, 1, 40]


def test_hgnet_rec_pooling_train_adaptive_eval_fixed():
    """Train pools adaptively to [1, 40] whatever the width; eval avg-pools [3, 2] (T = W / 8)."""
    paddle.seed(1)
    model = PPHGNet_small()
    x = paddle.randn([1, 3, 48, 160])
    model.train()
    assert list(model(x).shape) == [1, 1024, 1, 40]
    model.eval()
    assert list(model(x).shape) == [1, 1024, 1, 20]


def test_hg_block_concatenates_input_first_and_adds_identity():
    paddle.seed(2)
    block = HGBlock(4, 3, 4, layer_num=2, identity=True)
    _randomize_bn(block)
    block.eval()
    x = paddle.randn([2, 4, 5, 6])
    y0 = F.relu(_bn_eval(block.layers[0].bn, F.conv2d(x, block.layers[0].conv.weight, padding=1)))
    y1 = F.relu(_bn_eval(block.layers[1].bn, F.conv2d(y0, block.layers[1].conv.weight, padding=1)))
    agg = block.aggregation_conv
    z = F.relu(_bn_eval(agg.bn, F.conv2d(paddle.concat([x, y0, y1], axis=1), agg.conv.weight)))
    gate = F.sigmoid(F.conv2d(z.mean(axis=[2, 3], keepdim=True), block.att.conv.weight,
                              block.att.conv.bias))
    np.testing.assert_allclose(block(x).numpy(), (z * gate + x).numpy(), rtol=1e-5, atol=1e-5)


def test_ese_uses_true_sigmoid():
    ese = ESEModule(2)
    ese.conv.weight.set_value(np.zeros([2, 2, 1, 1], "float32"))
    ese.conv.bias.set_value(np.array([1.0, -2.0], "float32"))
    x = paddle.ones([1, 2, 3, 3])
    expected = 1.0 / (1.0 + np.exp(-np.array([1.0, -2.0])))
    np.testing.assert_allclose(ese(x).numpy()[0, :, 0, 0], expected, rtol=1e-6)


def test_hgnet_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="does not download"):
        PPHGNet_small(det=True, pretrained=True)
    with pytest.raises(ConfigError, match="out_indices"):
        PPHGNet_small(det=True, out_indices=[4])


# --- IntraCL in LKPAN -----------------------------------------------------------------------------

def test_intracl_block_keys_and_cascade_numerics():
    paddle.seed(3)
    block = IntraCLBlock(8, reduce_factor=2)
    assert [name for name, _ in _keys(block)][:6] == [
        "conv1x1_reduce_channel.weight", "conv1x1_reduce_channel.bias",
        "conv1x1_return_channel.weight", "conv1x1_return_channel.bias",
        "v_layer_7x1.weight", "v_layer_7x1.bias"]
    assert dict(_keys(block))["q_layer_1x5.weight"] == [4, 4, 1, 5]
    assert dict(_keys(block))["c_layer_7x7.weight"] == [4, 4, 7, 7]
    rng = np.random.RandomState(4)
    for layer in block.sublayers():  # conv biases start at 0: make them matter
        if isinstance(layer, paddle.nn.Conv2D):
            layer.bias.set_value(rng.uniform(-0.3, 0.3, layer.bias.shape).astype("float32"))
    _randomize_bn(block)
    block.eval()
    x = paddle.randn([2, 8, 9, 11])

    def conv(layer, t, padding):
        return F.conv2d(t, layer.weight, layer.bias, padding=padding)

    y = conv(block.conv1x1_reduce_channel, x, 0)
    for k in (7, 5, 3):
        y = (conv(getattr(block, f"c_layer_{k}x{k}"), y, k // 2)
             + conv(getattr(block, f"v_layer_{k}x1"), y, [k // 2, 0])
             + conv(getattr(block, f"q_layer_1x{k}"), y, [0, k // 2]))
    expected = x + F.relu(_bn_eval(block.bn, conv(block.conv1x1_return_channel, y, 0)))
    out = block(x)
    assert list(out.shape) == [2, 8, 9, 11]
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_intracl_frozen_fast_conv_path_matches_paddle(monkeypatch):
    """A frozen teacher's 7x7 IntraCL convs (with bias) may take the shifted-GEMM forward."""
    monkeypatch.setenv("PPDISTILL_FAST_CONV", "1")
    paddle.seed(10)
    block = IntraCLBlock(8, reduce_factor=2)
    block.eval()
    x = paddle.randn([1, 8, 12, 10])
    with paddle.no_grad():
        expected = block(x).numpy()
        assert enable_fast_frozen_convs(block) == 1  # c_layer_7x7 only (5x5 and 3x3 are faster)
        got = block(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_intracl_rejects_indivisible_channels():
    with pytest.raises(ConfigError, match="multiple of reduce_factor"):
        IntraCLBlock(10, reduce_factor=4)


def test_lkpan_intracl_keys_and_placement():
    """incl1..4 act on p2..p5 after pan_lat_conv, at their own resolution (before upsampling)."""
    paddle.seed(5)
    channels = [256, 512, 768, 1024]
    neck = LKPAN(channels, 256, intracl=True)
    reference = [(n[len("neck."):], s) for n, s in
                 _reference("v4_det_teacher_keys.json")["state_dict"] if n.startswith("neck.")]
    assert _keys(neck) == reference and len(reference) == 119
    plain = LKPAN(channels, 256)
    assert len(plain.state_dict()) == 15 and not hasattr(plain, "incl1")
    plain.set_state_dict({k: v for k, v in neck.state_dict().items() if not k.startswith("incl")})
    seen = {}
    for k in (1, 2, 3, 4):
        getattr(neck, f"incl{k}").register_forward_pre_hook(
            lambda layer, inputs, k=k: seen.__setitem__(k, list(inputs[0].shape)))
    neck.eval()
    plain.eval()
    feats = [paddle.randn([1, c, 64 // s, 64 // s]) for c, s in zip(channels, (4, 8, 16, 32))]
    out = neck(feats)
    assert list(out.shape) == [1, 256, 16, 16]
    assert seen == {1: [1, 64, 16, 16], 2: [1, 64, 8, 8], 3: [1, 64, 4, 4], 4: [1, 64, 2, 2]}
    # with the blocks' BN zeroed each block is the identity, so the output equals plain LKPAN
    for k in (1, 2, 3, 4):
        bn = getattr(neck, f"incl{k}").bn
        bn.weight.set_value(paddle.zeros_like(bn.weight))
        bn.bias.set_value(paddle.zeros_like(bn.bias))
    np.testing.assert_allclose(neck(feats).numpy(), plain(feats).numpy(), rtol=1e-5, atol=1e-5)


# --- PFHeadLocal ----------------------------------------------------------------------------------

def _head(mode="large", channels=16, seed=6):
    paddle.seed(seed)
    head = PFHeadLocal(channels, k=50, mode=mode)
    _randomize_bn(head, seed)
    return head


def test_pfhead_keys_and_modes():
    head = PFHeadLocal(256, k=50, mode="large")
    reference = [(n[len("head."):], s) for n, s in
                 _reference("v4_det_teacher_keys.json")["state_dict"] if n.startswith("head.")]
    assert _keys(head) == reference and len(reference) == 33
    assert dict(_keys(PFHeadLocal(256, mode="small")))["cbn_layer.last_3.conv.weight"] == \
        [32, 65, 3, 3]
    assert HEADS.get("PFHeadLocal") is PFHeadLocal
    with pytest.raises(ConfigError, match="mode must be one of large, small"):
        PFHeadLocal(256, mode="medium")


def test_pfhead_eval_output_is_mean_of_shrink_and_local_map():
    head = _head()
    head.eval()
    x = paddle.randn([2, 16, 8, 10])
    out = head(x)
    assert sorted(out) == ["cbn_maps", "maps"]
    assert list(out["maps"].shape) == list(out["cbn_maps"].shape) == [2, 1, 32, 40]
    b = head.binarize
    features = b.conv_bn2(b.conv2(b.conv_bn1(b.conv1(x))))
    shrink = b(x)
    up = F.interpolate(features, scale_factor=2, mode="nearest")
    last_3 = head.cbn_layer.last_3
    hidden = F.relu(_bn_eval(last_3.bn, F.conv2d(paddle.concat([shrink, up], axis=1),
                                                 last_3.conv.weight, padding=1)))
    cbn = F.sigmoid(head.cbn_layer.last_1(hidden))
    np.testing.assert_allclose(out["cbn_maps"].numpy(), cbn.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["maps"].numpy(), (0.5 * (shrink + cbn)).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_pfhead_train_output_layout():
    """Train: maps = [cbn, thresh, binary(base shrink)], distance_maps = cbn, cbn_maps = binary."""
    head = _head(mode="small", seed=7)
    x = paddle.randn([2, 16, 8, 8])
    head.train()
    out = head(x)
    assert sorted(out) == ["cbn_maps", "distance_maps", "maps"]
    assert list(out["maps"].shape) == [2, 3, 32, 32]
    assert list(out["distance_maps"].shape) == list(out["cbn_maps"].shape) == [2, 1, 32, 32]
    # same statistics, so recomputing the branches in train mode gives the same maps
    shrink, thresh = head.binarize(x), head.thresh(x)
    binary = 1.0 / (1.0 + paddle.exp(-50.0 * (shrink - thresh)))
    maps = out["maps"].numpy()
    np.testing.assert_allclose(maps[:, 0:1], out["distance_maps"].numpy())
    np.testing.assert_allclose(maps[:, 1:2], thresh.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[:, 2:3], binary.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["cbn_maps"].numpy(), binary.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(maps[:, 0:1], shrink.numpy(), atol=1e-3)  # channel 0 is the cbn map


def _det_batch(size=32, batch=2, seed=8):
    rng = np.random.RandomState(seed)
    shrink = np.zeros([batch, size, size], "float32")
    shrink[:, 8:20, 4:28] = 1.0
    return [paddle.zeros([batch, 3, size, size]),
            paddle.to_tensor(rng.uniform(0.3, 0.7, [batch, size, size]).astype("float32")),
            paddle.ones([batch, size, size]), paddle.to_tensor(shrink),
            paddle.ones([batch, size, size])]


def test_det_losses_and_postprocess_accept_pfhead_outputs():
    head = _head(seed=9)
    x = paddle.randn([2, 16, 8, 8])
    batch = _det_batch()
    head.train()
    out = head(x)
    terms = DBLoss()(out, batch)
    expected_cbn = BalanceLoss()(out["cbn_maps"][:, 0], batch[3], batch[4])
    np.testing.assert_allclose(float(terms["loss_cbn"]), float(expected_cbn), rtol=1e-5)
    assert float(terms["loss_cbn"]) > 0
    total = sum(float(terms[k]) for k in ("loss_shrink_maps", "loss_threshold_maps",
                                          "loss_binary_maps", "loss_cbn"))
    np.testing.assert_allclose(float(terms["loss"]), total, rtol=1e-5)

    distill = DistillationDBLoss(model_name_list=["Teacher"])({"Teacher": out}, batch)
    assert "db_Teacher_loss_cbn" in distill
    np.testing.assert_allclose(float(distill["loss"]), float(terms["loss"]), rtol=1e-5)
    dila = DistillationDilaDBLoss(model_name_pairs=[["Student", "Teacher"]], key="maps")(
        {"Student": {"maps": out["maps"] * 0.5}, "Teacher": out}, batch)
    assert np.isfinite(float(dila["loss"]))

    head.eval()
    boxes = DBPostProcess(thresh=0.3, box_thresh=0.0)(head(x), np.array([[32, 32, 1.0, 1.0]] * 2))
    assert len(boxes) == 2 and all("points" in b for b in boxes)


@pytest.mark.parametrize("pretrained, message", [
    ("https://paddleocr.bj.bcebos.com/PP-OCRv4/chinese/ch_PP-OCRv4_det_cml_teacher_pretrained/"
     "teacher.pdparams", "are a URL, and ppdistill does not download"),
    ("./no_such_dir/teacher", "no_such_dir/teacher.pdparams: pretrained weights not found"),
])
def test_cml_teacher_pretrained_missing_is_a_clear_error(pretrained, message):
    architecture = _architecture("ch_PP-OCRv4_det_cml.yml")
    assert architecture["Models"]["Teacher"]["pretrained"] is None  # runnable as shipped
    architecture["Models"]["Teacher"]["pretrained"] = pretrained
    with pytest.raises(ConfigError, match=r"Architecture\.Models\.Teacher\.pretrained: .*" + message):
        build_model(architecture)


def test_exported_pfhead_gives_maps_first(tmp_path):
    """predict_det (ours and PaddleOCR's) reads output 0: the export puts ``maps`` there."""
    from ppdistill.utils.export import export_single
    from ppdistill.infer.predictor import InferenceModel

    head = _head(mode="small", seed=11)
    head.eval()
    x = paddle.randn([1, 16, 8, 8])
    expected = head(x)
    export_single(head, [1, 16, 8, 8], str(tmp_path / "inference"))
    outputs = InferenceModel(str(tmp_path), use_gpu=False)(x.numpy())
    assert len(outputs) == 2
    np.testing.assert_allclose(outputs[0], expected["maps"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[1], expected["cbn_maps"].numpy(), rtol=1e-5, atol=1e-6)
