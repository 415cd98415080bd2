"""PP-OCRv4 distillation losses: CTC-logit KL/DKD, label-aligned KL/DKD/DML (gtc and sar),
NRTR CE, MultiLoss with a gtc branch, and the loss section of ch_PP-OCRv4_rec_distill.yml.

Every value is compared with a LOSSES_AND_METRICS.md §11 check value or with an independent
numpy computation of the formula.
"""
import numpy as np
import paddle
import pytest
import yaml
from conftest import cos_tensor, sin_tensor

from ppdistill.losses import build_loss
from ppdistill.losses.distillation_ctc_logits_loss import (CTCDKDLoss, DistillCTCLogits,
                                                           KLCTCLogits)
from ppdistill.losses.distillation_loss import (DistillationDKDLoss, DistillationDMLLoss,
                                                DistillationKLDivLoss, DistillationNRTRDMLLoss)
from ppdistill.losses.distillation_rec_loss import DistillationNRTRLoss
from ppdistill.losses.rec_multi_loss import MultiLoss
from ppdistill.registry import ConfigError


def T(values, dtype="int64"):
    return paddle.to_tensor(np.array(values, dtype=dtype))


# --------------------------------------------------------------------------- numpy references
def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_flip(x):
    x = x.astype(np.float64).copy()
    x[..., 0] *= -1
    return x


def np_kl_eps(ps, pt):
    """Per row Σ pt·log((pt + 1e-6)/(ps + 1e-6) + 1e-6)."""
    return (pt * np.log((pt + 1e-6) / (ps + 1e-6) + 1e-6)).sum(-1)


def np_ctc_logits_mean(s, t):
    ps = np_softmax(np_flip(s) / 0.5).mean(1)
    pt = np_softmax(np_flip(t) / 0.5).mean(1)
    return np_kl_eps(ps, pt).sum() / s.shape[0]


def np_ctc_dkd(s, t, label, tau=0.5, alpha=1.0, beta=1.0):
    b, _, c = s.shape
    gt = np.zeros((b, c))
    for i in range(b):
        for k in label[i]:
            gt[i, k] = 1.0
    gt[:, 0] = 0.0
    ps = np_softmax(s / tau).mean(1)
    pt = np_softmax(t / tau).mean(1)
    bins = lambda p: np.stack([(p * gt).sum(1), (p * (1 - gt)).sum(1)], 1)  # noqa: E731
    tckd = np_kl_eps(bins(ps), bins(pt))
    ps2 = np_softmax(s / tau - 1000.0 * gt[:, None, :]).mean(1)
    pt2 = np_softmax(t / tau - 1000.0 * gt[:, None, :]).mean(1)
    nckd = np_kl_eps(ps2, pt2)
    return alpha * tckd + beta * nckd


def np_dkd_rows(s, t, target, tau=1.0, alpha=1.0, beta=1.0):
    c = s.shape[-1]
    zs, zt = s.reshape(-1, c).astype(np.float64) / tau, t.reshape(-1, c).astype(np.float64) / tau
    g = np.eye(c)[np.asarray(target).reshape(-1)]
    ps, pt = np_softmax(zs), np_softmax(zt)
    bs = np.stack([(ps * g).sum(1), (ps * (1 - g)).sum(1)], 1)
    bt = np.stack([(pt * g).sum(1), (pt * (1 - g)).sum(1)], 1)
    tckd = (bt * (np.log(bt + 1e-10) - np.log(bs))).sum(1)
    pt2 = np_softmax(zt - 1000 * g)
    lps2 = np_log_softmax(zs - 1000 * g)
    nckd = (pt2 * (np.log(pt2 + 1e-10) - lps2)).sum(1)
    return (alpha * tckd + beta * nckd) * tau ** 2


def np_kl_rows(s, t):
    c = s.shape[-1]
    pt = np_softmax(t.reshape(-1, c).astype(np.float64))
    return (pt * (np.log(pt + 1e-10) - np_log_softmax(s.reshape(-1, c).astype(np.float64)))).sum(1)


def np_dml_rows(s, t):
    c = s.shape[-1]
    p1 = np_softmax(s.reshape(-1, c).astype(np.float64)) + 1e-10
    p2 = np_softmax(t.reshape(-1, c).astype(np.float64)) + 1e-10
    return ((p2 * (np.log(p2 + 1e-10) - np.log(p1))).sum(1)
            + (p1 * (np.log(p1 + 1e-10) - np.log(p2))).sum(1)) / 2


def grad_of(loss_fn, tensor):
    tensor.stop_gradient = False
    loss_fn(tensor).backward()
    grad = tensor.grad.numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    return grad


# --------------------------------------------------------------------------- KLCTCLogits
def test_kl_ctc_logits_mean_check_value_and_inputs_untouched():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    s_before = s.numpy().copy()
    value = KLCTCLogits()(s, t)
    assert value.shape == []
    assert float(value) == pytest.approx(0.28354478, abs=1e-6)  # L§11
    assert float(value) == pytest.approx(np_ctc_logits_mean(s.numpy(), t.numpy()), abs=1e-6)
    np.testing.assert_array_equal(s.numpy(), s_before)  # the blank flip makes a new tensor


def test_kl_ctc_logits_other_modes_match_numpy():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    sn, tn = s.numpy().astype(np.float64), t.numpy().astype(np.float64)
    # sum: Σ_t softmax(z/0.5), no flip; per sample Σ_c pt·(log(pt+1e-6) − log ps)
    ps, pt = np_softmax(sn / 0.5).sum(1), np_softmax(tn / 0.5).sum(1)
    per_sample = (pt * (np.log(pt + 1e-6) - np.log(ps))).sum(1)
    out = KLCTCLogits(mode="sum", reduction="none")(s, t)
    np.testing.assert_allclose(out.numpy(), per_sample, rtol=1e-5)
    # meanlog: flip, time mean, symmetric K with the mean over classes
    ps, pt = np_softmax(np_flip(sn) / 0.5).mean(1), np_softmax(np_flip(tn) / 0.5).mean(1)
    k = lambda x, tt: (tt * (np.log(tt + 1e-10) - x)).mean(1)  # noqa: E731
    meanlog = ((k(np.log(ps), pt) + k(np.log(pt), ps)) / 2).mean()
    assert float(KLCTCLogits(mode="meanlog")(s, t)) == pytest.approx(meanlog, abs=1e-6)
    # log: softmax + 1e-10 per step (no τ, no flip); K sums over classes the mean over time
    p1, p2 = np_softmax(sn) + 1e-10, np_softmax(tn) + 1e-10
    k2 = lambda x, tt: (tt * (np.log(tt + 1e-10) - x)).mean(1).sum(-1)  # noqa: E731
    log_value = ((k2(np.log(p1), p2) + k2(np.log(p2), p1)) / 2).mean()
    assert float(KLCTCLogits(mode="log")(s, t)) == pytest.approx(log_value, abs=1e-6)
    # ctcdkd: flip, then CTCDKDLoss with the label
    label = np.array([[1, 2, 0], [3, 3, 0]])
    ctcdkd = np_ctc_dkd(np_flip(sn), np_flip(tn), label).mean()
    assert float(KLCTCLogits(mode="ctcdkd")(s, t, T(label))) == pytest.approx(ctcdkd, abs=1e-6)


def test_kl_ctc_logits_weight_reduction_and_errors():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    mean = float(KLCTCLogits()(s, t))
    assert float(KLCTCLogits(weight=2.0)(s, t)) == pytest.approx(2 * mean, abs=1e-6)
    assert float(KLCTCLogits(reduction="sum")(s, t)) == pytest.approx(2 * mean, abs=1e-6)
    assert KLCTCLogits(reduction="none")(s, t).shape == [2]
    with pytest.raises(ConfigError, match="did you mean 'meanlog'"):
        KLCTCLogits(mode="meanlg")
    with pytest.raises(ConfigError, match="reduction"):
        KLCTCLogits(reduction="avg")
    with pytest.raises(ValueError, match="needs the CTC label"):
        KLCTCLogits(mode="ctcdkd")(s, t)


# --------------------------------------------------------------------------- CTCDKDLoss
def test_ctc_dkd_loss_any_class_count_matches_numpy():
    s, t = sin_tensor(2, 4, 7), cos_tensor(2, 4, 7)
    label = np.array([[1, 2, 2, 0], [6, 0, 0, 0]])
    expected = np_ctc_dkd(s.numpy().astype(np.float64), t.numpy().astype(np.float64), label,
                          tau=0.5, alpha=1.0, beta=2.0).mean()
    value = CTCDKDLoss(temperature=0.5, alpha=1.0, beta=2.0)(s, t, T(label))
    assert value.shape == [] and float(value) == pytest.approx(expected, abs=1e-6)
    # the presence mask: classes in the label, blank column zeroed
    mask = CTCDKDLoss().label_mask(T(label), 7).numpy()
    np.testing.assert_array_equal(mask, [[0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1]])
    with pytest.raises(ValueError, match=r"outside \[0, 7\)"):
        CTCDKDLoss()(s, t, T([[7, 0, 0, 0], [1, 0, 0, 0]]))
    grad_of(lambda x: CTCDKDLoss()(x, t, T(label)), sin_tensor(2, 4, 7))


def test_distill_ctc_logits_keys_value_and_gradient():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    preds = lambda x: {"Student": {"head_out": {"ctc": x, "gtc": x}},  # noqa: E731
                       "Teacher": {"head_out": {"ctc": t, "gtc": t}}}
    loss = DistillCTCLogits([["Student", "Teacher"]], key="head_out")
    out = loss(preds(s), [None, T([[1, 2, 0], [3, 0, 0]])])
    assert list(out) == ["ctc_logits_0", "loss"]
    assert float(out["ctc_logits_0"]) == pytest.approx(0.28354478, abs=1e-6)
    assert float(out["loss"]) == pytest.approx(0.28354478, abs=1e-6)
    flat = DistillCTCLogits(["Student", "Teacher"])({"Student": s, "Teacher": t}, None)
    assert float(flat["loss"]) == pytest.approx(0.28354478, abs=1e-6)
    grad_of(lambda x: loss(preds(x), None)["loss"], sin_tensor(2, 3, 5))
    with pytest.raises(ConfigError, match="no 'ctc' entry"):
        DistillCTCLogits(["Student", "Teacher"], key="head_out")(
            {"Student": {"head_out": {"sar": s}}, "Teacher": {"head_out": {"sar": t}}}, None)


# --------------------------------------------------------------------------- aligned gtc heads
def _gtc_preds(s, t):
    return {"Student": {"head_out": {"gtc": s}}, "Teacher": {"head_out": {"gtc": t}}}


def test_dkd_gtc_paddleocr_numbers_and_masked_numbers():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    # target = label_gtc[:, 1:2+max(length)] = [[1,2,0],[3,3,4]] (the L§11 DKD check input)
    batch = [None, None, T([[2, 1, 2, 0, 0], [2, 3, 3, 4, 0]]), T([2, 2])]
    kwargs = dict(key="head_out", multi_head=True, dis_head="gtc", alpha=1.0, beta=2.0)
    paddleocr = DistillationDKDLoss([["Student", "Teacher"]], mask_padding=False, **kwargs)
    assert float(paddleocr(_gtc_preds(s, t), batch)["dkd_0"]) == pytest.approx(0.98690397,
                                                                               abs=1e-5)
    rows = np_dkd_rows(s.numpy(), t.numpy(), [[1, 2, 0], [3, 3, 4]], beta=2.0)
    masked = DistillationDKDLoss([["Student", "Teacher"]], **kwargs)(_gtc_preds(s, t), batch)
    assert float(masked["dkd_0"]) == pytest.approx(rows[[0, 1, 3, 4, 5]].mean(), abs=1e-5)
    tau2 = DistillationDKDLoss([["Student", "Teacher"]], mask_padding=False, temperature=2.0,
                               key="head_out", multi_head=True, dis_head="gtc")
    assert float(tau2(_gtc_preds(s, t), batch)["loss"]) == pytest.approx(0.54846829, abs=1e-5)
    grad_of(lambda x: DistillationDKDLoss([["Student", "Teacher"]], **kwargs)(
        _gtc_preds(x, t), batch)["loss"], sin_tensor(2, 3, 5))


def test_kl_gtc_mask_check_value():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    # target rows [5,6,0 | 7,0,0] -> mask [1,1,0,1,0,0] (L§11 KLDivLoss with mask)
    batch = [None, None, T([[2, 5, 6, 0, 0], [2, 7, 0, 0, 0]]), T([2, 1])]
    s5, t5 = sin_tensor(2, 3, 8), cos_tensor(2, 3, 8)  # 8 classes so that label 7 is valid
    out = DistillationKLDivLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                                dis_head="gtc")(_gtc_preds(s5, t5), batch)
    rows = np_kl_rows(s5.numpy(), t5.numpy())
    assert float(out["kl_div_0"]) == pytest.approx(rows[[0, 1, 3]].mean(), abs=1e-5)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):  # DKD needs label 7 < C = 5
        DistillationDKDLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                            dis_head="gtc")(_gtc_preds(s, t), batch)
    ok = [None, None, T([[2, 4, 1, 0, 0], [2, 3, 0, 0, 0]]), T([2, 1])]
    out = DistillationKLDivLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                                dis_head="gtc")(_gtc_preds(s, t), ok)
    assert float(out["loss"]) == pytest.approx(0.43506554, abs=1e-5)  # L§11


def test_aligned_shape_mismatch_is_clear():
    s, t = sin_tensor(2, 4, 5), cos_tensor(2, 4, 5)
    batch = [None, None, T([[2, 1, 3, 0, 0], [2, 3, 0, 0, 0]]), T([1, 0])]  # expects 2 steps
    with pytest.raises(ValueError, match="do not line up"):
        DistillationDKDLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                            dis_head="gtc")(_gtc_preds(s, t), batch)


def test_aligned_only_arguments_rejected_for_other_heads():
    with pytest.raises(ConfigError, match="mask_padding applies only to a label-aligned head"):
        build_loss({"name": "DistillationDKDLoss", "model_name_pairs": [["S", "T"]],
                    "key": "head_out", "multi_head": True, "dis_head": "ctc",
                    "mask_padding": False})
    with pytest.raises(ConfigError, match="ignore_index applies only"):
        DistillationKLDivLoss([["S", "T"]], dis_head="sar", ignore_index=5)  # multi_head off
    with pytest.raises(ConfigError, match="ignore_index applies only"):
        DistillationNRTRDMLLoss([["S", "T"]], ignore_index=0)


# --------------------------------------------------------------------------- aligned sar heads
# SAR with 3 characters: 0..2 characters (0 is a real character), UKN 3, BOS/EOS 4, PAD 5. The
# head's out_channels is 6 and its logits have 5 classes (PAD is never predicted).
SAR_LABEL = [[4, 0, 1, 4, 5], [4, 2, 4, 5, 5]]
SAR_TARGET = [[0, 1, 4, 0], [2, 4, 0, 0]]       # label[:, 1:], padding rows shown as 0
SAR_KEEP = [0, 1, 2, 4, 5]                      # rows whose target is not PAD (5)


def _sar_preds(s, t):
    return {"Student": {"head_out": {"sar": s}}, "Teacher": {"head_out": {"sar": t}}}


def _sar_batch():
    return [None, T([[1, 2, 0], [3, 0, 0]]), T(SAR_LABEL), T([2, 1]), paddle.ones([2])]


def test_dkd_and_kl_sar_mask_pad_not_zero():
    s, t = sin_tensor(2, 5, 5), cos_tensor(2, 5, 5)
    sa, ta = s.numpy()[:, :-1], t.numpy()[:, :-1]   # the last step predicts nothing
    rows = np_dkd_rows(sa, ta, SAR_TARGET, alpha=1.0, beta=2.0)
    dkd = DistillationDKDLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                              dis_head="sar", beta=2.0)(_sar_preds(s, t), _sar_batch())
    assert float(dkd["dkd_0"]) == pytest.approx(rows[SAR_KEEP].mean(), abs=1e-5)
    # masking index 0 instead would drop row 0, a real character: a different number
    assert abs(rows[SAR_KEEP].mean() - rows[[1, 2, 4]].mean()) > 1e-3
    kl_rows = np_kl_rows(sa, ta)
    kl = DistillationKLDivLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                               dis_head="sar")(_sar_preds(s, t), _sar_batch())
    assert float(kl["kl_div_0"]) == pytest.approx(kl_rows[SAR_KEEP].mean(), abs=1e-5)
    # explicit ignore_index, for logits that also cover PAD (6 classes): PAD 5 is then a class
    s6, t6 = sin_tensor(2, 5, 6), cos_tensor(2, 5, 6)
    rows6 = np_kl_rows(s6.numpy()[:, :-1], t6.numpy()[:, :-1])
    explicit = DistillationKLDivLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                                     dis_head="sar", ignore_index=5)(_sar_preds(s6, t6),
                                                                     _sar_batch())
    assert float(explicit["loss"]) == pytest.approx(rows6[SAR_KEEP].mean(), abs=1e-5)
    derived = DistillationKLDivLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                                    dis_head="sar")(_sar_preds(s6, t6), _sar_batch())
    assert float(derived["loss"]) == pytest.approx(rows6.mean(), abs=1e-5)  # pad = 6: none
    grad_of(lambda x: DistillationDKDLoss([["Student", "Teacher"]], key="head_out",
                                          multi_head=True, dis_head="sar")(
        _sar_preds(x, t), _sar_batch())["loss"], sin_tensor(2, 5, 5))


def test_dml_sar_keeps_paddleocr_unmasked_form():
    s, t = sin_tensor(2, 5, 5), cos_tensor(2, 5, 5)
    out = DistillationDMLLoss([["Student", "Teacher"]], act="softmax", use_log=True,
                              key="head_out", multi_head=True, dis_head="sar")(_sar_preds(s, t))
    assert float(out["loss"]) == pytest.approx(np_dml_rows(s.numpy(), t.numpy()).sum() / 2,
                                               abs=1e-5)


# --------------------------------------------------------------------------- NRTR DML
def test_nrtr_dml_masked_rows_gtc_and_sar():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    batch = [None, None, T([[2, 4, 1, 3, 0], [2, 3, 0, 0, 0]]), T([2, 0])]  # [[4,1,3],[3,0,0]]
    loss = DistillationNRTRDMLLoss([["Student", "Teacher"]], act="softmax", use_log=True,
                                   key="head_out", multi_head=True, dis_head="gtc",
                                   name="dml_gtc")
    out = loss(_gtc_preds(s, t), batch)
    assert list(out) == ["dml_gtc_0", "loss"]
    rows = np_dml_rows(s.numpy(), t.numpy())
    assert float(out["dml_gtc_0"]) == pytest.approx(rows[[0, 1, 2, 3]].mean(), abs=1e-5)
    grad_of(lambda x: loss(_gtc_preds(x, t), batch)["loss"], sin_tensor(2, 3, 5))
    # use_log false: the KL/JS "kl" form with ε = 1e-5, summed over classes per row
    p1 = np_softmax(s.numpy().reshape(-1, 5)) + 1e-10
    p2 = np_softmax(t.numpy().reshape(-1, 5)) + 1e-10
    e = 1e-5
    kl_rows = (p2 * np.log((p2 + e) / (p1 + e) + e)
               + p1 * np.log((p1 + e) / (p2 + e) + e)).sum(1) / 2
    no_log = DistillationNRTRDMLLoss([["Student", "Teacher"]], act="softmax", key="head_out",
                                     multi_head=True)(_gtc_preds(s, t), batch)
    assert float(no_log["loss"]) == pytest.approx(kl_rows[[0, 1, 2, 3]].mean(), abs=1e-5)
    # sar
    s5, t5 = sin_tensor(2, 5, 5), cos_tensor(2, 5, 5)
    sar = DistillationNRTRDMLLoss([["Student", "Teacher"]], act="softmax", use_log=True,
                                  key="head_out", multi_head=True, dis_head="sar")
    rows = np_dml_rows(s5.numpy()[:, :-1], t5.numpy()[:, :-1])
    assert float(sar(_sar_preds(s5, t5), _sar_batch())["loss"]) == pytest.approx(
        rows[SAR_KEEP].mean(), abs=1e-5)


def test_nrtr_dml_without_multi_head_is_plain_dml_and_builds_from_combined_loss():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    out = DistillationNRTRDMLLoss(["Student", "Teacher"], act="softmax", use_log=True)(
        {"Student": s, "Teacher": t})
    assert float(out["dml_0"]) == pytest.approx(np_dml_rows(s.numpy(), t.numpy()).sum() / 2,
                                                abs=1e-5)
    entry = {"weight": 0.5, "act": "softmax", "use_log": True,
             "model_name_pairs": [["Student", "Teacher"]], "key": "head_out", "multi_head": True,
             "dis_head": "gtc"}
    combined = build_loss({"name": "CombinedLoss",
                           "loss_config_list": [{"DistillationNRTRDMLLoss": entry}]})
    batch = [None, None, T([[2, 4, 1, 3, 0], [2, 3, 0, 0, 0]]), T([2, 1])]
    rows = np_dml_rows(s.numpy(), t.numpy())
    assert float(combined(_gtc_preds(s, t), batch)["loss"]) == pytest.approx(
        0.5 * rows[[0, 1, 2, 3]].mean(), abs=1e-5)
    with pytest.raises(ConfigError, match="unexpected key 'maps_name'"):
        build_loss({"name": "DistillationNRTRDMLLoss", "model_name_pairs": [["S", "T"]],
                    "maps_name": "thrink_maps"})


# --------------------------------------------------------------------------- NRTR CE, MultiLoss
NRTR_LABEL = [[2, 4, 5, 3, 0], [2, 5, 3, 0, 0]]


def test_distillation_nrtr_loss_smoothing_true_and_false():
    batch = [paddle.zeros([2, 3, 48, 320]), T([[1, 2, 0], [2, 0, 0]]), T(NRTR_LABEL), T([2, 1]),
             paddle.ones([2])]
    preds = {"Student": {"head_out": {"gtc": sin_tensor(2, 3, 6)}}}
    kwargs = dict(model_name_list=["Student"], key="head_out", multi_head=True)
    smooth = DistillationNRTRLoss(smoothing=True, **kwargs)(preds, batch)
    assert float(smooth["loss_nrtr_Student_0"]) == pytest.approx(2.2293706, abs=1e-5)
    plain = DistillationNRTRLoss(smoothing=False, **kwargs)(preds, batch)
    # padding counts: plain CE over all 6 positions (numpy)
    x = sin_tensor(2, 3, 6).numpy().reshape(-1, 6)
    tgt = np.array([4, 5, 3, 5, 3, 0])
    expected = -np_log_softmax(x.astype(np.float64))[np.arange(6), tgt].mean()
    assert float(plain["loss_nrtr_Student_0"]) == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(2.3898999, abs=1e-5)  # L§11


def test_multi_loss_ctc_and_nrtr_gtc_branch():
    batch = [paddle.zeros([2, 3, 48, 320]), T([[1, 2, 0], [3, 3, 0]]), T(NRTR_LABEL), T([2, 2]),
             paddle.ones([2])]
    gtc = sin_tensor(2, 3, 6)
    ctc = 3 * sin_tensor(2, 6, 5)
    loss = build_loss({"name": "MultiLoss", "loss_config_list": [{"CTCLoss": None},
                                                                {"NRTRLoss": None}]})
    out = loss({"ctc": ctc, "ctc_neck": sin_tensor(2, 6, 4), "gtc": gtc}, batch)
    assert set(out) == {"CTCLoss", "NRTRLoss", "loss"}
    assert float(out["CTCLoss"]) == pytest.approx(8.1412640, abs=1e-4)
    assert float(out["NRTRLoss"]) == pytest.approx(2.2293706, abs=1e-5)  # label_gtc = batch[2]
    assert float(out["loss"]) == pytest.approx(8.1412640 + 2.2293706, abs=1e-4)
    grad_of(lambda x: loss({"ctc": ctc, "gtc": x}, batch)["loss"], sin_tensor(2, 3, 6))
    # v3's CTC + SAR MultiLoss still works on its batch [image, label_ctc, label_sar, length, ...]
    v3 = MultiLoss([{"CTCLoss": None}, {"SARLoss": {"ignore_index": 4}}])
    sar_batch = [None, T([[1, 2, 0], [3, 3, 0]]), T([[3, 0, 1, 3], [3, 2, 3, 4]]), T([2, 2])]
    out = v3({"ctc": ctc, "sar": sin_tensor(2, 4, 5)}, sar_batch)
    assert float(out["SARLoss"]) == pytest.approx(1.8465872, abs=1e-5)


# --------------------------------------------------------------------------- v4 batch + config
CTC_CLASSES, NRTR_CLASSES = 6625, 6629          # ppocr_keys_v1.txt + space (§1)


def v4_batch(texts_as_ctc_indices, max_text_length=25, image_shape=(3, 48, 320)):
    """The §7.6 batch from CTC indices: NRTR index = CTC index + 3, label_gtc = [2, c.., 3, 0..]."""
    n = len(texts_as_ctc_indices)
    label_ctc = np.zeros((n, max_text_length), dtype=np.int64)
    label_gtc = np.zeros((n, max_text_length), dtype=np.int64)
    for i, chars in enumerate(texts_as_ctc_indices):
        label_ctc[i, :len(chars)] = chars
        label_gtc[i, :len(chars) + 2] = [2] + [c + 3 for c in chars] + [3]
    length = np.array([len(c) for c in texts_as_ctc_indices], dtype=np.int64)
    return [paddle.zeros([n, *image_shape]), paddle.to_tensor(label_ctc),
            paddle.to_tensor(label_gtc), paddle.to_tensor(length),
            paddle.to_tensor(np.ones(n, dtype=np.float32))]


def test_v4_batch_layout():
    batch = v4_batch([[5, 9, 6624], [17]])
    assert [list(b.shape) for b in batch] == [[2, 3, 48, 320], [2, 25], [2, 25], [2], [2]]
    assert [str(b.dtype).split(".")[-1] for b in batch] == ["float32", "int64", "int64", "int64",
                                                            "float32"]
    np.testing.assert_array_equal(batch[2].numpy()[0, :6], [2, 8, 12, 6627, 3, 0])
    np.testing.assert_array_equal(batch[1].numpy()[0, :4], [5, 9, 6624, 0])


V4_LOSS_YAML = """
Loss:
  name: CombinedLoss
  loss_config_list:
  - DistillationDKDLoss:
      weight: 0.1
      model_name_pairs:
      - - Student
        - Teacher
      key: head_out
      multi_head: true
      alpha: 1.0
      beta: 2.0
      dis_head: gtc
      name: dkd
  - DistillationCTCLoss:
      weight: 1.0
      model_name_list:
      - Student
      key: head_out
      multi_head: true
  - DistillationNRTRLoss:
      weight: 1.0
      smoothing: false
      model_name_list:
      - Student
      key: head_out
      multi_head: true
  - DistillCTCLogits:
      weight: 1.0
      reduction: mean
      model_name_pairs:
      - - Student
        - Teacher
      key: head_out
"""


def _rec_distill_output(seed, steps, max_len, batch_size=2):
    """A rec_distill sub-model's train output (§1.1, return_all_feats true)."""
    rng = np.random.RandomState(seed)
    f = lambda *shape: paddle.to_tensor(rng.randn(*shape).astype("float32"))  # noqa: E731
    return {"backbone_out": f(batch_size, 480, 1, steps), "neck_out": f(batch_size, steps, 120),
            "head_out": {"ctc": 2 * f(batch_size, steps, CTC_CLASSES),
                         "ctc_neck": f(batch_size, steps, 120),
                         "gtc": 2 * f(batch_size, 1 + max_len, NRTR_CLASSES)}}


def test_ch_ppocrv4_rec_distill_loss_section_builds_and_computes():
    config = yaml.safe_load(V4_LOSS_YAML)
    original = yaml.safe_load(V4_LOSS_YAML)
    loss = build_loss(config["Loss"])
    assert config == original                                     # caller's config untouched
    assert loss.formula() == ("loss = 0.1 * DistillationDKDLoss(dkd) + 1 * DistillationCTCLoss("
                              "loss_ctc) + 1 * DistillationNRTRLoss(loss_nrtr) + 1 * "
                              "DistillCTCLogits(ctc_logits)")
    batch = v4_batch([[5, 9, 6624], [17]])
    preds = {"Student": _rec_distill_output(1, 40, 3), "Teacher": _rec_distill_output(2, 40, 3)}
    student_ctc = preds["Student"]["head_out"]["ctc"]
    student_gtc = preds["Student"]["head_out"]["gtc"]
    student_ctc.stop_gradient = False
    student_gtc.stop_gradient = False
    out = loss(preds, batch)
    assert set(out) == {"dkd_0", "loss_ctc_Student_0", "loss_nrtr_Student_0", "ctc_logits_0",
                        "loss"}
    assert all(v.shape == [] for v in out.values())

    s_gtc, t_gtc = student_gtc.numpy(), preds["Teacher"]["head_out"]["gtc"].numpy()
    target = batch[2].numpy()[:, 1:5]                               # 1 + max(length) = 4 steps
    rows = np_dkd_rows(s_gtc, t_gtc, target, alpha=1.0, beta=2.0)
    dkd = rows[target.reshape(-1) != 0].mean()                      # padding rows masked
    assert float(out["dkd_0"]) == pytest.approx(0.1 * dkd, rel=1e-4)
    nrtr = -np_log_softmax(s_gtc.reshape(-1, NRTR_CLASSES).astype(np.float64))[
        np.arange(8), target.reshape(-1)].mean()                    # padding counted
    assert float(out["loss_nrtr_Student_0"]) == pytest.approx(nrtr, rel=1e-5)
    ctc_logits = np_ctc_logits_mean(student_ctc.numpy(),
                                    preds["Teacher"]["head_out"]["ctc"].numpy())
    assert float(out["ctc_logits_0"]) == pytest.approx(ctc_logits, rel=1e-4, abs=1e-6)
    ctc = paddle.nn.functional.ctc_loss(
        student_ctc.transpose([1, 0, 2]), batch[1].astype("int32"), paddle.full([2], 40, "int64"),
        batch[3], blank=0, reduction="none").mean()
    assert float(out["loss_ctc_Student_0"]) == pytest.approx(float(ctc), rel=1e-5)
    total = 0.1 * dkd + float(ctc) + nrtr + ctc_logits
    assert float(out["loss"]) == pytest.approx(total, rel=1e-4)
    out["loss"].backward()
    for grad in (student_ctc.grad, student_gtc.grad):
        assert grad is not None and np.isfinite(grad.numpy()).all()
        assert np.abs(grad.numpy()).sum() > 0
