"""DetMetric and DetectionIoUEvaluator: the §11 example, input forms, empty predictions, reset."""
import numpy as np
import paddle
import pytest

from ppdistill.metrics import build_metric
from ppdistill.metrics.det_metric import DetMetric
from ppdistill.metrics.eval_det_iou import DetectionIoUEvaluator


def rect(x0, x1, y0=0, y1=10):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


GTS = np.array([rect(0, 10), rect(20, 30), rect(40, 50)], dtype=np.float32)
IGNORE = np.array([False, False, True])
DETS = np.array([rect(0, 10), rect(1, 11), rect(41, 52), rect(60, 70)], dtype=np.int32)
EXPECTED = {"precision": 1 / 3, "recall": 0.5, "hmean": 0.4}


def assert_metrics(result, expected):
    assert set(result) == {"precision", "recall", "hmean"}
    for key, value in expected.items():
        assert abs(result[key] - value) < 1e-6, key


def test_check_example_counts():
    evaluator = DetectionIoUEvaluator()
    counts = evaluator.evaluate_image(
        [{"points": p, "ignore": i} for p, i in zip(GTS, IGNORE)], [{"points": d} for d in DETS])
    assert counts == {"gtCare": 2, "detCare": 3, "detMatched": 1}
    assert_metrics(evaluator.combine_results([counts]), EXPECTED)


@pytest.mark.parametrize("form", ["numpy", "tensor", "list"])
def test_det_metric_check_example(form):
    if form == "numpy":
        polys, tags = GTS[None], IGNORE[None]
    elif form == "tensor":
        polys, tags = paddle.to_tensor(GTS[None]), paddle.to_tensor(IGNORE[None])
    else:
        polys, tags = [GTS], [list(IGNORE)]
    metric = build_metric({"name": "DetMetric", "main_indicator": "hmean"})
    metric([{"points": DETS}], [None, None, polys, tags])
    assert_metrics(metric.get_metric(), EXPECTED)


def test_micro_average_over_images_and_poly_predictions():
    metric = DetMetric()
    # image 1: the check example; image 2: one GT found by a polygon prediction (nested lists)
    polygon = [[100, 0], [105, -2], [110, 0], [110, 10], [100, 10]]
    metric([{"points": DETS}, {"points": [polygon]}],
           [None, None, [GTS, np.array([rect(100, 110)])], [IGNORE, np.array([False])]])
    # matched 2, gtCare 3, detCare 4
    assert_metrics(metric.get_metric(), {"precision": 0.5, "recall": 2 / 3, "hmean": 4 / 7})


def test_empty_predictions_and_empty_images():
    metric = DetMetric()
    metric([{"points": np.array([], dtype=np.int32)}], [None, None, GTS[None], IGNORE[None]])
    assert_metrics(metric.get_metric(), {"precision": 0.0, "recall": 0.0, "hmean": 0.0})
    metric([{"points": np.array([], dtype=np.int32)}],
           [None, None, [np.zeros((0, 4, 2))], [np.zeros((0,), bool)]])
    assert_metrics(metric.get_metric(), {"precision": 0.0, "recall": 0.0, "hmean": 0.0})


def test_get_metric_and_reset_clear_the_accumulator():
    metric = DetMetric()
    metric([{"points": DETS}], [None, None, GTS[None], IGNORE[None]])
    assert_metrics(metric.get_metric(), EXPECTED)
    assert metric.results == []
    metric([{"points": DETS[:1]}], [None, None, GTS[None], IGNORE[None]])
    metric.reset()
    metric([{"points": DETS}], [None, None, GTS[None], IGNORE[None]])
    assert_metrics(metric.get_metric(), EXPECTED)


def test_invalid_polygons_are_discarded_and_mismatch_is_reported():
    evaluator = DetectionIoUEvaluator()
    bow_tie = [[0, 0], [10, 10], [10, 0], [0, 10]]  # self-intersecting: invalid
    counts = evaluator.evaluate_image([{"points": rect(0, 10), "ignore": False},
                                       {"points": bow_tie, "ignore": False}],
                                      [{"points": bow_tie}, {"points": [[0, 0], [1, 1]]}])
    assert counts == {"gtCare": 1, "detCare": 0, "detMatched": 0}
    with pytest.raises(ValueError, match="2 polygons but 1 ignore tags"):
        DetMetric()([{"points": DETS}], [None, None, [GTS[:2]], [IGNORE[:1]]])
