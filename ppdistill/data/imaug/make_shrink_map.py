"""MakeShrinkMap: the DB probability-map target (text polygons shrunk by the Vatti offset)."""
import cv2
import numpy as np
import pyclipper

from ppdistill.registry import TRANSFORMS, ConfigError


def polygon_area_perimeter(polygon):
    """(|shoelace area|, perimeter) of a closed polygon given as [K, 2]."""
    polygon = np.ascontiguousarray(polygon, dtype=np.float32).reshape(-1, 2)
    return abs(float(cv2.contourArea(polygon))), float(cv2.arcLength(polygon, True))


def offset_distance(polygon, shrink_ratio):
    """DB's offset ``D = A·(1 − r²) / L`` (A area, L perimeter); 0 for a degenerate polygon."""
    area, perimeter = polygon_area_perimeter(polygon)
    if area <= 0 or perimeter <= 0:
        return 0.0
    return area * (1.0 - shrink_ratio ** 2) / perimeter


def offset_polygon(polygon, distance):
    """Vatti-offset ``polygon`` by ``distance`` (positive grows, negative shrinks) with round
    joins; returns the list of resulting integer polygons (each [M, 2]).

    Coordinates are rounded to integers first (PaddleOCR hands floats to pyclipper, which
    truncates them; the results differ by at most one pixel)."""
    offsetter = pyclipper.PyclipperOffset()
    path = np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int64).tolist()
    offsetter.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [np.array(p, dtype=np.int32).reshape(-1, 2) for p in offsetter.Execute(distance)]


def _check_ratio(name, shrink_ratio):
    if not 0 < float(shrink_ratio) < 1:
        raise ConfigError(f"{name}: shrink_ratio must be in (0, 1), got {shrink_ratio!r}")


def epoch_shrink_ratio(name, shrink_ratio, total_epoch=None, epoch=None):
    """PaddleOCR's epoch-dependent ratio: ``shrink_ratio + 0.2 * epoch / total_epoch``.

    Active only when both ``total_epoch`` and ``epoch`` are given (``epoch`` is injected by the
    training dataset, see :class:`~ppdistill.data.base_dataset.BaseDataSet`); otherwise
    ``shrink_ratio`` itself. The result must stay in (0, 1).
    """
    _check_ratio(name, shrink_ratio)
    if total_epoch is None or epoch is None:
        return float(shrink_ratio)
    if not isinstance(total_epoch, (int, float)) or total_epoch <= 0:
        raise ConfigError(f"{name}: total_epoch must be a positive number, got {total_epoch!r}")
    ratio = float(shrink_ratio) + 0.2 * float(epoch) / float(total_epoch)
    if not 0 < ratio < 1:
        raise ConfigError(
            f"{name}: shrink_ratio {shrink_ratio} + 0.2 * epoch {epoch} / total_epoch "
            f"{total_epoch} = {ratio:.4f} is not in (0, 1); epoch is Global.seed in training "
            f"(as in PaddleOCR), so lower Global.seed, raise total_epoch or drop it")
    return ratio


@TRANSFORMS.register()
class MakeShrinkMap:
    """Build ``shrink_map`` (1 inside the shrunk text polygons) and ``shrink_mask`` (0 on
    ignored/too-small text), both float32 [H, W] like the image.

    Polygons are clipped to the image. A polygon is ignored (mask 0 over the polygon, its
    ``ignore_tags`` entry set) when it is tagged ``###``, its area is below 1 pixel, or the short
    side of its bounding box is below ``min_text_size``. Otherwise it is shrunk by
    ``D = A·(1 − r²) / L`` (A area, L perimeter, r = shrink_ratio; DB paper, Liao et al. 2020);
    if the offset splits it into several pieces it is retried with r, 2r, ... < 1, and if it
    vanishes the polygon is ignored.

    Args:
        min_text_size: minimum short side (pixels) of a text box to be learnt.
        shrink_ratio: r above.
        total_epoch, epoch: with both set, r becomes ``shrink_ratio + 0.2 * epoch /
            total_epoch`` (PaddleOCR's PP-OCRv4 det configs set ``total_epoch: 500``). As in
            PaddleOCR, ``epoch`` is not the training epoch: a training dataset whose transforms
            list both MakeBorderMap and MakeShrinkMap injects the loader seed (``Global.seed``,
            default 1024), so r = 0.4 + 0.2 * 1024 / 500 = 0.8096 for the whole run. Not
            injected in eval.

    YAML::

        - MakeShrinkMap:
            shrink_ratio: 0.4
            min_text_size: 8
            total_epoch: 500   # optional, PP-OCRv4
    """

    def __init__(self, min_text_size=8, shrink_ratio=0.4, total_epoch=None, epoch=None):
        self.shrink_ratio = epoch_shrink_ratio("MakeShrinkMap", shrink_ratio, total_epoch, epoch)
        self.min_text_size = float(min_text_size)

    def __call__(self, data):
        h, w = data["image"].shape[:2]
        polys = data["polys"]
        tags = np.array(data["ignore_tags"], dtype=bool).reshape(-1)
        gt = np.zeros((h, w), dtype=np.float32)
        mask = np.ones((h, w), dtype=np.float32)
        for i in range(len(polys)):
            polygon = np.minimum(np.maximum(polys[i], 0), (w - 1, h - 1)).astype(np.float32)
            area, _ = polygon_area_perimeter(polygon)
            extent = polygon.max(0) - polygon.min(0)
            if tags[i] or area < 1 or min(extent) < self.min_text_size:
                tags[i] = True
                cv2.fillPoly(mask, [polygon.astype(np.int32)], 0.0)
                continue
            shrunk = self._shrink(polygon)
            if not shrunk:
                tags[i] = True
                cv2.fillPoly(mask, [polygon.astype(np.int32)], 0.0)
                continue
            cv2.fillPoly(gt, shrunk, 1.0)
        data["shrink_map"] = gt
        data["shrink_mask"] = mask
        data["ignore_tags"] = tags
        return data

    def _shrink(self, polygon):
        shrunk = []
        for ratio in np.arange(self.shrink_ratio, 1, self.shrink_ratio):
            shrunk = offset_polygon(polygon, -offset_distance(polygon, ratio))
            if len(shrunk) == 1:
                break
        return shrunk
