"""Distillation wrappers: selection, keys, reductions and errors."""
import numpy as np
import paddle
import pytest
from conftest import cos_tensor, sin_tensor

from ppdistill.losses.basic_loss import DKDLoss, DMLLoss, KLDivLoss
from ppdistill.losses.distillation_loss import (DistillationDistanceLoss, DistillationDKDLoss,
                                                DistillationDMLLoss, DistillationKLDivLoss,
                                                DistillationLossFromOutput)
from ppdistill.registry import ConfigError


def rec_preds():
    def one(seed):
        paddle.seed(seed)
        return {"backbone_out": paddle.randn([2, 4, 1, 6]),
                "head_out": {"ctc": paddle.randn([2, 6, 7]), "gtc": paddle.randn([2, 4, 7])}}
    return {"Student": one(1), "Teacher": one(2)}


def det_preds():
    paddle.seed(3)
    return {"Student": {"maps": paddle.nn.functional.sigmoid(paddle.randn([2, 3, 8, 8]))},
            "Student2": {"maps": paddle.nn.functional.sigmoid(paddle.randn([2, 3, 8, 8]))}}


def test_dml_rec_keys_and_value():
    preds = rec_preds()
    loss = DistillationDMLLoss([["Student", "Teacher"]], act="softmax", use_log=True,
                               key="head_out", multi_head=True, dis_head="ctc", name="dml_ctc")
    out = loss(preds, None)
    assert set(out) == {"dml_ctc_0", "loss"}
    expected = DMLLoss("softmax", True)(preds["Student"]["head_out"]["ctc"],
                                        preds["Teacher"]["head_out"]["ctc"])
    assert abs(float(out["loss"]) - float(expected)) < 1e-6


def test_dml_maps_string_and_list_and_scalar():
    preds = det_preds()
    one = DistillationDMLLoss(["Student", "Student2"], key="maps", maps_name="thrink_maps")(preds)
    assert set(one) == {"dml_thrink_maps_0", "loss"} and one["loss"].shape == []
    per_sample = DMLLoss()(preds["Student"]["maps"][:, 0], preds["Student2"]["maps"][:, 0])
    assert per_sample.shape == [2]
    assert abs(float(one["loss"]) - float(per_sample.mean())) < 1e-6
    both = DistillationDMLLoss([["Student", "Student2"]], key="maps",
                               maps_name=["thrink_maps", "binary_maps"])(preds)
    assert set(both) == {"dml_thrink_maps_0", "dml_binary_maps_0", "loss"}
    assert float(both["loss"]) > float(one["loss"])
    with pytest.raises(ConfigError, match="unknown maps_name 'thrink_map'"):
        DistillationDMLLoss(["Student", "Student2"], maps_name="thrink_map")


def test_missing_model_or_key_is_clear():
    preds = rec_preds()
    loss = DistillationDMLLoss([["Student", "Teachr"]], key="head_out", multi_head=True)
    with pytest.raises(ConfigError, match=r"no model 'Teachr'.*available: Student, Teacher"):
        loss(preds)
    loss = DistillationDMLLoss([["Student", "Teacher"]], key="head")
    with pytest.raises(ConfigError, match=r"no key 'head'; did you mean 'head_out'"):
        loss(preds)
    with pytest.raises(ConfigError, match="model_name_pairs"):
        DistillationDMLLoss([])


def test_distance_key_has_real_mode():
    preds = rec_preds()
    out = DistillationDistanceLoss("l1", [["Student", "Teacher"]], key="backbone_out")(preds)
    assert "loss_distance_l1_Student_Teacher_0" in out
    diff = (preds["Student"]["backbone_out"] - preds["Teacher"]["backbone_out"]).abs().mean()
    assert abs(float(out["loss"]) - float(diff)) < 1e-6


def test_kldiv_ctc_and_aligned_head():
    preds = rec_preds()
    ctc = DistillationKLDivLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                                dis_head="ctc")(preds)
    expected = KLDivLoss()(preds["Student"]["head_out"]["ctc"], preds["Teacher"]["head_out"]["ctc"])
    assert abs(float(ctc["kl_div_0"]) - float(expected)) < 1e-6


def test_kldiv_aligned_matches_manual_mask():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    preds = {"Student": {"head_out": {"gtc": s}}, "Teacher": {"head_out": {"gtc": t}}}
    label_gtc = paddle.to_tensor([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]])
    batch = [None, None, label_gtc, paddle.to_tensor([2, 1])]
    out = DistillationKLDivLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                                dis_head="gtc")(preds, batch)
    mask = paddle.to_tensor([1, 1, 1, 1, 1, 0]).astype("bool")
    assert abs(float(out["loss"]) - float(KLDivLoss()(s, t, mask))) < 1e-6


def test_dkd_aligned_and_ctc():
    s, t = sin_tensor(2, 3, 5), cos_tensor(2, 3, 5)
    preds = {"Student": {"head_out": {"gtc": s, "ctc": s}},
             "Teacher": {"head_out": {"gtc": t, "ctc": t}}}
    label_gtc = paddle.to_tensor([[2, 1, 2, 3, 0], [2, 3, 3, 4, 0]])
    batch = [None, None, label_gtc, paddle.to_tensor([2, 2])]
    out = DistillationDKDLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                              dis_head="gtc", temperature=1.0, alpha=1.0, beta=2.0)(preds, batch)
    target = label_gtc[:, 1:4]
    expected = DKDLoss(1.0, 1.0, 2.0)(s, t, target, (target != 0).reshape([-1]))
    assert abs(float(out["dkd_0"]) - float(expected)) < 1e-6
    ctc = DistillationDKDLoss([["Student", "Teacher"]], key="head_out", multi_head=True,
                              dis_head="ctc")(preds, batch)
    teacher_argmax = paddle.argmax(t, axis=-1)
    assert abs(float(ctc["dkd_0"]) - float(DKDLoss()(s, t, teacher_argmax))) < 1e-6


def test_frozen_second_gets_no_gradient_through_dkd_target():
    s = paddle.randn([2, 3, 5])
    s.stop_gradient = False
    t = paddle.randn([2, 3, 5])
    t.stop_gradient = False
    out = DistillationDKDLoss(["Student", "Teacher"])({"Student": s, "Teacher": t})
    out["loss"].backward()
    assert s.grad is not None and np.abs(s.grad.numpy()).sum() > 0


def test_loss_from_output():
    preds = {"Student": {"loss": paddle.to_tensor([1.0, 2.0])}, "Teacher": {"loss": paddle.to_tensor(4.0)}}
    out = DistillationLossFromOutput(model_name_list=["Student", "Teacher"], reduction="mean")(preds)
    assert float(out["loss_re_Student"]) == 1.5 and float(out["loss"]) == 5.5
