import pytest

from ppdistill.metrics import build_metric
from ppdistill.metrics.distillation_metric import DistillationMetric
from ppdistill.registry import METRICS, ConfigError


@METRICS.register("CountMetric")
class CountMetric:
    """Counts correct strings (test-only base metric)."""

    def __init__(self, main_indicator="acc", scale=1.0):
        self.main_indicator, self.scale = main_indicator, scale
        self.reset()

    def __call__(self, preds, batch):
        self.correct += sum(p == t for p, t in zip(preds, batch)) * self.scale
        self.total += len(preds)

    def get_metric(self):
        out = {"acc": self.correct / max(self.total, 1)}
        self.reset()
        return out

    def reset(self):
        self.correct, self.total = 0, 0


def test_prefixes_and_kwargs():
    metric = build_metric({"name": "DistillationMetric", "base_metric_name": "CountMetric",
                           "main_indicator": "acc", "key": "Student", "scale": 1.0})
    assert metric.get_metric() == {}
    metric.reset()
    metric({"Student": ["a", "b"], "Teacher": ["a", "c"]}, ["a", "b"])
    assert metric.get_metric() == {"acc": 1.0, "Teacher_acc": 0.5}
    assert metric.metrics["Student"].main_indicator == "acc"


def test_bad_base_metric_and_kwargs():
    with pytest.raises(ConfigError, match="did you mean 'CountMetric'"):
        DistillationMetric(key="Student", base_metric_name="CountMetrik")
    with pytest.raises(ConfigError, match="unexpected key 'scal'"):
        DistillationMetric(key="Student", base_metric_name="CountMetric", scal=2)
