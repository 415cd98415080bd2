"""Recognition models: PaddleOCR parameter names/shapes, conformance numerics, train/eval outputs."""
import copy
import json
import os

import numpy as np
import paddle
import pytest
import yaml

from ppdistill.modeling.architectures import BaseModel, build_model
from ppdistill.modeling.backbones.rec_mv1_enhance import MobileNetV1Enhance, SEModule
from ppdistill.modeling.heads.rec_ctc_head import CTCHead
from ppdistill.modeling.heads.rec_multi_head import MultiHead
from ppdistill.modeling.heads.rec_nrtr_head import NRTRHead
from ppdistill.modeling.heads.rec_sar_head import SARHead
from ppdistill.modeling.necks.rnn import Im2Seq, SequenceEncoder
from ppdistill.registry import HEADS, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CONFIGS = os.path.join(ROOT, "configs", "rec")
DICT_DIR = os.path.join(ROOT, "ppdistill", "utils", "dict")


def _fixture_json(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return json.load(handle)


def _config(name):
    with open(os.path.join(CONFIGS, name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _ctc_classes(dict_path, use_space_char=True):
    with open(dict_path, "rb") as handle:
        lines = handle.read().decode("utf-8").splitlines()
    return len(lines) + int(use_space_char) + 1  # blank + characters (+ space)


def _student_config():
    """The conformance Student sub-model (62-character dictionary: CTC 64, SAR 66)."""
    config = copy.deepcopy(_fixture_json("rec_student.json")["sub_model_config"])
    config.pop("pretrained")
    config.pop("freeze_params")
    return config


def _tiny_batch(batch=2, max_len=25, ctc_classes=64, sar_classes=66):
    """[label_ctc, label_sar, length, valid_ratio] as the MultiLabelEncode pipeline makes them."""
    bos, pad = sar_classes - 2, sar_classes - 1
    label_ctc = np.zeros([batch, max_len], "int64")
    label_sar = np.full([batch, max_len], pad, "int64")
    lengths = [3, 1][:batch] + [2] * max(0, batch - 2)
    for i, n in enumerate(lengths):
        chars = np.arange(1, n + 1) + i
        label_ctc[i, :n] = chars
        label_sar[i, 0], label_sar[i, 1:n + 1], label_sar[i, n + 1] = bos, chars - 1, bos
    valid = np.array([1.0, 0.5] + [0.75] * max(0, batch - 2), "float32")[:batch]
    return [paddle.to_tensor(label_ctc), paddle.to_tensor(label_sar),
            paddle.to_tensor(np.array(lengths, "int64")), paddle.to_tensor(valid)]


# --- (1) the v3 distillation Architecture == PaddleOCR's state_dict --------------------------------

def test_shipped_dictionaries():
    assert _ctc_classes(os.path.join(DICT_DIR, "ppocr_keys_v1.txt")) == 6625
    with open(os.path.join(DICT_DIR, "en_dict.txt"), "rb") as handle:
        assert len(handle.read().decode("utf-8").splitlines()) == 95


def test_v3_distillation_config_state_dict_matches_paddleocr():
    reference = _fixture_json("rec_distillation.json")
    arch = _config("ch_PP-OCRv3_rec_distillation.yml")["Architecture"]
    ctc = _ctc_classes(os.path.join(DICT_DIR, "ppocr_keys_v1.txt"))
    for name in arch["Models"]:
        arch["Models"][name]["Head"]["out_channels_list"] = {
            "CTCLabelDecode": ctc, "SARLabelDecode": ctc + 2}
    # the YAML (anchors resolved) builds exactly what PaddleOCR built
    assert arch == reference["architecture_as_built"]
    model = build_model(arch)
    got = [(name, list(value.shape)) for name, value in model.state_dict().items()]
    expected = [(entry["name"], entry["shape"]) for entry in reference["state_dict"]]
    assert len(got) == len(expected) == reference["num_state_dict_entries"] == 478
    mismatches = [(g, e) for g, e in zip(got, expected) if g != e]
    assert not mismatches, mismatches[:5]
    params = model.parameters()
    assert len(params) == reference["num_parameters"]
    frozen = {name for name, p in model.named_parameters() if not p.trainable}
    assert frozen == set(reference["frozen"])  # exactly the BN running statistics
    trainable = sum(int(np.prod(p.shape)) for p in params if p.trainable)
    assert trainable == reference["num_trainable_scalars"]


def test_fc_and_bn_regularizers():
    model = BaseModel(_student_config())
    fc = model.head.ctc_head.fc
    for param in (fc.weight, fc.bias):
        assert param.regularizer is not None
        assert param.regularizer._coeff == pytest.approx(1e-5)
    bn = model.backbone.conv1._batch_norm
    assert bn.weight.regularizer._coeff == 0.0 and bn.bias.regularizer._coeff == 0.0


# --- (2) conformance: PaddleOCR's weights in, PaddleOCR's outputs out ------------------------------

def test_student_conformance():
    reference = _fixture_json("rec_student.json")
    data = np.load(os.path.join(FIXTURES, "rec_student.npz"))
    model = BaseModel(_student_config())
    weights = {key[len("w/Student."):]: data[key].astype("float32")
               for key in data.files if key.startswith("w/")}
    own = model.state_dict()
    assert set(weights) == set(own)
    assert [e["name"] for e in reference["state_dict"]] == ["Student." + k for k in own]
    model.set_state_dict(weights)
    for key, value in own.items():  # every tensor (aliases included) really loaded
        np.testing.assert_array_equal(value.numpy(), weights[key])
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(data["input/x"]))
    assert list(out) == ["head_out"]
    probs = out["head_out"].numpy()
    assert probs.shape == (2, 40, 64)
    np.testing.assert_allclose(probs, data["output/head_out"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


# --- (3) training-mode MultiHead outputs ----------------------------------------------------------

def test_multihead_train_outputs_and_guide():
    model = BaseModel(_student_config())
    model.train()
    out = model(paddle.randn([2, 3, 48, 64]), _tiny_batch())
    assert list(out) == ["backbone_out", "neck_out", "head_out"]
    assert out["backbone_out"].shape == [2, 512, 1, 8]
    head = out["head_out"]
    assert list(head) == ["ctc", "ctc_neck", "sar"]
    assert head["ctc"].shape == [2, 8, 64]
    assert head["ctc_neck"].shape == [2, 8, 64] and out["neck_out"] is head["ctc_neck"]
    assert head["sar"].shape == [2, 25, 65]  # SAR never predicts PAD
    # use_guide: the CTC branch sends no gradient into the backbone, the SAR branch does
    head["ctc"].sum().backward()
    assert model.backbone.conv1._conv.weight.grad is None
    assert model.head.ctc_encoder.encoder.conv1.conv.weight.grad is not None
    head["sar"].sum().backward()
    assert model.backbone.conv1._conv.weight.grad is not None


def test_multihead_needs_targets_in_training():
    head = MultiHead(32, {"CTCLabelDecode": 6, "SARLabelDecode": 8},
                     [{"CTCHead": {"Neck": {"name": "reshape"}}},
                      {"SARHead": {"enc_dim": 8, "d_k": 8, "max_text_length": 4}}])
    head.train()
    with pytest.raises(ValueError, match="targets"):
        head(paddle.randn([1, 32, 1, 5]))
    head.eval()
    assert head(paddle.randn([1, 32, 1, 5])).shape == [1, 5, 6]


@pytest.mark.parametrize("head_list, out_list, message", [
    ([{"CTCHead": {"Neck": {"name": "reshape"}}}], {"CTCLabelDecode": 6}, "SARHead or NRTRHead"),
    ([{"CTCHead": {"Neck": {"name": "reshape"}}}, {"SARHed": {}}],
     {"CTCLabelDecode": 6}, "did you mean 'SARHead'"),
    ([{"CTCHead": {"Neck": {"name": "reshape"}}}, {"SARHead": {}}],
     {"CTCLabelDecode": 6}, "missing 'SARLabelDecode'"),
    ([{"CTCHead": {"Neck": {"name": "reshape"}}}, {"SARHead": {"enc_dims": 8}}],
     {"CTCLabelDecode": 6, "SARLabelDecode": 8}, "did you mean 'enc_dim'"),
    ([{"CTCHead": {"Head": {}}}, {"SARHead": {}}],
     {"CTCLabelDecode": 6, "SARLabelDecode": 8}, "Neck: missing 'name'"),
    ([{"CTCHead": {"Neck": {"name": "reshape"}}}, {"NRTRHead": {"nrtr_dims": 64}}],
     {"CTCLabelDecode": 6, "NRTRLabelDecode": 9}, "did you mean 'nrtr_dim'"),
])
def test_multihead_config_errors(head_list, out_list, message):
    with pytest.raises(ConfigError, match=message):
        MultiHead(32, out_list, head_list)


def test_multihead_nrtr_branch():
    head = MultiHead(32, {"CTCLabelDecode": 10, "NRTRLabelDecode": 13},
                     [{"CTCHead": {"Neck": {"name": "svtr", "dims": 16, "depth": 1,
                                            "hidden_dims": 16, "num_heads": 2}}},
                      {"NRTRHead": {"nrtr_dim": 64, "num_decoder_layers": 1,
                                    "max_text_length": 6}}], use_pos=True)
    keys = [k for k in head.state_dict() if "gtc" in k]
    assert keys[:4] == ["before_gtc.1.fc.weight", "before_gtc.2.dec_pos_embed",
                        "gtc_head.embedding.embedding.weight", "gtc_head.positional_encoding.pe"]
    assert "gtc_head.decoder.0.cross_attn.kv.weight" in keys
    assert head.state_dict()["gtc_head.tgt_word_prj.weight"].shape == [64, 14]
    head.train()
    label_gtc = paddle.to_tensor(np.array([[2, 4, 5, 3, 0, 0], [2, 6, 3, 0, 0, 0]], "int64"))
    out = head(paddle.randn([2, 32, 1, 10]), [None, label_gtc, paddle.to_tensor([2, 1]), None])
    assert list(out) == ["ctc", "ctc_neck", "gtc"]
    assert out["gtc"].shape == [2, 3, 14]  # 1 + max(length) steps, out_channels + 1 classes


def test_nrtr_head_eval_and_alias():
    assert HEADS.get("Transformer") is NRTRHead
    head = NRTRHead(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1, max_len=5,
                    dim_feedforward=64, out_channels=10)
    assert list(head.state_dict())[:3] == ["embedding.embedding.weight", "positional_encoding.pe",
                                           "encoder.0.self_attn.qkv.weight"]
    pe = head.positional_encoding.pe.numpy()[:, 0]
    angle = 3 * np.exp(-np.arange(0, 32, 2) * np.log(10000.0) / 32)
    np.testing.assert_allclose(pe[3, 0::2], np.sin(angle), atol=1e-5)
    np.testing.assert_allclose(pe[3, 1::2], np.cos(angle), atol=1e-5)
    head.eval()
    seq, prob = head(paddle.randn([2, 7, 32]))
    assert seq.shape[0] == 2 and seq.shape == prob.shape and 1 <= seq.shape[1] <= 5
    assert (seq.numpy()[:, 0] == 2).all() and np.allclose(prob.numpy()[:, 0], 1.0)
    with pytest.raises(ConfigError, match="beam"):
        NRTRHead(beam_size=3, out_channels=10)


# --- SAR head -----------------------------------------------------------------------------------

def _tiny_sar():
    head = SARHead(8, 10, enc_dim=8, max_text_length=4, d_k=8)
    head.eval()  # no dropout
    return head


def test_sar_valid_ratio_masks_padded_columns():
    head = _tiny_sar()
    feat = paddle.randn([2, 8, 2, 6])
    label = paddle.to_tensor(np.array([[8, 1, 2, 8], [8, 3, 8, 9]], "int64"))
    ratios = paddle.to_tensor(np.array([0.5, 1.0], "float32"))  # sample 0: 3 valid columns
    changed = feat.numpy().copy()
    changed[0, :, :, 4:] += 5.0  # beyond the valid width and the 3x3 key's reach
    outputs = []
    for value in (feat, paddle.to_tensor(changed)):
        holistic = head.encoder(value, ratios)
        outputs.append(head.decoder.forward_train(value, holistic, label, ratios).numpy())
    assert outputs[0].shape == (2, 4, 9)
    np.testing.assert_allclose(outputs[0][0], outputs[1][0], atol=1e-6)
    assert np.abs(outputs[0][1] - outputs[1][1]).max() == 0.0  # sample 1 untouched
    # without ratios the last column matters
    plain = [head.decoder.forward_train(v, head.encoder(v), label).numpy()
             for v in (feat, paddle.to_tensor(changed))]
    assert np.abs(plain[0][0] - plain[1][0]).max() > 1e-4


def test_sar_attention_matches_numpy():
    head = _tiny_sar()
    feat = paddle.randn([1, 8, 2, 3])
    holistic = paddle.randn([1, 1, 8])
    seq = paddle.randn([1, 2, 8])
    ratios = paddle.to_tensor(np.array([0.4], "float32"))  # ceil(0.4 * 3) = 2 columns
    logits = head.decoder.attend(seq, feat, holistic, ratios).numpy()[0]
    dec = head.decoder
    y = dec.rnn_decoder(seq)[0].numpy()[0]  # [T, 8]
    f = feat.numpy()[0]
    key = dec.conv3x3_1(feat).numpy()[0]  # [d_k, h, w]
    query = y @ dec.conv1x1_1.weight.numpy() + dec.conv1x1_1.bias.numpy()  # [T, d_k]
    energy = np.tanh(key[None] + query[:, :, None, None])  # [T, d_k, h, w]
    score = np.einsum("tkhw,k->thw", energy, dec.conv1x1_2.weight.numpy()[:, 0])
    score = score + dec.conv1x1_2.bias.numpy()[0]
    score[:, :, 2:] = -np.inf
    alpha = np.exp(score - score.max(axis=(1, 2), keepdims=True))
    alpha /= alpha.sum(axis=(1, 2), keepdims=True)
    glimpse = np.einsum("chw,thw->tc", f, alpha)
    concat = np.concatenate([y, glimpse, np.repeat(holistic.numpy()[0], 2, axis=0)], axis=1)
    expected = concat @ dec.prediction.weight.numpy() + dec.prediction.bias.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_sar_eval_greedy_probabilities():
    head = _tiny_sar()
    probs = head(paddle.randn([2, 8, 2, 6])).numpy()
    assert probs.shape == (2, 4, 9)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    head.train()
    with pytest.raises(ValueError, match="targets"):
        head(paddle.randn([2, 8, 2, 6]))


# --- (4) the v2 architecture --------------------------------------------------------------------

def test_v2_distillation_architecture():
    arch = _config("ch_PP-OCRv2_rec_distillation.yml")["Architecture"]
    for sub in arch["Models"].values():
        sub["Head"]["out_channels"] = 64
    model = build_model(arch)
    student = model.sub_model("Student")
    shapes = {k: list(v.shape) for k, v in student.state_dict().items()}
    assert sum(k.startswith("backbone.") for k in shapes) == 143
    assert "backbone.block_list.12._se.conv1.weight" in shapes
    assert shapes["neck.encoder.lstm.weight_ih_l0"] == [256, 512]
    assert shapes["neck.encoder.lstm.weight_hh_l0_reverse"] == [256, 64]
    assert shapes["neck.encoder.lstm.weight_ih_l1"] == [256, 128]
    assert shapes["neck.encoder.lstm.1.cell_bw.bias_hh"] == [256]
    assert shapes["head.fc1.weight"] == [128, 96] and shapes["head.fc2.weight"] == [96, 64]
    model.train()
    x = paddle.randn([2, 3, 32, 64])
    out = model(x)
    assert list(out) == ["Teacher", "Student"]
    assert out["Student"]["backbone_out"].shape == [2, 512, 1, 16]  # max-pool 2x2
    assert out["Student"]["neck_out"].shape == [2, 16, 128]
    assert out["Student"]["head_out"].shape == [2, 16, 64]
    model.eval()
    probs = model(x)["Teacher"]
    assert list(probs) == ["head_out"]
    np.testing.assert_allclose(probs["head_out"].numpy().sum(-1), 1.0, atol=1e-5)


def test_v3_student_config_builds():
    config = _config("ch_PP-OCRv3_rec.yml")
    assert config["Loss"]["name"] == "MultiLoss"
    arch = config["Architecture"]
    assert arch["Head"]["head_list"][1]["SARHead"]["max_text_length"] == 25  # the anchor
    arch["Head"]["out_channels_list"] = {"CTCLabelDecode": 64, "SARLabelDecode": 66}
    student = _student_config()
    assert arch["Backbone"] == student["Backbone"] and arch["Head"] == student["Head"]
    model = build_model(arch)
    model.eval()
    assert model(paddle.randn([1, 3, 48, 64])).shape == [1, 8, 64]


def test_se_module_uses_default_hardsigmoid_slope():
    se = SEModule(8)
    x = paddle.randn([2, 8, 3, 5])
    pooled = x.numpy().mean(axis=(2, 3))  # [N, C]
    hidden = np.maximum(pooled @ se.conv1.weight.numpy()[:, :, 0, 0].T + se.conv1.bias.numpy(), 0)
    z = hidden @ se.conv2.weight.numpy()[:, :, 0, 0].T + se.conv2.bias.numpy()
    gate = np.clip(z * 0.1666667 + 0.5, 0, 1)
    assert ((gate > 0) & (gate < 1)).all()  # unsaturated, so the slope matters
    np.testing.assert_allclose(se(x).numpy(), x.numpy() * gate[:, :, None, None], atol=1e-6)


def test_backbone_variants():
    v2 = MobileNetV1Enhance(scale=0.5)
    v3 = MobileNetV1Enhance(scale=0.5, last_conv_stride=[1, 2], last_pool_type="avg",
                            last_pool_kernel_size=[2, 2])
    x = paddle.randn([1, 3, 32, 32])
    assert v2(x).shape == [1, 512, 1, 8] and v3(x).shape == [1, 512, 1, 4]
    assert MobileNetV1Enhance(scale=0.25).out_channels == 256
    with pytest.raises(ConfigError, match="last_pool_type"):
        MobileNetV1Enhance(last_pool_type="mean")
    with pytest.raises(ConfigError, match="in_channels"):
        MobileNetV1Enhance(in_channels=1)


# --- CTC head -----------------------------------------------------------------------------------

def test_ctc_head_train_eval_and_feats():
    head = CTCHead(8, 5, mid_channels=6, return_feats=True)
    x = paddle.randn([2, 3, 8])
    head.train()
    feats, logits = head(x)
    np.testing.assert_allclose(feats.numpy(), head.fc1(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(logits.numpy(), head.fc2(head.fc1(x)).numpy(), atol=1e-6)
    head.eval()
    probs = head(x).numpy()
    expected = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    with pytest.raises(ConfigError, match="out_channels"):
        CTCHead(8, None)


# --- (5) SequenceEncoder ------------------------------------------------------------------------

@pytest.mark.parametrize("encoder_type, extra, out_channels", [
    ("reshape", {}, 32),
    ("fc", {"hidden_size": 12}, 12),
    ("rnn", {"hidden_size": 12}, 24),
    ("svtr", {"dims": 16, "depth": 1, "hidden_dims": 16, "num_heads": 2, "use_guide": True}, 16),
])
def test_sequence_encoder_types(encoder_type, extra, out_channels):
    neck = SequenceEncoder(32, encoder_type, **extra)
    assert neck.out_channels == out_channels
    x = paddle.randn([2, 32, 1, 7])
    neck.eval()
    out = neck(x)
    assert out.shape == [2, 7, out_channels]
    if encoder_type == "reshape":
        np.testing.assert_array_equal(out.numpy(), x.numpy()[:, :, 0].transpose(0, 2, 1))
        assert not neck.state_dict()
    if encoder_type == "rnn":
        keys = list(neck.state_dict())
        assert keys[:2] == ["encoder.lstm.weight_ih_l0", "encoder.lstm.weight_hh_l0"]
        assert "encoder.lstm.0.cell_fw.weight_ih" in keys


def test_svtr_encoder_names_and_depth():
    neck = SequenceEncoder(64, "svtr", dims=8, depth=3, hidden_dims=16, num_heads=4,
                           kernel_size=[1, 3])
    keys = list(neck.state_dict())
    assert keys[0] == "encoder.conv1.conv.weight"
    assert neck.state_dict()["encoder.conv1.conv.weight"].shape == [8, 64, 1, 3]
    assert neck.state_dict()["encoder.conv4.conv.weight"].shape == [8, 128, 1, 3]
    assert "encoder.svtr_block.2.mlp.fc1.weight" in keys
    assert neck.encoder.norm._epsilon == 1e-6
    assert neck.encoder.svtr_block[0].norm1._epsilon == 1e-5


def test_sequence_encoder_errors():
    with pytest.raises(ConfigError, match="encoder_type"):
        SequenceEncoder(32, "lstm")
    with pytest.raises(ConfigError, match="only apply to encoder_type 'svtr'"):
        SequenceEncoder(32, "rnn", dims=64)
    with pytest.raises(ValueError, match="height 1"):
        Im2Seq(4)(paddle.randn([1, 4, 2, 3]))
