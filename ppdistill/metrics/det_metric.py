"""DetMetric: precision, recall and hmean of detected text polygons (ICDAR IoU matching)."""
import numpy as np
import paddle

from ppdistill.metrics.eval_det_iou import DetectionIoUEvaluator
from ppdistill.registry import METRICS


def _per_image(value, what):
    """A batch slot (tensor, array or list of per-image arrays) as a list indexed by image."""
    if isinstance(value, paddle.Tensor):
        value = value.numpy()
    if isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
        return [v.numpy() if isinstance(v, paddle.Tensor) else v for v in value]
    raise TypeError(f"DetMetric: expected {what} as a tensor, array or list per image, "
                    f"got {type(value).__name__}")


@METRICS.register()
class DetMetric:
    """Micro-averaged detection precision / recall / hmean over the evaluated images.

    ``metric(preds, batch)``: ``preds`` is the post-processed list ``[{"points": boxes}, ...]``
    (one per image), ``batch = [image, shape, polys, ignore_tags]`` where ``polys[b]`` are the
    image's ground-truth polygons and ``ignore_tags[b]`` their don't-care flags (tensors, numpy
    arrays, or lists of per-image arrays). Each image is matched with
    :class:`DetectionIoUEvaluator` (IoU > 0.5, don't-care coverage > 0.5); ``get_metric()``
    returns ``{"precision", "recall", "hmean"}`` over all images since the last reset and
    then resets. ``main_indicator`` names the value used to pick the best checkpoint.

    YAML::

        Metric:
          name: DetMetric
          main_indicator: hmean
    """

    def __init__(self, main_indicator="hmean"):
        self.main_indicator = main_indicator
        self.evaluator = DetectionIoUEvaluator()
        self.results = []

    def __call__(self, preds, batch, **kwargs):
        if batch is None or len(batch) < 4:
            raise ValueError("DetMetric: expected the det eval batch [image, shape, polys, "
                             "ignore_tags]")
        polys_batch = _per_image(batch[2], "polys")
        ignore_batch = _per_image(batch[3], "ignore_tags")
        if not (len(preds) == len(polys_batch) == len(ignore_batch)):
            raise ValueError(f"DetMetric: {len(preds)} predictions for {len(polys_batch)} "
                             f"ground-truth images ({len(ignore_batch)} ignore-tag lists)")
        for index, (pred, polys, ignore_tags) in enumerate(zip(preds, polys_batch, ignore_batch)):
            ignore_tags = np.asarray(ignore_tags).reshape(-1)
            if len(polys) != len(ignore_tags):
                raise ValueError(f"DetMetric: image {index} has {len(polys)} polygons but "
                                 f"{len(ignore_tags)} ignore tags")
            gt = [{"points": points, "ignore": bool(tag)}
                  for points, tag in zip(polys, ignore_tags)]
            det = [{"points": points} for points in pred["points"]]
            self.results.append(self.evaluator.evaluate_image(gt, det))

    def get_metric(self):
        metrics = self.evaluator.combine_results(self.results)
        self.reset()
        return metrics

    def reset(self):
        self.results = []
