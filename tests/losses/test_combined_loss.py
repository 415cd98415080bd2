import paddle
import pytest

from ppdistill.losses import build_loss
from ppdistill.registry import ConfigError


def preds():
    paddle.seed(5)
    sig = paddle.nn.functional.sigmoid
    return {"Student": {"maps": sig(paddle.randn([2, 3, 8, 8])), "feat": paddle.randn([2, 4])},
            "Student2": {"maps": sig(paddle.randn([2, 3, 8, 8])), "feat": paddle.randn([2, 4])}}


CONFIG = {"name": "CombinedLoss", "loss_config_list": [
    {"DistillationDMLLoss": {"weight": 2.0, "model_name_pairs": [["Student", "Student2"]],
                             "key": "maps", "maps_name": "thrink_maps"}},
    {"DistillationDistanceLoss": {"weight": 0.5, "mode": "l2",
                                  "model_name_pairs": [["Student", "Student2"]], "key": "feat"}},
]}


def test_weighted_terms_and_total():
    loss = build_loss(CONFIG)
    out = loss(preds(), None)
    assert set(out) == {"dml_thrink_maps_0", "loss_distance_l2_Student_Student2_0", "loss"}
    assert all(v.shape == [] for v in out.values())
    raw_dml = build_loss({"name": "DistillationDMLLoss", "model_name_pairs": [["Student", "Student2"]],
                          "key": "maps", "maps_name": "thrink_maps"})(preds())["loss"]
    assert abs(float(out["dml_thrink_maps_0"]) - 2 * float(raw_dml)) < 1e-6
    total = float(out["dml_thrink_maps_0"]) + float(out["loss_distance_l2_Student_Student2_0"])
    assert abs(float(out["loss"]) - total) < 1e-6
    assert loss.formula() == ("loss = 2 * DistillationDMLLoss(dml) + "
                              "0.5 * DistillationDistanceLoss(loss_distance)")


def test_clashing_keys_are_kept_apart():
    cfg = {"name": "CombinedLoss", "loss_config_list": [CONFIG["loss_config_list"][0]] * 2}
    out = build_loss(cfg)(preds(), None)
    assert set(out) == {"dml_thrink_maps_0", "dml_thrink_maps_0_1", "loss"}
    assert abs(float(out["loss"]) - 2 * float(out["dml_thrink_maps_0"])) < 1e-6


def test_config_not_mutated_and_errors():
    import copy
    cfg = copy.deepcopy(CONFIG)
    build_loss(cfg)
    assert cfg == CONFIG
    with pytest.raises(ConfigError, match=r"loss_config_list\[0\].DistillationDMLLoss: missing 'weight'"):
        build_loss({"name": "CombinedLoss", "loss_config_list": [{"DistillationDMLLoss": {}}]})
    with pytest.raises(ConfigError, match="did you mean 'DistillationDMLLoss'"):
        build_loss({"name": "CombinedLoss",
                    "loss_config_list": [{"DistilationDMLLoss": {"weight": 1}}]})
    with pytest.raises(ConfigError, match="unknown loss 'CombinedLos'"):
        build_loss({"name": "CombinedLos"})


def test_backward_is_scalar():
    p = preds()
    for sub in p.values():
        sub["maps"].stop_gradient = False
    out = build_loss(CONFIG)(p, None)
    out["loss"].backward()
    assert p["Student"]["maps"].grad is not None
