"""PP-OCRv4/v5 recognition: shipped configs == PaddleOCR's state_dicts, conformance numerics,
SVTRNet, the svtr neck as v4 uses it, MultiHead CTC + NRTR (gtc), head class counts."""
import copy
import json
import os

import numpy as np
import paddle
import pytest
from paddle.nn import functional as F

from ppdistill.engine.components import with_dictionary_sizes
from ppdistill.modeling.architectures import build_model
from ppdistill.modeling.backbones.rec_svtrnet import SVTRAttention, SVTRBlock, SVTRNet
from ppdistill.modeling.heads.rec_ctc_head import CTCHead
from ppdistill.modeling.heads.rec_multi_head import MultiHead
from ppdistill.modeling.heads.rec_nrtr_head import NRTRHead
from ppdistill.modeling.heads.rec_sar_head import SARHead
from ppdistill.registry import ConfigError
from ppdistill.utils.config import load_with_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CONFIGS = os.path.join(ROOT, "configs", "rec")
V4_HEAD = [{"CTCHead": {"Neck": {"name": "svtr", "dims": 120, "depth": 2, "hidden_dims": 120,
                                 "kernel_size": [1, 3], "use_guide": True},
                        "Head": {"fc_decay": 0.00001}}},
           {"NRTRHead": {"nrtr_dim": 384, "max_text_length": 25}}]


def _keys_fixture(name):
    with open(os.path.join(FIXTURES, f"{name}_keys.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _shipped(name):
    """The shipped config with the head sizes the trainer fills in from its dictionary."""
    return with_dictionary_sizes(load_with_overrides(os.path.join(CONFIGS, name)))


def _entries(model):
    return [[key, list(value.shape)] for key, value in model.state_dict().items()]


def _buffers(model):
    params = {name for name, _ in model.named_parameters()}
    return [key for key in model.state_dict() if key not in params]


# --- (1) shipped configs build PaddleOCR's exact state_dicts --------------------------------------

@pytest.mark.parametrize("config, fixture, count", [
    ("ch_PP-OCRv4_rec.yml", "v4_rec", 968),
    ("ch_PP-OCRv4_rec_hgnet.yml", "v4_rec_hgnet", 357)])
def test_plain_v4_configs_match_paddleocr_state_dict(config, fixture, count):
    reference = _keys_fixture(fixture)
    config = _shipped(config)
    assert config["Architecture"]["Head"]["out_channels_list"] == {
        "CTCLabelDecode": 6625, "NRTRLabelDecode": 6628}
    model = build_model(config["Architecture"])
    assert len(reference["state_dict"]) == count
    assert _entries(model) == reference["state_dict"]          # names, shapes and order
    assert _buffers(model) == reference["buffers"] == ["head.gtc_head.positional_encoding.pe"]


def test_distill_config_matches_paddleocr_plus_the_teacher_last_conv():
    reference = _keys_fixture("v4_rec_distill")["state_dict"]
    assert len(reference) == 1258
    arch = _shipped("ch_PP-OCRv4_rec_distill.yml")["Architecture"]
    ours = _entries(build_model(arch))
    # last_stage: true (the shipped fix) adds exactly one key, right after the backbone
    extra = ["Teacher.backbone.last_conv.weight", [192, 256, 1, 1]]
    assert ours.index(extra) == 153
    assert [e for e in ours if e != extra] == reference
    # PaddleOCR's literal Teacher (last_stage: false) builds exactly the reference
    arch = copy.deepcopy(arch)
    arch["Models"]["Teacher"]["Backbone"]["last_stage"] = False
    model = build_model(arch)
    assert _entries(model) == reference
    assert _buffers(model) == _keys_fixture("v4_rec_distill")["buffers"]


def test_paddleocr_literal_teacher_fails_clearly_and_shipped_teacher_runs():
    arch = _shipped("ch_PP-OCRv4_rec_distill.yml")["Architecture"]
    teacher = copy.deepcopy(arch["Models"]["Teacher"])
    for key in ("pretrained", "freeze_params"):
        teacher.pop(key)
    x = paddle.randn([1, 3, 48, 320])
    paddle.seed(0)
    model = build_model(teacher)
    model.eval()
    with paddle.no_grad():
        out = model(x)
    assert list(out) == ["head_out"] and out["head_out"].shape == [1, 40, 6625]
    np.testing.assert_allclose(out["head_out"].numpy().sum(-1), 1.0, rtol=1e-5)
    teacher["Backbone"]["last_stage"] = False
    model = build_model(teacher)
    model.eval()
    with pytest.raises(ValueError, match="last_stage: true"):
        model(x)


def test_v5_mobile_rec_equals_v4_rec_but_for_the_dictionary_sized_layers():
    reference = dict((k, s) for k, s in _keys_fixture("v4_rec")["state_dict"])
    reference.update({"head.ctc_head.fc.weight": [120, 18385], "head.ctc_head.fc.bias": [18385],
                      "head.gtc_head.embedding.embedding.weight": [18389, 384],
                      "head.gtc_head.tgt_word_prj.weight": [384, 18389]})
    config = _shipped("PP-OCRv5_mobile_rec.yml")
    assert config["Architecture"]["Head"]["out_channels_list"] == {
        "CTCLabelDecode": 18385, "NRTRLabelDecode": 18388}
    model = build_model(config["Architecture"])
    assert _entries(model) == [[k, s] for k, s in reference.items()]


def test_v5_dictionary_is_packaged():
    path = os.path.join(ROOT, "ppdistill", "utils", "dict", "ppocrv5_dict.txt")
    with open(path, "rb") as handle:
        lines = handle.read().decode("utf-8").split("\n")
    lines = lines[:-1] if lines[-1] == "" else lines
    assert len(lines) == 18383 and lines[0] == "\u3000"


# --- (2) conformance: PaddleOCR's weights in, PaddleOCR's eval output out -------------------------

def test_v4_rec_conformance():
    """ch_PP-OCRv4_rec.yml with the 62-character fixture dictionary (no space: CTC 63, NRTR 66)
    loads PaddleOCR's seeded weights by name and reproduces its eval CTC softmax. The fixture's
    NRTR-branch weights are zeroed to keep it small: eval never runs that branch."""
    config = load_with_overrides(os.path.join(CONFIGS, "ch_PP-OCRv4_rec.yml"), [
        f"Global.character_dict_path={os.path.join(FIXTURES, 'v4_rec_dict.txt')}",
        "Global.use_space_char=false"])
    arch = with_dictionary_sizes(config)["Architecture"]
    assert arch["Head"]["out_channels_list"] == {"CTCLabelDecode": 63, "NRTRLabelDecode": 66}
    data = np.load(os.path.join(FIXTURES, "v4_rec_conformance.npz"))
    weights = {k[2:]: data[k].astype("float32") for k in data.files if k.startswith("w/")}
    model = build_model(arch)
    state = model.state_dict()
    assert sorted(state) == sorted(weights)
    assert all(list(state[k].shape) == list(v.shape) for k, v in weights.items())
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in weights.items()})
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(data["input/x"]))
    assert out.shape == [2, 40, 63]
    np.testing.assert_allclose(out.numpy(), data["output"], atol=1e-4, rtol=0)


# --- (3) SVTRNet ----------------------------------------------------------------------------------

def _tiny_svtr(**kwargs):
    args = dict(img_size=[16, 32], embed_dim=[8, 16, 32], depth=[1, 1, 1], num_heads=[2, 2, 4],
                mixer=["Local", "Conv", "Global"], local_mixer=[[3, 3], [3, 3], [3, 3]],
                out_channels=12, out_char_num=8)
    args.update(kwargs)
    return SVTRNet(**args)


def test_svtrnet_outputs_and_names():
    paddle.seed(1)
    net = _tiny_svtr()
    x = paddle.randn([2, 3, 16, 32])
    net.eval()
    assert net(x).shape == [2, 12, 1, 8]
    keys = list(net.state_dict())
    assert keys[:3] == ["pos_embed", "patch_embed.proj.0.conv.weight",
                        "patch_embed.proj.0.conv.bias"]
    assert "blocks2.0.mixer.local_mixer.weight" in keys and "blocks1.0.mixer.qkv.bias" in keys
    assert keys[-1] == "last_conv.weight" and "norm.weight" not in keys
    assert net.state_dict()["sub_sample1.conv.weight"].shape == [16, 8, 3, 3]
    tokens = _tiny_svtr(last_stage=False)
    tokens.eval()
    assert tokens(x).shape == [2, 8, 32]  # h/4 x w = 1 x 8 tokens of embed_dim[2]
    plain = _tiny_svtr(prenorm=False, patch_merging="Pool", last_stage=False)
    assert "norm.weight" in plain.state_dict() and "sub_sample1.proj.weight" in plain.state_dict()
    plain.eval()
    assert plain(x).shape == [2, 8, 32]
    with pytest.raises(ValueError, match="does not match img_size"):
        net(paddle.randn([1, 3, 16, 40]))


def test_svtrnet_last_stage_dropout_scales_in_eval_and_droppath_is_deterministic():
    paddle.seed(2)
    net = _tiny_svtr(drop_path_rate=0.5)
    x = paddle.randn([2, 3, 16, 32])
    net.eval()
    first = net(x).numpy()
    np.testing.assert_array_equal(first, net(x).numpy())
    net.last_stage = False
    tokens = net(x)
    net.last_stage = True
    grid = tokens.transpose([0, 2, 1]).reshape([2, 32, 1, 8])
    expected = F.hardswish(net.last_conv(F.adaptive_avg_pool2d(grid, [1, 8]))) * 0.9
    np.testing.assert_allclose(first, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_svtrnet_config_errors():
    with pytest.raises(ConfigError, match="unknown mixer 'Lokal'"):
        _tiny_svtr(mixer=["Lokal", "Conv", "Global"])
    with pytest.raises(ConfigError, match="activation"):
        _tiny_svtr(act="nn.Mish")
    with pytest.raises(ConfigError, match="one entry per block"):
        _tiny_svtr(mixer=["Global"])
    with pytest.raises(ConfigError, match="block_unit"):
        _tiny_svtr(block_unit="ConvBlock")


def test_local_attention_mask_window():
    mask = SVTRAttention.local_mask([3, 4], [3, 3])
    centre = mask[1 * 4 + 1].reshape(3, 4)          # query at (1, 1): rows 0-2, cols 0-2
    assert np.isinf(centre[:, 3]).all() and (centre[:, :3] == 0).all()
    corner = mask[0].reshape(3, 4)                  # query at (0, 0): rows 0-1, cols 0-1
    assert (corner[:2, :2] == 0).all() and np.isinf(corner[2]).all()
    assert np.isinf(corner[:, 2:]).all()
    wide = SVTRAttention.local_mask([2, 6], [1, 4]).reshape(12, 2, 6)[2]   # even kernel: w-2..w+1
    assert (wide[0, 0:4] == 0).all() and np.isinf(wide[0, 4:]).all() and np.isinf(wide[1]).all()


def test_svtr_block_post_norm_matches_numpy():
    """prenorm=True: x = LN1(x + attn(x)); x = LN2(x + mlp(x)), eps 1e-6, exact GELU."""
    paddle.seed(3)
    block = SVTRBlock(8, 2, mixer="Global", mlp_ratio=2.0, qkv_bias=True, epsilon=1e-6)
    block.eval()
    x = np.random.RandomState(0).randn(2, 5, 8).astype("float32")
    w = {k: v.numpy().astype("float64") for k, v in block.state_dict().items()}

    def layer_norm(v, name):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def gelu(v):
        from math import erf
        return 0.5 * v * (1 + np.vectorize(erf)(v / np.sqrt(2)))

    qkv = (x @ w["mixer.qkv.weight"] + w["mixer.qkv.bias"]).reshape(2, 5, 3, 2, 4)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    scores = (q * 4 ** -0.5) @ k.transpose(0, 1, 3, 2)
    attn = np.exp(scores - scores.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    mixed = (attn @ v).transpose(0, 2, 1, 3).reshape(2, 5, 8)
    h = layer_norm(x + mixed @ w["mixer.proj.weight"] + w["mixer.proj.bias"], "norm1")
    hidden = gelu(h @ w["mlp.fc1.weight"] + w["mlp.fc1.bias"])
    mlp = hidden @ w["mlp.fc2.weight"] + w["mlp.fc2.bias"]
    expected = layer_norm(h + mlp, "norm2")
    np.testing.assert_allclose(block(paddle.to_tensor(x)).numpy(), expected, atol=1e-5)


def test_conv_mixer_is_a_grouped_conv_on_the_token_grid():
    paddle.seed(4)
    block = SVTRBlock(8, 2, mixer="Conv", local_mixer=[3, 5], hw=[2, 6])
    tokens = paddle.randn([1, 12, 8])
    grid = tokens.transpose([0, 2, 1]).reshape([1, 8, 2, 6])
    conv = block.mixer.local_mixer
    expected = F.conv2d(grid, conv.weight, conv.bias, padding=[1, 2], groups=2)
    np.testing.assert_allclose(block.mixer(tokens).numpy(),
                               expected.flatten(2).transpose([0, 2, 1]).numpy(), atol=1e-6)
    assert conv.weight.shape == [8, 4, 3, 5]


# --- (4) the v4 svtr neck and MultiHead CTC + NRTR on a stand-in backbone -------------------------

def _v4_head(in_channels=32, ctc=10, nrtr_dim=64, layers=1):
    paddle.seed(5)
    head_list = copy.deepcopy(V4_HEAD)
    head_list[0]["CTCHead"]["Neck"]["dims"] = 24
    head_list[0]["CTCHead"]["Neck"]["hidden_dims"] = 24
    head_list[1]["NRTRHead"].update(nrtr_dim=nrtr_dim, num_decoder_layers=layers)
    return MultiHead(in_channels, {"CTCLabelDecode": ctc, "NRTRLabelDecode": ctc + 3}, head_list)


def _gtc_targets():
    label_ctc = np.zeros([2, 25], "int64")
    label_ctc[0, :3], label_ctc[1, :1] = [1, 2, 3], [4]
    label_gtc = np.zeros([2, 25], "int64")
    label_gtc[0, :5], label_gtc[1, :3] = [2, 4, 5, 6, 3], [2, 7, 3]
    return [paddle.to_tensor(label_ctc), paddle.to_tensor(label_gtc),
            paddle.to_tensor(np.array([3, 1], "int64")), paddle.to_tensor(np.ones(2, "float32"))]


def test_v4_neck_kernel_1x3_shapes_and_padding():
    head = _v4_head()
    state = head.state_dict()
    assert state["ctc_encoder.encoder.conv1.conv.weight"].shape == [4, 32, 1, 3]
    assert state["ctc_encoder.encoder.conv4.conv.weight"].shape == [4, 64, 1, 3]
    assert head.ctc_encoder.encoder.conv1.conv._padding == [0, 1]
    assert state["before_gtc.1.fc.weight"].shape == [32, 64]
    assert state["gtc_head.tgt_word_prj.weight"].shape == [64, 14]   # NRTR 13 + 1
    assert head.gtc_head.nhead == 2                                  # nrtr_dim // 32


def test_multihead_gtc_train_and_eval_outputs():
    head = _v4_head()
    x = paddle.randn([2, 32, 1, 12])
    head.train()
    out = head(x, _gtc_targets())
    assert list(out) == ["ctc", "ctc_neck", "gtc"]
    assert out["ctc"].shape == [2, 12, 10] and out["ctc_neck"].shape == [2, 12, 24]
    assert out["gtc"].shape == [2, 4, 14]      # 1 + max(length) steps, NRTR classes + 1
    head.eval()
    probs = head(x, _gtc_targets())
    assert isinstance(probs, paddle.Tensor) and probs.shape == [2, 12, 10]
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="4-D backbone map"):
        head(paddle.randn([2, 12, 32]))


def test_use_guide_backbone_learns_only_through_the_gtc_branch():
    head = _v4_head()
    head.train()
    x = paddle.randn([2, 32, 1, 12])
    x.stop_gradient = False
    out = head(x, _gtc_targets())
    out["ctc"].sum().backward()
    assert x.grad is None or not np.any(x.grad.numpy())
    x2 = paddle.randn([2, 32, 1, 12])
    x2.stop_gradient = False
    head(x2, _gtc_targets())["gtc"].sum().backward()
    assert x2.grad is not None and np.any(x2.grad.numpy())


def test_v4_model_train_output_through_base_model():
    config = {"model_type": "rec", "algorithm": "SVTR", "return_all_feats": True,
              "Backbone": {"name": "SVTRNet", "img_size": [16, 32], "embed_dim": [8, 16, 32],
                           "depth": [1, 1, 1], "num_heads": [2, 2, 4],
                           "mixer": ["Conv", "Global", "Global"],
                           "local_mixer": [[3, 3], [3, 3], [3, 3]], "out_channels": 16,
                           "out_char_num": 8},
              "Head": {"name": "MultiHead", "head_list": copy.deepcopy(V4_HEAD),
                       "out_channels_list": {"CTCLabelDecode": 10, "NRTRLabelDecode": 13}}}
    config["Head"]["head_list"][1]["NRTRHead"].update(nrtr_dim=64, num_decoder_layers=1)
    model = build_model(config)
    model.train()
    out = model(paddle.randn([2, 3, 16, 32]), data=_gtc_targets())
    assert list(out) == ["backbone_out", "neck_out", "head_out"]
    assert out["backbone_out"].shape == [2, 16, 1, 8] and out["neck_out"].shape == [2, 8, 120]
    assert out["head_out"]["gtc"].shape == [2, 4, 14]


# --- (5) head class counts come from the head classes ---------------------------------------------

def test_heads_declare_their_dictionary_sizes():
    assert [(c.label_decoder, c.classes_for(100)) for c in (CTCHead, SARHead, NRTRHead)] == [
        ("CTCLabelDecode", 100), ("SARLabelDecode", 102), ("NRTRLabelDecode", 103)]
    head = {"name": "MultiHead", "head_list": copy.deepcopy(V4_HEAD)}
    MultiHead.fill_class_counts(head, 6625, "Architecture.Head")
    assert head["out_channels_list"] == {"CTCLabelDecode": 6625, "NRTRLabelDecode": 6628}
    # PaddleOCR's export form (all three entries) is accepted and completed, not rejected
    head = {"name": "MultiHead", "head_list": copy.deepcopy(V4_HEAD),
            "out_channels_list": {"CTCLabelDecode": 6625, "SARLabelDecode": 6627}}
    MultiHead.fill_class_counts(head, 6625, "Architecture.Head")
    assert head["out_channels_list"]["NRTRLabelDecode"] == 6628
    head["out_channels_list"]["NRTRLabelDecode"] = 6629
    with pytest.raises(ConfigError, match="NRTRLabelDecode: the dictionary gives 6624"):
        MultiHead.fill_class_counts(head, 6625, "Architecture.Head")


def test_with_dictionary_sizes_fills_heads_and_sar_ignore_index_without_mutating():
    config = load_with_overrides(os.path.join(CONFIGS, "ch_PP-OCRv3_rec_distillation.yml"))
    original = copy.deepcopy(config)
    sized = with_dictionary_sizes(config)
    assert config == original
    for name in ("Teacher", "Student"):
        assert sized["Architecture"]["Models"][name]["Head"]["out_channels_list"] == {
            "CTCLabelDecode": 6625, "SARLabelDecode": 6627}
    sar = [e for e in sized["Loss"]["loss_config_list"] if "DistillationSARLoss" in e]
    assert sar and sar[0]["DistillationSARLoss"]["ignore_index"] == 6626
    single = {"Global": {"character_dict_path": None},
              "Architecture": {"model_type": "rec", "Backbone": {"name": "X"},
                               "Head": {"name": "CTCHead", "out_channels": 40}}}
    with pytest.raises(ConfigError, match="Architecture.Head.out_channels: .* needs 37"):
        with_dictionary_sizes(single)


# --- (6) v4 labels and NRTR decoding with the full ppocr_keys_v1 dictionary -----------------------

KEYS_V1 = "ppdistill/utils/dict/ppocr_keys_v1.txt"


def test_multi_label_encode_v4_known_values():
    from ppdistill.data.imaug.label_ops_rec import MultiLabelEncode
    encode = MultiLabelEncode(max_text_length=25, character_dict_path=KEYS_V1,
                              use_space_char=True, gtc_encode="NRTRLabelEncode")
    out = encode({"img_path": "x.jpg", "image": "img", "label": "中a 1", "extra": 1})
    assert sorted(out) == ["image", "img_path", "label_ctc", "label_gtc", "length"]
    # CTC: blank 0, line i -> i + 1, space last (6624); NRTR = CTC + 3 (space 6627)
    assert out["label_ctc"].tolist() == [194, 4544, 6624, 93] + [0] * 21
    assert out["label_gtc"].tolist() == [2, 197, 4547, 6627, 96, 3] + [0] * 19
    assert out["label_ctc"].dtype == out["label_gtc"].dtype == np.int64
    assert int(out["length"]) == 4
    assert encode({"label": "中" * 23})["label_gtc"][24] == 3     # 23 characters fit
    assert encode({"label": "中" * 24}) is None                    # NRTR needs <s> and </s>


def test_nrtr_decode_v4_known_values():
    from ppdistill.postprocess.distillation_rec_postprocess import DistillationNRTRLabelDecode
    from ppdistill.postprocess.rec_postprocess import NRTRLabelDecode
    decode = NRTRLabelDecode(KEYS_V1, use_space_char=True)
    assert len(decode.character) == 6628                           # = the NRTR head's classes
    logits = np.full([1, 5, 6629], -10.0, "float32")
    for step, (index, value) in enumerate([(197, 3.0), (6627, 2.0), (96, 1.0), (3, 4.0),
                                           (4547, 5.0)]):
        logits[0, step, index] = value
    probs = F.softmax(paddle.to_tensor(logits), axis=-1)
    expected = float(np.mean([probs.numpy()[0, i].max() for i in range(3)]))
    ((text, score),) = decode(probs)
    assert text == "中 1" and score == pytest.approx(expected, rel=1e-6)
    label = np.array([[2, 197, 4547, 3, 0]])
    assert decode(probs, label)[1] == [("中a", 1.0)]
    train_out = {"ctc": None, "ctc_neck": None, "gtc": probs}       # MultiHead training dict
    assert decode(train_out)[0][0] == "中 1"
    distill = DistillationNRTRLabelDecode(KEYS_V1, use_space_char=True, model_name=["Student"],
                                          key="head_out", multi_head=True)
    assert distill({"Student": {"head_out": train_out}})["Student"][0][0] == "中 1"
    with pytest.raises(TypeError, match="without a 'gtc' entry"):
        decode({"ctc": probs})


def test_svtrnet_model_exports_with_its_fixed_input_size(tmp_path):
    """PaddleOCR cannot export the SVTR sub-models (no input shape); here the backbone's fixed
    img_size becomes the export input spec."""
    from ppdistill.utils.export import export_model
    config = {"model_type": "rec", "algorithm": "SVTR",
              "Backbone": {"name": "SVTRNet", "img_size": [16, 32], "embed_dim": [8, 16, 32],
                           "depth": [1, 1, 1], "num_heads": [2, 2, 4],
                           "mixer": ["Local", "Conv", "Global"],
                           "local_mixer": [[3, 3], [3, 3], [3, 3]], "out_channels": 16,
                           "out_char_num": 8},
              "Head": {"name": "CTCHead", "out_channels": 10}}
    config["Neck"] = {"name": "SequenceEncoder", "encoder_type": "reshape"}
    paddle.seed(6)
    model = build_model(config)
    x = paddle.randn([2, 3, 16, 32])
    model.eval()
    expected = model(x).numpy()
    written = export_model({"Architecture": config}, model, str(tmp_path))
    assert written == {"": str(tmp_path)}
    loaded = paddle.jit.load(str(tmp_path / "inference"))
    loaded.eval()
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-5)


def test_frozen_svtr_teacher_is_deterministic_in_training():
    """DropPath counts as a dropout, so a frozen sub-model pins it (PaddleOCR's frozen teacher
    keeps dropping paths at random)."""
    from ppdistill.modeling.architectures.distillation_model import DistillationModel
    backbone = {"name": "SVTRNet", "img_size": [16, 32], "embed_dim": [8, 16, 32],
                "depth": [1, 2, 1], "num_heads": [2, 2, 4], "mixer": ["Conv"] * 2 + ["Global"] * 2,
                "local_mixer": [[3, 3]] * 3, "out_channels": 16, "out_char_num": 8,
                "drop_path_rate": 0.9}
    sub = {"model_type": "rec", "Backbone": backbone,
           "Neck": {"name": "SequenceEncoder", "encoder_type": "reshape"},
           "Head": {"name": "CTCHead", "out_channels": 10}}
    paddle.seed(7)
    model = DistillationModel({"model_type": "rec", "name": "DistillationModel",
                               "Models": {"Teacher": dict(sub, freeze_params=True),
                                          "Student": copy.deepcopy(sub)}})
    model.train()
    x = paddle.randn([4, 3, 16, 32])
    first, second = model(x), model(x)
    np.testing.assert_array_equal(first["Teacher"].numpy(), second["Teacher"].numpy())
    assert not np.array_equal(first["Student"].numpy(), second["Student"].numpy())


def test_nrtr_gtc_branch_train_forward_matches_numpy():
    """One post-norm decoder layer: embedding * sqrt(d) (+ pe), causal self-attention and
    cross-attention with the scale after q.k^T, ReLU MLP, LayerNorm eps 1e-5, bias-free
    projection; step j sees tokens 0..j of label[:, :1 + max(length)]."""
    paddle.seed(8)
    d, heads, vocab = 8, 2, 7
    head = NRTRHead(d_model=d, nhead=heads, num_encoder_layers=-1, beam_size=-1,
                    num_decoder_layers=1, max_len=25, dim_feedforward=16,
                    residual_dropout_rate=0.0, out_channels=vocab - 1)
    head.train()
    memory = np.random.RandomState(1).randn(2, 5, d).astype("float32")
    label = np.array([[2, 4, 5, 3, 0, 0], [2, 6, 3, 0, 0, 0]], "int64")
    out = head(paddle.to_tensor(memory), [paddle.to_tensor(label), paddle.to_tensor([2, 1])])
    w = {k: v.numpy().astype("float64") for k, v in head.state_dict().items()}
    tokens = label[:, :3]                                  # tgt = label[:, :2 + 2], minus the last
    emb = w["embedding.embedding.weight"][tokens] * np.sqrt(d) * (tokens != 0)[..., None]
    position = np.arange(3)[:, None] * np.exp(np.arange(0, d, 2) * (-np.log(10000.0) / d))
    pe = np.stack([np.sin(position), np.cos(position)], axis=-1).reshape(3, d)
    np.testing.assert_allclose(w["positional_encoding.pe"][:3, 0], pe, atol=1e-6)
    t = emb + pe

    def split(v, parts):
        return [v.reshape(v.shape[0], v.shape[1], parts, heads, d // heads)[:, :, i]
                .transpose(0, 2, 1, 3) for i in range(parts)]

    def attend(q, k, v, mask=0.0):
        s = q @ k.transpose(0, 1, 3, 2) * (d // heads) ** -0.5 + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        return (s @ v).transpose(0, 2, 1, 3).reshape(q.shape[0], -1, d)

    def linear(v, name, bias=True):
        return v @ w[f"{name}.weight"] + (w[f"{name}.bias"] if bias else 0.0)

    def norm(v, name):
        v = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)
        return v * w[f"{name}.weight"] + w[f"{name}.bias"]

    causal = np.triu(np.full([3, 3], -np.inf), 1)
    p = "decoder.0."
    t = norm(t + linear(attend(*split(linear(t, p + "self_attn.qkv"), 3), causal),
                        p + "self_attn.out_proj"), p + "norm1")
    q = split(linear(t, p + "cross_attn.q"), 1)[0]
    k, v = split(linear(memory.astype("float64"), p + "cross_attn.kv"), 2)
    t = norm(t + linear(attend(q, k, v), p + "cross_attn.out_proj"), p + "norm2")
    mlp = linear(np.maximum(linear(t, p + "mlp.fc1"), 0.0), p + "mlp.fc2")
    expected = linear(norm(t + mlp, p + "norm3"), "tgt_word_prj", bias=False)
    assert out.shape == [2, 3, vocab]
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-5)
