"""DB post-processing: text boxes (or polygons) from the shrink probability map."""
import cv2
import numpy as np
import paddle
import pyclipper
from shapely.geometry import Polygon

from ppdistill.registry import POSTPROCESS, ConfigError, suggest

#: OpenCV's default anchor for this kernel is its bottom-right cell: regions grow down and right.
DILATION_KERNEL = np.array([[1, 1], [1, 1]], dtype=np.uint8)
MIN_SIZE = 3
SCORE_MODES = ("fast", "slow")
BOX_TYPES = ("quad", "poly")


def _to_numpy(value):
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def find_contours(bitmap):
    """OpenCV contours of a 0/1 bitmap (retrieval LIST, approximation SIMPLE), any cv2 version."""
    found = cv2.findContours((bitmap * 255).astype(np.uint8), cv2.RETR_LIST,
                             cv2.CHAIN_APPROX_SIMPLE)
    return found[1] if len(found) == 3 else found[0]


def get_mini_boxes(contour):
    """The minimum-area rectangle of ``contour`` as ``([tl, tr, br, bl], short_side)``.

    The four ``boxPoints`` are sorted by x (stable); of the two leftmost the lower one (larger y)
    is bottom-left, of the two rightmost the lower one is bottom-right; on equal y the second in
    sort order is the top point.
    """
    rect = cv2.minAreaRect(contour)
    points = sorted(list(cv2.boxPoints(rect)), key=lambda p: p[0])
    top_left, bottom_left = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    top_right, bottom_right = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    box = [points[top_left], points[top_right], points[bottom_right], points[bottom_left]]
    return box, min(rect[1])


def _mean_under_polygon(pred, points):
    """Mean of ``pred`` inside the filled polygon ``points`` (float, clipped to the map)."""
    height, width = pred.shape[:2]
    points = np.array(points).reshape(-1, 2)
    xmin = int(np.clip(np.floor(points[:, 0].min()), 0, width - 1))
    xmax = int(np.clip(np.ceil(points[:, 0].max()), 0, width - 1))
    ymin = int(np.clip(np.floor(points[:, 1].min()), 0, height - 1))
    ymax = int(np.clip(np.ceil(points[:, 1].max()), 0, height - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = points - np.array([xmin, ymin], dtype=points.dtype)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(pred[ymin:ymax + 1, xmin:xmax + 1], mask)[0]


def box_score_fast(pred, box):
    """Mean of ``pred`` inside the filled (float) box, its corners truncated to integers."""
    return _mean_under_polygon(pred, np.asarray(box, dtype=np.float32))


def box_score_slow(pred, contour):
    """Mean of ``pred`` inside the filled integer contour."""
    return _mean_under_polygon(pred, np.asarray(contour, dtype=np.int32))


def unclip(points, unclip_ratio):
    """Offset a polygon outwards by ``area·unclip_ratio / perimeter`` (round joins).

    Returns pyclipper's list of resulting polygons (integer points).
    """
    polygon = Polygon(points)
    if polygon.length == 0:
        return []
    distance = polygon.area * unclip_ratio / polygon.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(points, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return offset.Execute(distance)


def _scale_points(points, width, height, dest_width, dest_height):
    """Map size -> source image size: ``clip(round(x / W · src_w), 0, src_w)`` (half to even).

    As in PaddleOCR, ``x / W`` is computed in the points' own precision (float32 for quads) and
    the product with the source size in float64, so ties round the same way.
    """
    points = np.asarray(points).reshape(-1, 2)
    scaled = np.empty(points.shape, dtype=np.float64)
    scaled[:, 0] = np.clip(np.round((points[:, 0] / width).astype(np.float64) * dest_width),
                           0, dest_width)
    scaled[:, 1] = np.clip(np.round((points[:, 1] / height).astype(np.float64) * dest_height),
                           0, dest_height)
    return scaled


@POSTPROCESS.register()
class DBPostProcess:
    """Text boxes from DB's shrink map: threshold, contours, score, unclip, rescale.

    ``post(outs_dict, shape_list)``: ``outs_dict["maps"]`` is ``[B, C, H, W]`` (tensor or numpy;
    channel 0 is used), ``shape_list[b] = [src_h, src_w, ratio_h, ratio_w]``. Returns one
    ``{"points": boxes}`` per image: quad mode gives an int32 ``[K, 4, 2]`` array (clockwise from
    top-left; an empty int32 array of shape (0,) when nothing is found), poly mode a list of
    integer ``[x, y]`` point lists.

    Per image: ``bitmap = pred > thresh`` (2×2 dilation with ``use_dilation``); for each of the
    first ``max_candidates`` contours: the minimum-area box (quad) or the contour simplified with
    ``approxPolyDP(0.002·perimeter)`` (poly); drop short side < 3; score = mean of ``pred`` in the
    box (``fast``) or in the contour (``slow``; poly mode always uses ``fast``); drop if
    ``score < box_thresh``; unclip by ``area·unclip_ratio / perimeter``; drop short side < 5;
    scale by ``src / map size`` with rounding and clip to the image. ``ratio_h``/``ratio_w`` are
    not used (as in PaddleOCR); scores are not returned.

    Arguments: ``thresh`` (binarisation), ``box_thresh`` (minimum score), ``max_candidates``,
    ``unclip_ratio``, ``use_dilation``, ``score_mode`` (fast|slow), ``box_type`` (quad|poly).

    YAML::

        PostProcess:
          name: DBPostProcess
          thresh: 0.3
          box_thresh: 0.6
          max_candidates: 1000
          unclip_ratio: 1.5
    """

    def __init__(self, thresh=0.3, box_thresh=0.7, max_candidates=1000, unclip_ratio=2.0,
                 use_dilation=False, score_mode="fast", box_type="quad"):
        if score_mode not in SCORE_MODES:
            raise ConfigError(f"DBPostProcess: score_mode must be one of {', '.join(SCORE_MODES)}"
                              f", got {score_mode!r}{suggest(score_mode, SCORE_MODES)}")
        if box_type not in BOX_TYPES:
            raise ConfigError(f"DBPostProcess: box_type must be one of {', '.join(BOX_TYPES)}, "
                              f"got {box_type!r}{suggest(box_type, BOX_TYPES)}")
        self.thresh = thresh
        self.box_thresh = box_thresh
        self.max_candidates = int(max_candidates)
        self.unclip_ratio = unclip_ratio
        self.min_size = MIN_SIZE
        self.score_mode = score_mode
        self.box_type = box_type
        self.dilation_kernel = DILATION_KERNEL if use_dilation else None

    def __call__(self, outs_dict, shape_list):
        if isinstance(outs_dict, dict) and "maps" not in outs_dict:
            raise ValueError(f"DBPostProcess: expected {{'maps': [B, C, H, W]}}, got keys "
                             f"{', '.join(map(str, outs_dict))}")
        maps = outs_dict["maps"] if isinstance(outs_dict, dict) else outs_dict
        pred = _to_numpy(maps)
        if pred.ndim != 4:
            raise ValueError(f"DBPostProcess: expected maps [B, C, H, W], got shape {pred.shape}")
        pred = pred[:, 0, :, :]
        segmentation = pred > self.thresh
        shape_list = _to_numpy(shape_list).reshape(-1, 4)
        if len(shape_list) != len(pred):
            raise ValueError(f"DBPostProcess: {len(pred)} maps but {len(shape_list)} shapes")
        results = []
        for b in range(pred.shape[0]):
            src_h, src_w = float(shape_list[b][0]), float(shape_list[b][1])
            bitmap = segmentation[b]
            if self.dilation_kernel is not None:
                bitmap = cv2.dilate(bitmap.astype(np.uint8), self.dilation_kernel)
            if self.box_type == "poly":
                boxes, _ = self.polygons_from_bitmap(pred[b], bitmap, src_w, src_h)
            else:
                boxes, _ = self.boxes_from_bitmap(pred[b], bitmap, src_w, src_h)
            results.append({"points": boxes})
        return results

    def boxes_from_bitmap(self, pred, bitmap, dest_width, dest_height):
        """Quad boxes: ``(int32 [K, 4, 2] array, scores)``."""
        height, width = bitmap.shape
        boxes, scores = [], []
        for contour in find_contours(bitmap)[:self.max_candidates]:
            points, short_side = get_mini_boxes(contour)
            if short_side < self.min_size:
                continue
            points = np.array(points)
            if self.score_mode == "fast":
                score = box_score_fast(pred, points.reshape(-1, 2))
            else:
                score = box_score_slow(pred, contour)
            if self.box_thresh > score:
                continue
            expanded = unclip(points, self.unclip_ratio)
            if len(expanded) != 1:
                continue
            box, short_side = get_mini_boxes(np.array(expanded).reshape(-1, 1, 2))
            if short_side < self.min_size + 2:
                continue
            box = _scale_points(box, width, height, dest_width, dest_height)
            boxes.append(box.astype(np.int32))
            scores.append(score)
        return np.array(boxes, dtype=np.int32), scores

    def polygons_from_bitmap(self, pred, bitmap, dest_width, dest_height):
        """Polygons: ``(list of [[x, y], ...] integer point lists, scores)``."""
        height, width = bitmap.shape
        boxes, scores = [], []
        for contour in find_contours(bitmap)[:self.max_candidates]:
            epsilon = 0.002 * cv2.arcLength(contour, True)
            points = cv2.approxPolyDP(contour, epsilon, True).reshape(-1, 2)
            if points.shape[0] < 4:
                continue
            score = box_score_fast(pred, points)
            if self.box_thresh > score:
                continue
            expanded = unclip(points, self.unclip_ratio)
            if len(expanded) != 1:
                continue
            box = np.array(expanded[0]).reshape(-1, 2)
            if len(box) == 0:
                continue
            _, short_side = get_mini_boxes(box.reshape(-1, 1, 2).astype(np.int32))
            if short_side < self.min_size + 2:
                continue
            box = _scale_points(box, width, height, dest_width, dest_height)
            boxes.append(box.astype(np.int64).tolist())
            scores.append(score)
        return boxes, scores


@POSTPROCESS.register()
class DistillationDBPostProcess:
    """:class:`DBPostProcess` on each named sub-model: ``{name: [{"points": ...}, ...]}``.

    ``model_name``: a name or list of names of the DistillationModel's sub-models (the attribute
    may be replaced after construction, e.g. to evaluate every sub-model). ``key``: when set and
    a model's output has that key, ``output[key]`` is post-processed; when the output has no such
    key but holds ``maps`` (PaddleOCR's det configs ship ``key: head_out`` while det outputs are
    ``{"maps": ...}``), the output is used as is. Other arguments as DBPostProcess (note the
    different defaults ``box_thresh=0.6``, ``unclip_ratio=1.5``).

    Differences from PaddleOCR: ``key`` is honoured as above (PaddleOCR ignores it entirely);
    an unknown model name fails with a ConfigError listing the available names.

    YAML::

        PostProcess:
          name: DistillationDBPostProcess
          model_name: ["Student"]
          key: head_out
          thresh: 0.3
          box_thresh: 0.6
          max_candidates: 1000
          unclip_ratio: 1.5
    """

    def __init__(self, model_name=("student",), key=None, thresh=0.3, box_thresh=0.6,
                 max_candidates=1000, unclip_ratio=1.5, use_dilation=False, score_mode="fast",
                 box_type="quad"):
        names = [model_name] if isinstance(model_name, str) else model_name
        if (not isinstance(names, (list, tuple)) or not names
                or not all(isinstance(n, str) for n in names)):
            raise ConfigError(f"DistillationDBPostProcess: model_name must be a model name or a "
                              f"non-empty list of names, got {model_name!r}")
        self.model_name = list(names)
        self.key = key
        self.post_process = DBPostProcess(thresh=thresh, box_thresh=box_thresh,
                                          max_candidates=max_candidates,
                                          unclip_ratio=unclip_ratio, use_dilation=use_dilation,
                                          score_mode=score_mode, box_type=box_type)

    def _select(self, predicts, name):
        if not isinstance(predicts, dict):
            raise TypeError(f"DistillationDBPostProcess expects {{model_name: output}}, got "
                            f"{type(predicts).__name__}")
        if name not in predicts:
            raise ConfigError(f"DistillationDBPostProcess: no model {name!r} in the predictions"
                           f"{suggest(name, predicts)} (available: "
                           f"{', '.join(map(str, predicts))})")
        output = predicts[name]
        if self.key is not None and isinstance(output, dict) and self.key in output:
            output = output[self.key]
        if isinstance(output, dict) and "maps" not in output:
            raise ConfigError(f"DistillationDBPostProcess: the output of {name!r} has no 'maps'"
                           f"{'' if self.key is None else f' and no {self.key!r}'} "
                           f"(keys: {', '.join(map(str, output))})")
        return output

    def __call__(self, predicts, shape_list):
        return {name: self.post_process(self._select(predicts, name), shape_list)
                for name in self.model_name}
