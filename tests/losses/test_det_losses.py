"""DB losses: Dice/MaskL1/BCE/BalanceLoss, DBLoss check values, DistillationDB and DilaDB."""
import cv2
import numpy as np
import paddle
import pytest
from conftest import cos_tensor, sin_tensor

from ppdistill.losses.det_basic_loss import BalanceLoss, BCELoss, DiceLoss, MaskL1Loss
from ppdistill.losses.det_db_loss import DBLoss
from ppdistill.losses.distillation_det_loss import (DistillationDBLoss, DistillationDilaDBLoss,
                                                    dilate_teacher_target)
from ppdistill.registry import LOSSES, ConfigError

EPS = 1e-6


def t(array):
    return paddle.to_tensor(np.asarray(array, dtype="float32"))


def dice_np(pred, gt, mask):
    pred, gt, mask = (np.asarray(a, dtype=np.float64) for a in (pred, gt, mask))
    return 1 - 2 * (pred * gt * mask).sum() / ((pred * mask).sum() + (gt * mask).sum() + EPS)


def balance_np(loss_map, gt, mask, ratio=3):
    """BalanceLoss for a per-pixel (or broadcast scalar) main loss, in numpy."""
    gt, mask = np.asarray(gt, np.float64), np.asarray(mask, np.float64)
    loss_map = np.broadcast_to(np.asarray(loss_map, np.float64), gt.shape)
    positive, negative = gt * mask, (1 - gt) * mask
    p = int(positive.sum())
    n = int(min(negative.sum(), p * ratio))
    pos = (positive * loss_map).sum()
    if n == 0:
        return pos / (p + EPS)
    top = np.sort((negative * loss_map).ravel())[::-1][:n]
    return (pos + top.sum()) / (p + n + EPS)


def db_check_batch():
    """The §11 DBLoss inputs."""
    k = np.arange(2 * 8 * 8).reshape(2, 8, 8)
    threshold_map = (cos_tensor(2, 8, 8) + 1) / 2
    return [None, threshold_map, t(k % 2 == 0), t(k % 3 == 0), t(k % 7 != 0)]


def random_det_batch(seed=0, shape=(2, 8, 8)):
    rng = np.random.RandomState(seed)
    return [None, t(rng.rand(*shape)), t(rng.rand(*shape) > 0.3), t(rng.rand(*shape) > 0.7),
            t(rng.rand(*shape) > 0.2)]


def det_maps(seed, channels=3, shape=(2, 8, 8)):
    rng = np.random.RandomState(seed)
    maps = t(rng.rand(shape[0], channels, *shape[1:]))
    maps.stop_gradient = False
    return maps


# --- basic losses -----------------------------------------------------------------------------

def test_dice_loss_matches_numpy_with_and_without_weights():
    rng = np.random.RandomState(1)
    pred, gt, mask, weights = rng.rand(2, 5, 6), rng.rand(2, 5, 6) > 0.5, rng.rand(2, 5, 6) > 0.3, \
        rng.rand(2, 5, 6)
    value = DiceLoss()(t(pred), t(gt), t(mask))
    assert value.shape == [] and abs(float(value) - dice_np(pred, gt, mask)) < 1e-6
    weighted = DiceLoss()(t(pred), t(gt), t(mask), weights=t(weights))
    assert abs(float(weighted) - dice_np(pred, gt, mask * weights)) < 1e-6
    with pytest.raises(ValueError, match="same shape"):
        DiceLoss()(t(pred), t(gt[:, :4]), t(mask))


def test_mask_l1_loss_matches_numpy():
    rng = np.random.RandomState(2)
    pred, gt, mask = rng.rand(2, 4, 4), rng.rand(2, 4, 4), rng.rand(2, 4, 4) > 0.5
    expected = (np.abs(pred - gt) * mask).sum() / (mask.sum() + EPS)
    value = MaskL1Loss()(t(pred), t(gt), t(mask))
    assert value.shape == [] and abs(float(value) - expected) < 1e-6


def test_bce_loss_reductions():
    pred, gt = np.array([[0.2, 0.9], [0.6, 0.4]]), np.array([[0, 1], [1, 0]])
    expected = -(gt * np.log(pred) + (1 - gt) * np.log(1 - pred))
    assert abs(float(BCELoss()(t(pred), t(gt))) - expected.mean()) < 1e-6
    np.testing.assert_allclose(BCELoss("none")(t(pred), t(gt)).numpy(), expected, rtol=1e-6)
    with pytest.raises(ConfigError):
        BCELoss(reduction="avg")


def test_balance_loss_with_dice_is_scaled_dice():
    rng = np.random.RandomState(3)
    pred, gt, mask = rng.rand(2, 6, 6), rng.rand(2, 6, 6) > 0.8, rng.rand(2, 6, 6) > 0.1
    dice = dice_np(pred, gt, mask)
    value = BalanceLoss()(t(pred), t(gt), t(mask))
    assert value.shape == []
    assert abs(float(value) - balance_np(dice, gt, mask)) < 1e-6
    # balance_loss False returns the main loss itself; return_origin returns both.
    assert abs(float(BalanceLoss(balance_loss=False)(t(pred), t(gt), t(mask))) - dice) < 1e-6
    balanced, origin = BalanceLoss(return_origin=True)(t(pred), t(gt), t(mask))
    assert abs(float(origin) - dice) < 1e-6 and abs(float(balanced) - float(value)) < 1e-7
    # no positives -> N = 0 and the result is Σ pos / (0 + eps) = 0.
    zero = BalanceLoss()(t(pred), t(np.zeros_like(pred)), t(mask))
    assert float(zero) == 0.0


def test_balance_loss_bce_ohem_keeps_the_hardest_negatives():
    # 2 positives -> N = min(6 negatives, 2·1) = 2 hardest negatives with negative_ratio 1.
    pred = np.array([[[0.9, 0.6, 0.1, 0.8, 0.3, 0.05, 0.7, 0.2]]])
    gt = np.array([[[1, 1, 0, 0, 0, 0, 0, 0]]])
    mask = np.ones_like(gt)
    bce = -(gt * np.log(pred) + (1 - gt) * np.log(1 - pred))
    # hand-computed: negatives' losses are -log(1 - p); the two largest come from p = 0.8, 0.7.
    expected = (bce[0, 0, 0] + bce[0, 0, 1] - np.log(0.2) - np.log(0.3)) / (2 + 2 + EPS)
    assert abs(expected - balance_np(bce, gt, mask, ratio=1)) < 1e-12
    pred_t = t(pred)
    pred_t.stop_gradient = False
    value = BalanceLoss(main_loss_type="BCELoss", negative_ratio=1)(pred_t, t(gt), t(mask))
    assert value.shape == [] and abs(float(value) - expected) < 1e-5
    value.backward()
    grad = pred_t.grad.numpy()[0, 0]
    # only positives and the two mined negatives receive gradient
    assert np.all(grad[[0, 1, 3, 6]] != 0) and np.all(grad[[2, 4, 5, 7]] == 0)


def test_balance_loss_bce_ohem_random_against_numpy():
    rng = np.random.RandomState(4)
    pred = rng.rand(2, 8, 8) * 0.98 + 0.01
    gt, mask = rng.rand(2, 8, 8) > 0.9, rng.rand(2, 8, 8) > 0.2
    bce = -(gt * np.log(pred) + (1 - gt) * np.log(1 - pred))
    value = BalanceLoss(main_loss_type="BCELoss")(t(pred), t(gt), t(mask))
    assert abs(float(value) - balance_np(bce, gt, mask)) < 1e-5


def test_balance_loss_rejects_unusable_main_loss():
    with pytest.raises(ConfigError, match="main_loss_type"):
        BalanceLoss(main_loss_type="Euclidean")
    with pytest.raises(ConfigError, match="did you mean 'DiceLoss'"):
        BalanceLoss(main_loss_type="DiseLoss")


# --- DBLoss -----------------------------------------------------------------------------------

def test_db_loss_check_values():
    maps = paddle.nn.functional.sigmoid(sin_tensor(2, 3, 8, 8))
    out = DBLoss()({"maps": maps}, db_check_batch())
    expected = {"loss_shrink_maps": 3.0105567, "loss_threshold_maps": 2.9905996,
                "loss_binary_maps": 0.60235441, "loss_cbn": 0.0, "loss": 6.6035109}
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key].shape == [], key
        assert abs(float(out[key]) - value) < 1e-5, key


def test_db_loss_cbn_term_and_hyper_parameters():
    batch = random_det_batch(5)
    maps, cbn = det_maps(6), det_maps(7, channels=1)
    out = DBLoss(alpha=2, beta=3)({"maps": maps, "distance_maps": maps, "cbn_maps": cbn}, batch)
    shrink_map, shrink_mask = batch[3].numpy(), batch[4].numpy()
    expected_cbn = balance_np(dice_np(cbn.numpy()[:, 0], shrink_map, shrink_mask),
                              shrink_map, shrink_mask)
    assert abs(float(out["loss_cbn"]) - expected_cbn) < 1e-5
    expected_shrink = 2 * balance_np(dice_np(maps.numpy()[:, 0], shrink_map, shrink_mask),
                                     shrink_map, shrink_mask)
    assert abs(float(out["loss_shrink_maps"]) - expected_shrink) < 1e-5
    total = sum(float(out[k]) for k in out if k != "loss")
    assert abs(float(out["loss"]) - total) < 1e-5


def test_db_loss_rejects_eval_maps():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        DBLoss()({"maps": det_maps(0, channels=1)}, random_det_batch())


# --- DistillationDBLoss -----------------------------------------------------------------------

def test_distillation_db_loss_keys_and_values():
    batch = random_det_batch(8)
    preds = {"Student": {"maps": det_maps(1)}, "Student2": {"maps": det_maps(2)}}
    out = DistillationDBLoss(["Student", "Student2"])(preds, batch)
    subkeys = ["loss_shrink_maps", "loss_threshold_maps", "loss_binary_maps", "loss_cbn"]
    assert set(out) == {f"db_{m}_{s}" for m in ("Student", "Student2") for s in subkeys} | {"loss"}
    for value in out.values():
        assert value.shape == []
    reference = DBLoss()(preds["Student"], batch)
    for sub in subkeys:
        assert abs(float(out[f"db_Student_{sub}"]) - float(reference[sub])) < 1e-6
    total = sum(float(v) for k, v in out.items() if k != "loss")
    assert abs(float(out["loss"]) - total) < 1e-5


def test_distillation_db_loss_honours_alpha_and_key():
    batch = random_det_batch(9)
    preds = {"Student": {"maps": det_maps(3)}}
    base = DistillationDBLoss(["Student"])(preds, batch)
    scaled = DistillationDBLoss(["Student"], alpha=100, name="x")(preds, batch)
    ratio = float(scaled["x_Student_loss_shrink_maps"]) / float(base["db_Student_loss_shrink_maps"])
    assert abs(ratio - 20.0) < 1e-4
    via_key = DistillationDBLoss("Student", key="maps")(preds, batch)
    assert abs(float(via_key["loss"]) - float(base["loss"])) < 1e-6


def test_distillation_db_loss_missing_model_and_bad_config():
    loss = DistillationDBLoss(["Student", "Techer"])
    with pytest.raises(ConfigError, match="Teacher"):
        loss({"Student": {"maps": det_maps(0)}, "Teacher": {"maps": det_maps(1)}},
             random_det_batch())
    with pytest.raises(ConfigError, match="model_name_pair"):
        LOSSES.build({"name": "DistillationDBLoss", "model_name_pair": ["Student"]})


# --- DistillationDilaDBLoss -------------------------------------------------------------------

def test_dilation_matches_opencv_2x2_kernel():
    rng = np.random.RandomState(10)
    maps = rng.rand(3, 1, 9, 11).astype("float32") * 0.4  # sparse pixels above 0.3
    maps[0, 0, 0, 0] = maps[0, 0, 8, 10] = maps[1, 0, 4, 5] = 0.3  # exactly 0.3 stays off
    ours = dilate_teacher_target(t(maps)).numpy()
    kernel = np.ones((2, 2), dtype=np.uint8)
    for b in range(maps.shape[0]):
        expected = cv2.dilate((maps[b, 0] > 0.3).astype(np.uint8), kernel)
        np.testing.assert_array_equal(ours[b], expected.astype("float32"))
    assert ours.dtype == np.float32 and ours.shape == (3, 9, 11)


def dila_reference(student, teacher, shrink_mask, alpha=5.0):
    kernel = np.ones((2, 2), dtype=np.uint8)
    target = np.stack([cv2.dilate((m > 0.3).astype(np.uint8), kernel) for m in teacher[:, 0]])
    target = target.astype(np.float64)
    shrink = balance_np(dice_np(student[:, 0], target, shrink_mask), target, shrink_mask)
    return alpha * shrink + dice_np(student[:, 2], target, shrink_mask)


def test_dila_db_loss_value_keys_and_no_teacher_gradient():
    batch = random_det_batch(11)
    student, student2, teacher = det_maps(12), det_maps(13), det_maps(14)
    preds = {"Student": {"maps": student}, "Student2": {"maps": student2},
             "Teacher": {"maps": teacher}}
    loss = DistillationDilaDBLoss([["Student", "Teacher"], ["Student2", "Teacher"]], key="maps")
    out = loss(preds, batch)
    assert set(out) == {"dila_dbloss_Student_Teacher", "dila_dbloss_Student2_Teacher", "loss"}
    expected = dila_reference(student.numpy(), teacher.numpy(), batch[4].numpy())
    assert out["dila_dbloss_Student_Teacher"].shape == []
    assert abs(float(out["dila_dbloss_Student_Teacher"]) - expected) < 1e-5
    out["loss"].backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert teacher.grad is None or float(teacher.grad.abs().sum()) == 0


def test_dila_db_loss_one_channel_teacher_key_none_and_alpha():
    batch = random_det_batch(15)
    student, teacher = det_maps(16), det_maps(17, channels=1)
    preds = {"Student": {"maps": student}, "Teacher": {"maps": teacher}}
    out = DistillationDilaDBLoss([["Student", "Teacher"]], alpha=2, name="dila")(preds, batch)
    expected = dila_reference(student.numpy(), teacher.numpy(), batch[4].numpy(), alpha=2.0)
    assert abs(float(out["dila_Student_Teacher"]) - expected) < 1e-5


def test_dila_db_loss_bce_main_loss_is_used():
    batch = random_det_batch(18)
    preds = {"Student": {"maps": det_maps(19)}, "Teacher": {"maps": det_maps(20)}}
    dice = DistillationDilaDBLoss(["Student", "Teacher"])(preds, batch)
    bce = DistillationDilaDBLoss(["Student", "Teacher"], main_loss_type="BCELoss")(preds, batch)
    assert abs(float(dice["loss"]) - float(bce["loss"])) > 1e-3


def test_dila_db_loss_missing_model_is_a_clear_error():
    loss = DistillationDilaDBLoss([["Student", "Teachr"]], key="maps")
    with pytest.raises(ConfigError, match="did you mean 'Teacher'"):
        loss({"Student": {"maps": det_maps(0)}, "Teacher": {"maps": det_maps(1)}},
             random_det_batch())
