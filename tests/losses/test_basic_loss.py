"""Basic losses against LOSSES_AND_METRICS.md §11 check values and hand-computed numpy."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from conftest import cos_tensor, sin_tensor

from ppdistill.losses import build_loss
from ppdistill.losses.basic_loss import (CELoss, DistanceLoss, DKDLoss, DMLLoss, KLDivLoss,
                                         KLJSLoss, LossFromOutput)
from ppdistill.registry import ConfigError


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_dml_softmax_log_check_value():
    loss = DMLLoss(act="softmax", use_log=True)(sin_tensor(2, 3, 5), cos_tensor(2, 3, 5))
    assert loss.shape == [] and abs(float(loss) - 1.2383232) < 1e-5


def test_dml_is_half_symmetric_kl():
    a, b = np.random.rand(2, 3, 5).astype("float32"), np.random.rand(2, 3, 5).astype("float32")
    p, q = np_softmax(a) + 1e-10, np_softmax(b) + 1e-10
    kl = lambda t, s: (t * (np.log(t + 1e-10) - np.log(s))).sum() / 2  # noqa: E731
    expected = 0.5 * (kl(q, p) + kl(p, q))
    got = DMLLoss("softmax", True)(paddle.to_tensor(a), paddle.to_tensor(b))
    assert abs(float(got) - expected) < 1e-5


def test_dml_kl_form_per_sample():
    p1, p2 = F.sigmoid(sin_tensor(2, 4, 4)), F.sigmoid(cos_tensor(2, 4, 4))
    got = DMLLoss()(p1, p2).numpy()
    np.testing.assert_allclose(got, [0.05843831, 0.05963141], atol=1e-6)


def test_dml_rejects_bad_act():
    with pytest.raises(ConfigError, match="did you mean 'softmax'"):
        DMLLoss(act="sofmax")


def test_kljs_modes():
    p1, p2 = F.sigmoid(sin_tensor(2, 3, 3)), F.sigmoid(cos_tensor(2, 3, 3))
    a, b, eps = p1.numpy(), p2.numpy(), 1e-5
    js = 0.5 * (b * np.log((2 * b + eps) / (a + b + eps) + eps)
                + a * np.log((2 * a + eps) / (a + b + eps) + eps))
    np.testing.assert_allclose(KLJSLoss("js")(p1, p2, reduction="none").numpy(), js, rtol=1e-5)
    np.testing.assert_allclose(KLJSLoss("js")(p1, p2).numpy(), js.mean(axis=(1, 2)), rtol=1e-5)
    with pytest.raises(ConfigError):
        KLJSLoss("xx")


def test_kldiv_check_values():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    assert abs(float(KLDivLoss()(s, t)) - 1.2388213) < 1e-5
    mask = paddle.to_tensor([1, 1, 0, 1, 0, 0]).astype("bool")
    assert abs(float(KLDivLoss()(s, t, mask)) - 0.43506554) < 1e-5


def test_dkd_check_values():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    target = paddle.to_tensor([[1, 2, 0], [3, 3, 4]])
    assert abs(float(DKDLoss(1.0, 1.0, 2.0)(s, t, target)) - 0.98690397) < 1e-5
    assert abs(float(DKDLoss(2.0, 1.0, 1.0)(s, t, target)) - 0.54846829) < 1e-5


def test_dkd_mask_selects_rows():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    target = paddle.to_tensor([[1, 2, 0], [3, 3, 4]])
    mask = paddle.to_tensor([1, 1, 0, 1, 0, 0]).astype("bool")
    dkd = DKDLoss(1.0, 1.0, 1.0)
    rows = [float(dkd(s.reshape([6, 5])[i:i + 1], t.reshape([6, 5])[i:i + 1],
                      target.reshape([6])[i:i + 1])) for i in range(6)]
    assert abs(float(dkd(s, t, target, mask)) - np.mean([rows[0], rows[1], rows[3]])) < 1e-5
    assert abs(float(dkd(s, t, target)) - np.mean(rows)) < 1e-5


def test_distance_modes():
    x, y = sin_tensor(2, 3), cos_tensor(2, 3)
    d = (x - y).numpy()
    assert abs(float(DistanceLoss("l1")(x, y)) - np.abs(d).mean()) < 1e-6
    assert abs(float(DistanceLoss("l2")(x, y)) - (d ** 2).mean()) < 1e-6
    a = np.abs(d)
    smooth = np.where(a < 1, 0.5 * d ** 2, a - 0.5).mean()
    assert abs(float(DistanceLoss("smooth_l1")(x, y)) - smooth) < 1e-6
    with pytest.raises(ConfigError, match="mode must be one of l1, l2, smooth_l1"):
        DistanceLoss("l3")


def test_ce_loss_forms():
    x = sin_tensor(4, 5)
    label = paddle.to_tensor([0, 1, 2, 3])
    logp = np.log(np_softmax(x.numpy()))
    hard = -logp[np.arange(4), [0, 1, 2, 3]].mean()
    assert abs(float(CELoss()(x, label)) - hard) < 1e-5
    smooth = CELoss(epsilon=0.1)(x, label)
    soft = np.eye(5)[[0, 1, 2, 3]] * 0.9 + 0.02
    np.testing.assert_allclose(smooth.numpy(), -(logp * soft).sum(-1), rtol=1e-5)


def test_loss_from_output_and_build_single():
    out = LossFromOutput(key="l", reduction="mean")({"l": paddle.to_tensor([1.0, 3.0])})
    assert float(out["loss"]) == 2.0
    loss = build_loss({"name": "DMLLoss", "act": "softmax"})
    assert isinstance(loss, DMLLoss) and loss.act == "softmax"
