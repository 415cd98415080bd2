"""DetLabelEncode: parse an ICDAR2015-style JSON detection label into polygons and tags."""
import json
import logging

import numpy as np

from ppdistill.registry import TRANSFORMS

logger = logging.getLogger("ppdistill.data")

IGNORED_TRANSCRIPTIONS = ("*", "###")


def _valid_points(points):
    """``points`` as a float32 [K, 2] array (K >= 3, finite), or a reason string why not."""
    try:
        array = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError):
        return "points are not a list of [x, y] numbers"
    if array.ndim != 2 or array.shape[1] != 2:
        return f"points must be a list of [x, y] pairs, got shape {list(array.shape)}"
    if array.shape[0] < 3:
        return f"a polygon needs at least 3 points, got {array.shape[0]}"
    if not np.all(np.isfinite(array)):
        return "points contain NaN or infinity"
    return array


@TRANSFORMS.register()
class DetLabelEncode:
    """Parse ``data["label"]``, a JSON list ``[{"transcription": str, "points": [[x, y], ...]}]``.

    Writes ``polys`` (float32 [N, K, 2]; polygons with fewer points are padded by repeating
    their last point up to the largest point count K), ``texts`` (list of N strings) and
    ``ignore_tags`` (bool [N], true iff the transcription is exactly ``"*"`` or ``"###"``).

    A label that is not valid JSON, or not a list, raises ``ValueError`` (the dataset skips the
    line with a warning naming it). A malformed polygon (fewer than 3 points, non-numeric or
    non-finite coordinates, no ``points``) is dropped with one warning; when no valid polygon is
    left the sample is rejected (returns ``None``).

    Difference from PaddleOCR: malformed polygons are dropped with a warning instead of making
    the whole line fail.

    YAML: ``- DetLabelEncode:``
    """

    _warned = set()

    def __call__(self, data):
        label = data["label"]
        if isinstance(label, bytes):
            label = label.decode("utf-8")
        try:
            entries = json.loads(label)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"DetLabelEncode: the label is not valid JSON ({exc})") from None
        if not isinstance(entries, list):
            raise ValueError("DetLabelEncode: the label must be a JSON list of "
                             f"{{'transcription', 'points'}} objects, got {type(entries).__name__}")
        boxes, texts, tags = [], [], []
        for index, entry in enumerate(entries):
            reason = "entry is not an object with 'points'"
            if isinstance(entry, dict) and "points" in entry:
                reason = _valid_points(entry["points"])
            if isinstance(reason, str):
                self._warn_dropped(data, index, reason)
                continue
            text = entry.get("transcription", "")
            text = text if isinstance(text, str) else str(text)
            boxes.append(reason)
            texts.append(text)
            tags.append(text in IGNORED_TRANSCRIPTIONS)
        if not boxes:
            return None
        data["polys"] = self.expand_points_num(boxes)
        data["texts"] = texts
        data["ignore_tags"] = np.array(tags, dtype=bool)
        return data

    @staticmethod
    def expand_points_num(boxes):
        """Stack polygons into [N, K, 2], repeating each polygon's last point up to K points."""
        max_points = max(len(box) for box in boxes)
        out = np.empty((len(boxes), max_points, 2), dtype=np.float32)
        for i, box in enumerate(boxes):
            out[i, :len(box)] = box
            out[i, len(box):] = box[-1]
        return out

    def _warn_dropped(self, data, index, reason):
        where = data.get("source") or data.get("img_path") or "<label>"
        key = (where, index)
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(f"{where}: DetLabelEncode drops polygon {index}: {reason}")
