"""KIE (SER) losses and their distillation wrappers against numpy on attention-masked tokens."""
import numpy as np
import paddle
import pytest
from conftest import cos_tensor, sin_tensor

from ppdistill.losses import build_loss
from ppdistill.losses.distillation_ser_loss import (DistillationSERDMLLoss,
                                                    DistillationVQADistanceLoss,
                                                    DistillationVQASerTokenLayoutLMLoss)
from ppdistill.losses.vqa_token_layoutlm_loss import VQASerTokenLayoutLMLoss

MASK = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
ACTIVE = MASK.reshape(-1) == 1
LABELS = np.array([[0, 1, 2, 0], [2, 2, 0, 1]])


def ser_batch():
    """[input_ids, bbox, attention_mask, token_type_ids, image, labels]"""
    return [None, None, paddle.to_tensor(MASK), None, None, paddle.to_tensor(LABELS)]


def np_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_ce(logits, labels):
    rows = logits.reshape(-1, logits.shape[-1])[ACTIVE].astype(np.float64)
    return -np_log_softmax(rows)[np.arange(rows.shape[0]), labels.reshape(-1)[ACTIVE]].mean()


def test_ser_token_loss_and_distillation_wrapper():
    s, t = sin_tensor(2, 4, 3), cos_tensor(2, 4, 3)
    value = VQASerTokenLayoutLMLoss(num_classes=3)(s, ser_batch())["loss"]
    assert float(value) == pytest.approx(np_ce(s.numpy(), LABELS), abs=1e-5)
    out = DistillationVQASerTokenLayoutLMLoss(3, ["Student", "Teacher"], key="backbone_out")(
        {"Student": {"backbone_out": s}, "Teacher": {"backbone_out": t}}, ser_batch())
    assert list(out) == ["loss_ser_Student", "loss_ser_Teacher", "loss"]
    assert float(out["loss"]) == pytest.approx(np_ce(s.numpy(), LABELS) + np_ce(t.numpy(), LABELS),
                                               abs=1e-5)
    with pytest.raises(ValueError, match="expected 7 values"):
        VQASerTokenLayoutLMLoss(num_classes=7)(s, ser_batch())


def test_ser_dml_on_active_tokens():
    s, t = sin_tensor(2, 4, 3), cos_tensor(2, 4, 3)
    p1 = np.exp(np_log_softmax(s.numpy().reshape(-1, 3)[ACTIVE].astype(np.float64))) + 1e-10
    p2 = np.exp(np_log_softmax(t.numpy().reshape(-1, 3)[ACTIVE].astype(np.float64))) + 1e-10
    kd = lambda x, tt: (tt * (np.log(tt + 1e-10) - x)).sum() / x.shape[0]  # noqa: E731
    expected = (kd(np.log(p1), p2) + kd(np.log(p2), p1)) / 2
    loss = build_loss({"name": "DistillationSERDMLLoss", "num_classes": 3,
                       "model_name_pairs": [["Student", "Teacher"]], "key": "backbone_out"})
    out = loss({"Student": {"backbone_out": s}, "Teacher": {"backbone_out": t}}, ser_batch())
    assert list(out) == ["loss_dml_ser_0", "loss"]
    assert float(out["loss_dml_ser_0"]) == pytest.approx(expected, abs=1e-5)
    s.stop_gradient = False
    DistillationSERDMLLoss(num_classes=3, model_name_pairs=["Student", "Teacher"])(
        {"Student": s, "Teacher": t}, ser_batch())["loss"].backward()
    grad = s.grad.numpy().reshape(-1, 3)
    assert np.abs(grad[ACTIVE]).sum() > 0 and np.abs(grad[~ACTIVE]).sum() == 0  # padding: none


def test_vqa_distance_index_and_mask():
    s, t = sin_tensor(2, 3, 5, 6), cos_tensor(2, 3, 5, 6)          # [B, layers, L, D], L > mask
    loss = DistillationVQADistanceLoss("l1", [["Student", "Teacher"]], key="hidden", index=1,
                                       name="loss_1")
    out = loss({"Student": {"hidden": s}, "Teacher": {"hidden": t}}, ser_batch())
    assert list(out) == ["loss_1_l1_Student_Teacher_0", "loss"]
    a = s.numpy()[:, 1, :4].reshape(-1, 6)[ACTIVE]
    b = t.numpy()[:, 1, :4].reshape(-1, 6)[ACTIVE]
    assert float(out["loss"]) == pytest.approx(np.abs(a - b).mean(), abs=1e-6)
