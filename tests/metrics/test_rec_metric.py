"""RecMetric against LOSSES_AND_METRICS.md §8.3/§11."""
import pytest

from ppdistill.metrics import build_metric
from ppdistill.metrics.rec_metric import RecMetric


def _pairs(texts):
    return [(t, 1.0) for t in texts]


def test_rec_metric_check_values_and_running_totals():
    metric = RecMetric(ignore_space=True)
    batch = metric((_pairs(["a b", "x"]), _pairs(["ab", "y"])))
    assert batch["acc"] == pytest.approx(0.4999975, abs=1e-9)
    assert batch["norm_edit_dis"] == pytest.approx(0.5000025, abs=1e-9)
    metric((_pairs(["abc"]), _pairs(["abd"])), None)
    total = metric.get_metric()
    assert total["acc"] == pytest.approx(1 / (3 + 1e-5))
    assert total["norm_edit_dis"] == pytest.approx(1 - (0 + 1 + 1 / 3) / (3 + 1e-5))
    # get_metric resets
    metric((_pairs(["ab"]), _pairs(["ab"])))
    assert metric.get_metric()["acc"] == pytest.approx(0.99999)


def test_rec_metric_space_and_filter_options():
    keep_space = RecMetric(ignore_space=False)
    assert keep_space((_pairs(["a b"]), _pairs(["ab"])))["acc"] == 0.0
    filtered = RecMetric(is_filter=True, ignore_space=False)
    assert filtered((_pairs(["A-b!"]), _pairs(["ab"])))["acc"] == pytest.approx(0.99999)
    empty = RecMetric()
    assert empty((_pairs([""]), _pairs([""])))["norm_edit_dis"] == pytest.approx(1.0)


def test_rec_metric_reset_and_errors():
    metric = RecMetric()
    metric((_pairs(["a"]), _pairs(["b"])))
    metric.reset()
    assert metric.get_metric() == {"acc": 0.0, "norm_edit_dis": 1.0}
    with pytest.raises(ValueError, match="predictions"):
        metric((_pairs(["a"]), _pairs(["a", "b"])))


def test_distillation_metric_with_rec_metric():
    metric = build_metric({"name": "DistillationMetric", "base_metric_name": "RecMetric",
                           "main_indicator": "acc", "key": "Student", "ignore_space": False})
    metric({"Student": (_pairs(["ab"]), _pairs(["ab"])),
            "Teacher": (_pairs(["ab"]), _pairs(["ac"]))}, None)
    out = metric.get_metric()
    assert out["acc"] == pytest.approx(0.99999) and out["norm_edit_dis"] == pytest.approx(1.0)
    assert out["Teacher_acc"] == 0.0
    assert out["Teacher_norm_edit_dis"] == pytest.approx(0.500005)
