"""CopyPaste: paste text regions cut from another training sample into the image."""
import cv2
import numpy as np
from shapely.geometry import Polygon

from ppdistill.registry import TRANSFORMS, ConfigError


def rotate_crop_image(image, points):
    """Perspective-crop the quadrilateral ``points`` [4, 2] (clockwise from top-left) into an
    upright patch; patches at least 1.5 times taller than wide are turned by 90°.
    Returns None for a degenerate quadrilateral."""
    points = np.asarray(points, dtype=np.float32)
    width = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    height = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    if width < 1 or height < 1:
        return None
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(points, target)
    patch = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE,
                                flags=cv2.INTER_CUBIC)
    if patch.shape[0] >= 1.5 * patch.shape[1]:
        patch = np.ascontiguousarray(np.rot90(patch))
    return patch


def rotate_patch(patch, angle):
    """Rotate ``patch`` by ``angle`` degrees on an enlarged canvas.

    Returns ``(rotated, alpha, box)``: the rotated patch, its coverage in [0, 1] (float32
    [h, w]) and the patch's four corners [4, 2] in the rotated canvas.
    """
    h, w = patch.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    matrix[0, 2] += new_w / 2.0 - w / 2.0
    matrix[1, 2] += new_h / 2.0 - h / 2.0
    rotated = cv2.warpAffine(patch, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.warpAffine(np.ones((h, w), np.float32), matrix, (new_w, new_h),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    corners = np.float64([[0, 0], [w, 0], [w, h], [0, h]])
    box = corners @ matrix[:, :2].T + matrix[:, 2]
    return rotated.reshape((new_h, new_w) + patch.shape[2:]), alpha, box


def _shape(points):
    polygon = Polygon(np.asarray(points, dtype=np.float64))
    return polygon if polygon.is_valid else polygon.buffer(0)


def _pad_points(polys, point_num):
    """Pad [N, K, 2] polygons to ``point_num`` points by repeating each last point."""
    if polys.shape[1] >= point_num:
        return polys
    pad = np.repeat(polys[:, -1:], point_num - polys.shape[1], axis=1)
    return np.concatenate([polys, pad], axis=1)


@TRANSFORMS.register()
class CopyPaste:
    """Copy text regions of an extra sample (``data["ext_data"][0]``) into the image.

    ``max(1, min(int(objects_paste_ratio · N_ext), 30))`` of the extra sample's cared-for boxes
    are cut out (perspective crop of the first four points), rotated by a random angle in
    [0, 360) and pasted at a random place; with ``limit_paste`` the place is retried (up to 50
    times) until the pasted box overlaps no existing polygon (shapely intersection), otherwise
    the box is dropped. Pasted boxes are appended to ``polys``/``texts``/``ignore_tags``;
    finally every polygon is clipped to the image.

    The dataset provides ``ext_data`` because this op has ``ext_data_num = 1``: it loads one
    extra sample through the first ``ext_op_transform_idx`` transforms (DecodeImage,
    DetLabelEncode) and keeps only samples whose polygons have 4 points.

    Args:
        objects_paste_ratio: fraction of the extra sample's boxes to paste.
        limit_paste: avoid overlapping existing text.

    YAML (after DetLabelEncode)::

        - CopyPaste:
            objects_paste_ratio: 0.2
            limit_paste: true
    """

    MAX_PASTE = 30
    MAX_TRIES = 50

    def __init__(self, objects_paste_ratio=0.2, limit_paste=True):
        if not 0 <= float(objects_paste_ratio) <= 1:
            raise ConfigError(f"CopyPaste: objects_paste_ratio must be in [0, 1], got "
                              f"{objects_paste_ratio!r}")
        self.ext_data_num = 1
        self.objects_paste_ratio = float(objects_paste_ratio)
        self.limit_paste = bool(limit_paste)

    def __call__(self, data):
        extras = data.get("ext_data") or []
        if not extras or "polys" not in extras[0]:
            return data
        ext = extras[0]
        ext_polys = np.asarray(ext["polys"], dtype=np.float32)
        ext_tags = np.asarray(ext["ignore_tags"], dtype=bool).reshape(-1)
        candidates = [i for i in range(len(ext_tags)) if not ext_tags[i]]
        if not candidates or ext_polys.ndim != 3 or ext_polys.shape[1] < 4:
            return data
        np.random.shuffle(candidates)
        count = max(1, min(int(self.objects_paste_ratio * len(ext_polys)), self.MAX_PASTE))

        image = data["image"].copy()
        polys = np.asarray(data["polys"], dtype=np.float32)
        if polys.ndim != 3:
            polys = polys.reshape(0, 4, 2)
        point_num = max(polys.shape[1], 4)
        polys = _pad_points(polys, point_num)
        texts = list(data.get("texts", [""] * len(polys)))
        tags = list(np.asarray(data["ignore_tags"], dtype=bool).reshape(-1))
        occupied = [_shape(p) for p in polys]
        new_boxes = []
        for i in candidates[:count]:
            patch = rotate_crop_image(ext["image"], ext_polys[i][:4])
            if patch is None:
                continue
            box = self._paste(image, patch, occupied)
            if box is None:
                continue
            new_boxes.append(box)
            texts.append(ext["texts"][i] if "texts" in ext else "")
            tags.append(False)
        if new_boxes:
            added = _pad_points(np.asarray(new_boxes, dtype=np.float32), point_num)
            polys = np.concatenate([polys, added], axis=0)
        h, w = image.shape[:2]
        polys[..., 0] = np.clip(polys[..., 0], 0, w)
        polys[..., 1] = np.clip(polys[..., 1], 0, h)
        data["image"] = image
        data["polys"] = polys
        data["texts"] = texts
        data["ignore_tags"] = np.array(tags, dtype=bool)
        return data

    def _paste(self, image, patch, occupied):
        """Blend a randomly rotated ``patch`` into ``image`` in place; return its box or None."""
        rotated, alpha, box = rotate_patch(patch, float(np.random.randint(0, 360)))
        ph, pw = rotated.shape[:2]
        h, w = image.shape[:2]
        if pw > w or ph > h:
            return None
        place = self._choose_place(box, w - pw, h - ph, occupied)
        if place is None:
            return None
        x, y = place
        region = image[y:y + ph, x:x + pw]
        weight = alpha.reshape(alpha.shape + (1,) * (region.ndim - 2))
        blended = weight * rotated.astype(np.float32) + (1.0 - weight) * region.astype(np.float32)
        region[...] = np.clip(np.round(blended), 0, 255).astype(image.dtype)
        box = box + np.array([x, y], dtype=np.float64)
        occupied.append(_shape(box))
        return box

    def _choose_place(self, box, max_x, max_y, occupied):
        if not self.limit_paste:
            return np.random.randint(0, max_x + 1), np.random.randint(0, max_y + 1)
        for _ in range(self.MAX_TRIES):
            x, y = np.random.randint(0, max_x + 1), np.random.randint(0, max_y + 1)
            candidate = _shape(box + np.array([x, y], dtype=np.float64))
            if not any(candidate.intersects(other) for other in occupied):
                return x, y
        return None
