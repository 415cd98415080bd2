"""Recognition decoders: §11 decode checks, encode→decode round trips, Distillation* wrappers."""
import math

import numpy as np
import paddle
import pytest

from ppdistill.data.imaug.label_ops_rec import (CTCLabelEncode, NRTRLabelEncode,
                                                SARLabelEncode)
from ppdistill.postprocess import build_post_process
from ppdistill.postprocess.distillation_rec_postprocess import (DistillationCTCLabelDecode,
                                                                DistillationNRTRLabelDecode,
                                                                DistillationSARLabelDecode)
from ppdistill.postprocess.rec_postprocess import (CTCLabelDecode, NRTRLabelDecode,
                                                   SARLabelDecode)
from ppdistill.registry import ConfigError


@pytest.fixture
def abcd(tmp_path):
    path = tmp_path / "abcd.txt"
    path.write_text("a\nb\nc\nd\n", encoding="utf-8")
    return str(path)


def probs_from_path(paths, num_classes, prob=0.9):
    """[B, T, C] scores whose argmax is ``paths`` with max value ``prob``."""
    paths = np.asarray(paths)
    out = np.full(paths.shape + (num_classes,), (1 - prob) / (num_classes - 1), np.float32)
    for b, t in np.ndindex(paths.shape):
        out[b, t, paths[b, t]] = prob
    return out


def test_ctc_decode_check_values(abcd):
    dec = CTCLabelDecode(abcd, use_space_char=True)
    assert dec.character == ["blank", "a", "b", "c", "d", " "]
    preds = probs_from_path([[1, 1, 0, 1, 2, 5], [0, 0, 0, 0, 0, 0]], 6)
    texts, labels = dec(paddle.to_tensor(preds), np.array([[3, 3, 0, 0], [1, 0, 0, 0]]))
    assert texts[0][0] == "aab " and texts[0][1] == pytest.approx(0.9)
    assert texts[1] == ("", 0.0)
    assert labels == [("cc", 1.0), ("a", 1.0)]
    assert isinstance(texts[0][1], float)
    # a list/tuple input uses its last element
    assert dec([np.zeros((1, 2, 6)), preds[:1]]) == [texts[0]]


def test_ctc_default_alphabet_and_head_size():
    assert len(CTCLabelDecode().character) == 37
    # a MultiHead training output decodes its CTC branch; a dict without one is an error
    probs = np.zeros((1, 2, 37), dtype="float32")
    probs[0, 0, 11] = probs[0, 1, 0] = 1.0
    assert CTCLabelDecode()({"ctc": probs, "sar": np.zeros((1, 3, 39))}) == [("a", 1.0)]
    with pytest.raises(TypeError, match="without a 'ctc' entry"):
        CTCLabelDecode()({"sar": np.zeros((1, 2, 37))})


def test_sar_decode_check_values(abcd):
    dec = SARLabelDecode(abcd)
    assert len(dec.character) == 7 and dec.end_idx == 5 and dec.padding_idx == 6
    preds = probs_from_path([[0, 0, 5, 1, 1], [5, 0, 1, 2, 3]], 7)
    preds[0, 1, 0] = 0.7
    texts, labels = dec(preds, paddle.to_tensor([[5, 2, 5, 6, 6], [5, 0, 1, 5, 6]]))
    assert texts[0][0] == "aa" and texts[0][1] == pytest.approx(0.8)
    assert texts[1] == ("", 0.0)   # PaddleOCR: NaN
    assert labels == [("c", 1.0), ("ab", 1.0)]


def test_sar_rm_symbol():
    dec = SARLabelDecode(rm_symbol=True)
    # default table: 0-9a-z; an unknown-token position is written literally, then stripped
    path = [[dec.dict["a"], dec.unknown_idx, dec.dict["7"], dec.end_idx]]
    assert dec(probs_from_path(path, len(dec.character)))[0][0] == "aukn7"


def test_nrtr_decode_and_batch_of_two(abcd):
    dec = NRTRLabelDecode(abcd)        # use_space_char defaults to true here
    assert dec.character[:4] == ["blank", "<unk>", "<s>", "</s>"] and dec.character[-1] == " "
    # a batch of two score tensors is decoded as scores, not misread as (ids, probs)
    preds = probs_from_path([[4, 5, 8, 3, 0], [2, 6, 0, 7, 3]], 9)
    texts, labels = dec(paddle.to_tensor(preds), np.array([[2, 4, 5, 3, 0], [2, 7, 3, 0, 0]]))
    assert texts[0][0] == "ab " and texts[0][1] == pytest.approx(0.9)
    assert texts[1][0] == "cd"          # "<s>" and "blank" are not written into the text
    assert labels == [("ab", 1.0), ("d", 1.0)]
    ids = np.array([[2, 4, 5, 3], [2, 6, 3, 0]])
    probs = np.array([[1.0, 0.5, 0.7, 0.9], [1.0, 0.6, 0.8, 0.1]])
    out = dec((ids, paddle.to_tensor(probs)))
    assert out[0][0] == "ab" and out[0][1] == pytest.approx(0.6)
    assert out[1][0] == "c" and out[1][1] == pytest.approx(0.6)
    assert dec(probs_from_path([[3, 4]], 9)) == [("", 0.0)]


@pytest.mark.parametrize("encoder_cls, decoder_cls, max_len", [
    (CTCLabelEncode, CTCLabelDecode, 8), (SARLabelEncode, SARLabelDecode, 8),
    (NRTRLabelEncode, NRTRLabelDecode, 8)])
def test_round_trip_encode_one_hot_decode(abcd, encoder_cls, decoder_cls, max_len):
    encoder = encoder_cls(max_text_length=max_len, character_dict_path=abcd, use_space_char=True)
    decoder = decoder_cls(abcd, use_space_char=True)
    assert decoder.character == encoder.character
    words = ["abba", "d c", "cab"]
    labels = np.stack([encoder({"label": w})["label"] for w in words])
    steps = labels[:, 1:]   # SAR/NRTR decoders predict the label after its start token
    if decoder_cls is CTCLabelDecode:  # separate repeated characters with a blank step
        steps = np.stack([np.ravel(np.stack([row, np.zeros_like(row)], 1)) for row in labels])
    one_hot = np.eye(len(decoder.character), dtype=np.float32)[steps]
    texts, decoded_labels = decoder(paddle.to_tensor(one_hot), labels)
    assert [t for t, _ in texts] == words and all(s == 1.0 for _, s in texts)
    assert [t for t, _ in decoded_labels] == words


def _distill_preds(ctc, sar=None, to_tensor=True):
    conv = paddle.to_tensor if to_tensor else np.asarray
    head = {"ctc": conv(ctc)}
    if sar is not None:
        head["sar"] = conv(sar)
    return {"Student": {"head_out": head}, "Teacher": {"head_out": head}}


@pytest.mark.parametrize("to_tensor", [True, False])
def test_distillation_ctc_decode(abcd, to_tensor):
    dec = DistillationCTCLabelDecode(abcd, True, model_name=["Student", "Teacher"],
                                     key="head_out", multi_head=True)
    assert len(dec.character) == 6
    ctc = probs_from_path([[1, 0, 2, 2]], 6)
    out = dec(_distill_preds(ctc, to_tensor=to_tensor), np.array([[1, 2, 0, 0]]))
    assert list(out) == ["Student", "Teacher"]
    assert out["Student"][0][0][0] == "ab" and out["Student"][1] == [("ab", 1.0)]
    # eval-mode MultiHead returns the CTC tensor itself: used as is
    eval_preds = {"Student": {"head_out": paddle.to_tensor(ctc)}}
    assert DistillationCTCLabelDecode(abcd, True, model_name="Student", key="head_out",
                                      multi_head=True)(eval_preds)["Student"][0][0] == "ab"


def test_distillation_sar_and_nrtr_decode(abcd):
    sar = probs_from_path([[0, 1, 5]], 7)
    dec = DistillationSARLabelDecode(abcd, model_name=["Student"], key="head_out",
                                     multi_head=True)
    assert dec(_distill_preds(probs_from_path([[1]], 5), sar))["Student"][0][0] == "ab"
    gtc = probs_from_path([[4, 6, 3]], 8)
    nrtr = DistillationNRTRLabelDecode(abcd, model_name="Student", key="head_out",
                                       multi_head=True)
    assert len(nrtr.character) == 8
    preds = {"Student": {"head_out": {"ctc": None, "gtc": gtc}}}
    assert nrtr(preds)["Student"][0][0] == "ac"


def test_distillation_decode_errors_and_builder(abcd):
    dec = DistillationCTCLabelDecode(abcd, model_name=["Studnt"], key="head_out")
    with pytest.raises(ConfigError, match="did you mean 'Student'"):
        dec(_distill_preds(probs_from_path([[1]], 5)))
    with pytest.raises(ConfigError, match="model_name"):
        DistillationCTCLabelDecode(model_name=[])
    built = build_post_process({"name": "DistillationCTCLabelDecode", "model_name": ["Student"],
                                "key": "head_out", "multi_head": True},
                               {"character_dict_path": abcd, "use_space_char": True,
                                "max_text_length": 25})
    assert len(built.character) == 6 and built.model_name == ["Student"]


def test_arabic_dictionary_reverses_runs(tmp_path):
    path = tmp_path / "arabic_dict.txt"
    path.write_text("\u062c\n\u062d\na\nb\n", encoding="utf-8")
    dec = CTCLabelDecode(str(path))
    # decoded order: j h a b -> runs [j][h][ab] reversed -> ab h j
    assert dec(probs_from_path([[1, 2, 3, 4]], 5))[0][0] == "ab\u062d\u062c"
    assert not math.isnan(dec(probs_from_path([[0]], 5))[0][1])


def test_distillation_decode_missing_branch(abcd):
    dec = DistillationSARLabelDecode(abcd, model_name="Student", key="head_out", multi_head=True)
    with pytest.raises(ConfigError, match="no head 'sar'"):
        dec(_distill_preds(probs_from_path([[1]], 5)))
