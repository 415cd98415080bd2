"""Recognition losses against LOSSES_AND_METRICS.md §11 check values and hand computations."""
import numpy as np
import paddle
import pytest

from ppdistill.losses import build_loss
from ppdistill.losses.distillation_rec_loss import (DistillationCTCLoss, DistillationNRTRLoss,
                                                    DistillationSARLoss)
from ppdistill.losses.rec_ce_loss import RecCELoss
from ppdistill.losses.rec_ctc_loss import CTCLoss
from ppdistill.losses.rec_multi_loss import MultiLoss
from ppdistill.losses.rec_nrtr_loss import NRTRLoss
from ppdistill.losses.rec_sar_loss import SARLoss
from ppdistill.registry import ConfigError


def S(*shape):
    return paddle.to_tensor(np.sin(np.arange(np.prod(shape))).reshape(shape).astype("float32"))


def T(values, dtype="int64"):
    return paddle.to_tensor(np.array(values, dtype=dtype))


CTC_LOGITS = lambda: 3 * S(2, 6, 5)  # noqa: E731
CTC_BATCH = lambda: [None, T([[1, 2, 0], [3, 3, 0]]), T([2, 2])]  # noqa: E731
SAR_LABEL = [[3, 0, 1, 3], [3, 2, 3, 4]]
NRTR_LABEL = [[2, 4, 5, 3, 0], [2, 5, 3, 0, 0]]
NRTR_LENGTH = [2, 1]


def _value(result):
    assert set(result) == {"loss"}
    assert result["loss"].shape == []
    return float(result["loss"])


def test_ctc_loss_check_value():
    assert _value(CTCLoss()(CTC_LOGITS(), CTC_BATCH())) == pytest.approx(8.1412640, abs=1e-4)


def test_ctc_loss_focal_check_value_and_list_input():
    loss = CTCLoss(use_focal_loss=True)
    assert _value(loss([S(2, 6, 5), CTC_LOGITS()], CTC_BATCH())) == pytest.approx(8.1259632, abs=1e-4)


def test_ctc_loss_matches_numpy_forward_algorithm():
    logits = S(1, 4, 3).numpy()[0]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    # label [1]: alignments over 4 steps of blank*, 1+, blank*
    total = 0.0
    for start in range(4):
        for end in range(start, 4):
            path = [0] * start + [1] * (end - start + 1) + [0] * (3 - end)
            total += np.prod([probs[t, c] for t, c in enumerate(path)])
    out = CTCLoss()(S(1, 4, 3), [None, T([[1, 0]]), T([1])])
    assert _value(out) == pytest.approx(-np.log(total), abs=1e-5)


def test_sar_loss_check_value():
    out = SARLoss(ignore_index=4)(S(2, 4, 5), [None, T(SAR_LABEL), T([2, 1])])
    assert _value(out) == pytest.approx(1.8465872, abs=1e-5)


def test_sar_loss_default_ignore_index_is_paddleocr_92():
    assert SARLoss().ignore_index == 92


def test_nrtr_loss_smoothing_and_plain():
    batch = [None, T(NRTR_LABEL), T(NRTR_LENGTH)]
    assert _value(NRTRLoss(smoothing=True)(S(2, 3, 6), batch)) == pytest.approx(2.2293706, abs=1e-5)
    assert _value(NRTRLoss(smoothing=False)(S(2, 3, 6), batch)) == pytest.approx(2.2583551, abs=1e-5)


def test_rec_ce_loss_no_ignore_counts_padding():
    batch = [None, T(NRTR_LABEL), T(NRTR_LENGTH)]
    assert _value(RecCELoss()(S(2, 3, 6), batch)) == pytest.approx(2.3898999, abs=1e-5)
    # with smoothing it is the NRTR smoothed loss (padding 0 masked, as PaddleOCR)
    assert _value(RecCELoss(smoothing=True)(S(2, 3, 6), batch)) == pytest.approx(2.2293706, abs=1e-5)
    assert _value(RecCELoss(ignore_index=0)(S(2, 3, 6), batch)) == pytest.approx(2.2583551, abs=1e-5)


def test_rec_ce_loss_with_all_and_dict():
    logits = S(2, 3, 6)
    label = T([[1, 2, 0], [3, 4, 5]])
    x = logits.numpy().reshape(-1, 6)
    lsm = x - np.log(np.exp(x).sum(1, keepdims=True))
    expected = -lsm[np.arange(6), label.numpy().reshape(-1)].mean()
    assert _value(RecCELoss(with_all=True)(logits, [None, label])) == pytest.approx(expected, abs=1e-5)
    out = RecCELoss()({"vision": logits, "align": [logits, logits]}, [None, label])
    assert set(out) == {"vision_loss", "align_loss", "loss"}
    assert float(out["align_loss"]) == pytest.approx(expected, abs=1e-5)
    assert float(out["loss"]) == pytest.approx(2 * expected, abs=1e-5)


def test_registry_names_rec_ce_loss_separately_from_basic_ce():
    assert isinstance(build_loss({"name": "RecCELoss", "smoothing": True}), RecCELoss)
    assert not isinstance(build_loss({"name": "CELoss"}), RecCELoss)


def _multi_batch():
    """[image, label_ctc, label_sar, length, valid_ratio] with SAR labels of 4 positions."""
    return [paddle.zeros([2, 3, 4, 4]), T([[1, 2, 0], [3, 3, 0]]), T(SAR_LABEL), T([2, 2]),
            paddle.ones([2])]


def test_multi_loss_weights_and_slicing():
    loss = MultiLoss([{"CTCLoss": None}, {"SARLoss": {"ignore_index": 4}}], weight_1=1.0,
                     weight_2=0.5)
    out = loss({"ctc": CTC_LOGITS(), "sar": S(2, 4, 5), "ctc_neck": S(2, 2)}, _multi_batch())
    assert float(out["CTCLoss"]) == pytest.approx(8.1412640, abs=1e-4)
    assert float(out["SARLoss"]) == pytest.approx(0.5 * 1.8465872, abs=1e-5)
    assert float(out["loss"]) == pytest.approx(8.1412640 + 0.5 * 1.8465872, abs=1e-4)


def test_multi_loss_errors():
    with pytest.raises(ConfigError, match="supports"):
        MultiLoss([{"DMLLoss": None}])
    with pytest.raises(ConfigError, match="unexpected key"):
        MultiLoss([{"SARLoss": {"ignore_idx": 3}}])
    with pytest.raises(ValueError, match="'sar'"):
        MultiLoss([{"SARLoss": None}])({"ctc": CTC_LOGITS()}, _multi_batch())


def _fake_predictions():
    teacher_ctc = CTC_LOGITS() * 0.5
    return {"Student": {"head_out": {"ctc": CTC_LOGITS(), "sar": S(2, 4, 5)}},
            "Teacher": {"head_out": {"ctc": teacher_ctc, "sar": S(2, 4, 5) * 2}}}


def test_distillation_ctc_loss_keys_and_batch_slicing():
    loss = DistillationCTCLoss(["Student", "Teacher"], key="head_out", multi_head=True)
    preds = _fake_predictions()
    out = loss(preds, _multi_batch())
    assert list(out) == ["loss_ctc_Student_0", "loss_ctc_Teacher_1", "loss"]
    assert all(v.shape == [] for v in out.values())
    assert float(out["loss_ctc_Student_0"]) == pytest.approx(8.1412640, abs=1e-4)
    teacher = CTCLoss()(preds["Teacher"]["head_out"]["ctc"], CTC_BATCH())["loss"]
    assert float(out["loss_ctc_Teacher_1"]) == pytest.approx(float(teacher), abs=1e-5)
    assert float(out["loss"]) == pytest.approx(8.1412640 + float(teacher), abs=1e-4)


def test_distillation_ctc_loss_without_multi_head_uses_full_batch():
    loss = DistillationCTCLoss("Student", key="ctc_out", name="ctc", use_focal_loss=True)
    out = loss({"Student": {"ctc_out": CTC_LOGITS()}}, CTC_BATCH())
    assert float(out["ctc_Student_0"]) == pytest.approx(8.1259632, abs=1e-4)


def test_distillation_sar_loss_keys_and_slicing():
    loss = DistillationSARLoss(["Student"], key="head_out", multi_head=True, ignore_index=4)
    out = loss(_fake_predictions(), _multi_batch())
    assert list(out) == ["loss_sar_Student_0", "loss"]
    assert float(out["loss_sar_Student_0"]) == pytest.approx(1.8465872, abs=1e-5)
    assert DistillationSARLoss(["Student"]).task_loss.ignore_index == 92


def test_distillation_nrtr_loss_arguments_honoured():
    batch = [paddle.zeros([2, 3, 4, 4]), T([[1, 2, 0], [3, 0, 0]]), T(NRTR_LABEL), T(NRTR_LENGTH)]
    preds = {"Student": {"head_out": {"ctc": S(2, 6, 5), "gtc": S(2, 3, 6)}}}
    smooth = DistillationNRTRLoss(["Student"], key="head_out", multi_head=True)(preds, batch)
    assert list(smooth) == ["loss_nrtr_Student_0", "loss"]
    assert float(smooth["loss"]) == pytest.approx(2.2293706, abs=1e-5)
    paddle_like = DistillationNRTRLoss(["Student"], key="head_out", multi_head=True,
                                       smoothing=False)  # padding counts, as PaddleOCR
    assert float(paddle_like(preds, batch)["loss"]) == pytest.approx(2.3898999, abs=1e-5)
    no_pad = DistillationNRTRLoss(["Student"], key="head_out", multi_head=True, smoothing=False,
                                  ignore_index=0)
    assert float(no_pad(preds, batch)["loss"]) == pytest.approx(2.2583551, abs=1e-5)


def test_distillation_losses_clear_errors():
    loss = DistillationCTCLoss(["Student", "Techer"], key="head_out", multi_head=True)
    with pytest.raises(ConfigError, match="Techer.*did you mean 'Teacher'"):
        loss(_fake_predictions(), _multi_batch())
    with pytest.raises(ConfigError, match="no head 'gtc'"):
        DistillationNRTRLoss(["Student"], key="head_out", multi_head=True)(
            _fake_predictions(), _multi_batch())
    with pytest.raises(ConfigError, match="model_name_list"):
        DistillationSARLoss([])


def test_distillation_rec_losses_in_combined_loss_backward():
    config = {"name": "CombinedLoss", "loss_config_list": [
        {"DistillationCTCLoss": {"weight": 1.0, "model_name_list": ["Student", "Teacher"],
                                 "key": "head_out", "multi_head": True}},
        {"DistillationSARLoss": {"weight": 0.5, "model_name_list": ["Student"],
                                 "key": "head_out", "multi_head": True, "ignore_index": 4}}]}
    logits = CTC_LOGITS()
    logits.stop_gradient = False
    preds = _fake_predictions()
    preds["Student"]["head_out"]["ctc"] = logits
    out = build_loss(config)(preds, _multi_batch())
    assert {"loss_ctc_Student_0", "loss_ctc_Teacher_1", "loss_sar_Student_0", "loss"} <= set(out)
    out["loss"].backward()
    assert logits.grad is not None and np.isfinite(logits.grad.numpy()).all()
