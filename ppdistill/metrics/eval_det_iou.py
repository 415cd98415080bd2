"""ICDAR-style IoU matching of detected polygons against ground-truth polygons (shapely)."""
import numpy as np
from shapely.geometry import Polygon


def _polygon(points):
    """A shapely polygon of ``points``, or None when they do not form a valid polygon."""
    try:
        polygon = Polygon(np.asarray(points, dtype=np.float64).reshape(-1, 2))
    except (ValueError, TypeError):
        return None
    return polygon if polygon.is_valid else None


def _intersection(a, b):
    return a.intersection(b).area


def _iou(a, b):
    union = a.union(b).area
    return _intersection(a, b) / union if union > 0 else 0.0


class DetectionIoUEvaluator:
    """Counts the one-to-one IoU matches between detections and ground truth of one image.

    ``evaluate_image(gt, pred)``: ``gt`` is a list of ``{"points": [[x, y], ...], "ignore": bool}``,
    ``pred`` a list of ``{"points": [[x, y], ...]}``.

    1. Invalid polygons (shapely ``is_valid`` false, or fewer than 3 points) are discarded; kept
       GTs flagged ``ignore`` are don't-care.
    2. A kept detection is don't-care when some don't-care GT covers more than
       ``area_precision_constraint`` of its area (``area(det ∩ gt) / area(det) > 0.5``).
    3. Greedy matching: GTs in order, detections in order; a pair matches when neither is
       matched yet nor don't-care and ``IoU > iou_constraint`` (strict). No sorting by IoU.

    Returns ``{"gtCare", "detCare", "detMatched"}`` (counts). ``combine_results(results)`` sums
    the counts over images and returns ``{"precision", "recall", "hmean"}`` (micro average;
    each is 0 when its denominator is 0).
    """

    def __init__(self, iou_constraint=0.5, area_precision_constraint=0.5):
        self.iou_constraint = iou_constraint
        self.area_precision_constraint = area_precision_constraint

    def evaluate_image(self, gt, pred):
        gt_polys, gt_dont_care = [], []
        for item in gt:
            polygon = _polygon(item["points"])
            if polygon is None:
                continue
            gt_polys.append(polygon)
            if bool(item.get("ignore", False)):
                gt_dont_care.append(len(gt_polys) - 1)

        det_polys, det_dont_care = [], []
        for item in pred:
            polygon = _polygon(item["points"])
            if polygon is None:
                continue
            det_polys.append(polygon)
            for gt_index in gt_dont_care:
                area = polygon.area
                covered = 0.0 if area == 0 else _intersection(gt_polys[gt_index], polygon) / area
                if covered > self.area_precision_constraint:
                    det_dont_care.append(len(det_polys) - 1)
                    break

        det_matched = 0
        gt_taken = [False] * len(gt_polys)
        det_taken = [False] * len(det_polys)
        for g, gt_poly in enumerate(gt_polys):
            for d, det_poly in enumerate(det_polys):
                if (gt_taken[g] or det_taken[d] or g in gt_dont_care or d in det_dont_care):
                    continue
                if _iou(det_poly, gt_poly) > self.iou_constraint:
                    gt_taken[g] = det_taken[d] = True
                    det_matched += 1
        return {"gtCare": len(gt_polys) - len(gt_dont_care),
                "detCare": len(det_polys) - len(det_dont_care),
                "detMatched": det_matched}

    @staticmethod
    def combine_results(results):
        gt_care = sum(r["gtCare"] for r in results)
        det_care = sum(r["detCare"] for r in results)
        matched = sum(r["detMatched"] for r in results)
        recall = 0.0 if gt_care == 0 else float(matched) / gt_care
        precision = 0.0 if det_care == 0 else float(matched) / det_care
        hmean = (0.0 if precision + recall == 0
                 else 2.0 * precision * recall / (precision + recall))
        return {"precision": precision, "recall": recall, "hmean": hmean}
