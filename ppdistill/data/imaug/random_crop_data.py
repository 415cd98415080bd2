"""EastRandomCropData: a random crop that does not cut through text, resized to a fixed size."""
import cv2
import numpy as np

from ppdistill.registry import TRANSFORMS, ConfigError


def is_poly_outside_rect(poly, x, y, w, h):
    """True if ``poly`` [K, 2] lies entirely left/right/above/below the rectangle."""
    poly = np.asarray(poly)
    if poly[:, 0].max() < x or poly[:, 0].min() > x + w:
        return True
    return bool(poly[:, 1].max() < y or poly[:, 1].min() > y + h)


def split_regions(axis):
    """Split sorted integer coordinates into runs of consecutive values."""
    if len(axis) == 0:
        return []
    breaks = np.where(np.diff(axis) != 1)[0] + 1
    return np.split(axis, breaks)


def _random_span(free, regions, size):
    """Two random free coordinates (from two random runs when there are several), sorted."""
    if len(regions) > 1:
        chosen = np.random.choice(len(regions), 2)
        values = [int(np.random.choice(regions[i])) for i in chosen]
    else:
        values = [int(v) for v in np.random.choice(free, size=2)]
    low, high = min(values), max(values)
    return int(np.clip(low, 0, size - 1)), int(np.clip(high, 0, size - 1))


def crop_area(image, polys, min_crop_side_ratio, max_tries):
    """Pick a crop ``(x, y, w, h)`` whose borders cross no text and that contains some text.

    Rows and columns covered by a polygon's bounding box are not allowed as crop borders; up to
    ``max_tries`` random crops are drawn; the whole image is returned when none qualifies.
    """
    h, w = image.shape[:2]
    rows_taken = np.zeros(h, dtype=bool)
    cols_taken = np.zeros(w, dtype=bool)
    for points in polys:
        points = np.round(np.asarray(points)).astype(np.int64)
        cols_taken[np.clip(points[:, 0].min(), 0, w):np.clip(points[:, 0].max(), 0, w)] = True
        rows_taken[np.clip(points[:, 1].min(), 0, h):np.clip(points[:, 1].max(), 0, h)] = True
    free_rows, free_cols = np.where(~rows_taken)[0], np.where(~cols_taken)[0]
    if len(free_rows) == 0 or len(free_cols) == 0:
        return 0, 0, w, h
    row_regions, col_regions = split_regions(free_rows), split_regions(free_cols)
    for _ in range(max_tries):
        xmin, xmax = _random_span(free_cols, col_regions, w)
        ymin, ymax = _random_span(free_rows, row_regions, h)
        if xmax - xmin < max(min_crop_side_ratio * w, 1) or \
                ymax - ymin < max(min_crop_side_ratio * h, 1):
            continue
        if any(not is_poly_outside_rect(p, xmin, ymin, xmax - xmin, ymax - ymin) for p in polys):
            return xmin, ymin, xmax - xmin, ymax - ymin
    return 0, 0, w, h


@TRANSFORMS.register()
class EastRandomCropData:
    """Randomly crop a region that contains text and whose borders cut no (cared-for) text,
    then resize it to ``size = [width, height]``.

    With ``keep_ratio`` the crop is scaled by ``s = min(W / crop_w, H / crop_h)`` and pasted at
    the top-left of a zero image of the target size; otherwise it is stretched to the size.
    Polygons are mapped with the same transform; those entirely outside the resized crop are
    removed together with their ``texts`` and ``ignore_tags`` (the rest are kept unclipped).

    Args:
        size: ``[width, height]`` of the output.
        max_tries: random crops tried before falling back to the whole image.
        min_crop_side_ratio: minimum crop side as a fraction of the image side.
        keep_ratio: keep the aspect ratio (pad) or stretch.

    Differences from PaddleOCR: the last run of free rows/columns is also a candidate region
    (PaddleOCR's region split drops it), and with ``keep_ratio: false`` polygons are scaled per
    axis like the image (PaddleOCR scales them by the single keep-ratio factor).

    YAML::

        - EastRandomCropData:
            size: [960, 960]
            max_tries: 50
            keep_ratio: true
    """

    def __init__(self, size=(640, 640), max_tries=10, min_crop_side_ratio=0.1, keep_ratio=True):
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"EastRandomCropData: size must be [width, height] > 0, got {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.max_tries = int(max_tries)
        self.min_crop_side_ratio = float(min_crop_side_ratio)
        self.keep_ratio = bool(keep_ratio)

    def __call__(self, data):
        img = data["image"]
        polys = np.asarray(data["polys"], dtype=np.float32)
        tags = np.asarray(data["ignore_tags"], dtype=bool).reshape(-1)
        texts = list(data.get("texts", [""] * len(tags)))
        care = [polys[i] for i in range(len(tags)) if not tags[i]]
        x, y, cw, ch = crop_area(img, care, self.min_crop_side_ratio, self.max_tries)
        crop = img[y:y + ch, x:x + cw]
        target_w, target_h = self.size
        if self.keep_ratio:
            scale = min(target_w / cw, target_h / ch)
            scale_x = scale_y = scale
            new_w, new_h = max(int(cw * scale), 1), max(int(ch * scale), 1)
            out = np.zeros((target_h, target_w) + img.shape[2:], img.dtype)
            resized = cv2.resize(crop, (new_w, new_h))
            out[:new_h, :new_w] = resized.reshape(out[:new_h, :new_w].shape)
        else:
            scale_x, scale_y = target_w / cw, target_h / ch
            new_w, new_h = target_w, target_h
            out = cv2.resize(crop, (target_w, target_h))
            out = out.reshape((target_h, target_w) + img.shape[2:])
        keep = []
        if len(polys):
            moved = (polys - np.array([x, y], dtype=np.float32)) * np.array([scale_x, scale_y],
                                                                              dtype=np.float32)
            keep = [i for i in range(len(moved))
                    if not is_poly_outside_rect(moved[i], 0, 0, new_w, new_h)]
            polys = moved[keep] if keep else moved[:0]
        data["image"] = out
        data["polys"] = polys
        data["ignore_tags"] = tags[keep] if len(tags) else tags
        data["texts"] = [texts[i] for i in keep]
        return data
