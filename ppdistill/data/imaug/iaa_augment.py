"""IaaAugment: PaddleOCR's imgaug-configured augmentation, re-implemented with OpenCV/numpy.

Only the augmenters PaddleOCR's detection configs use are provided (``Fliplr``, ``Affine`` with
``rotate``, ``Resize`` with ``size``); each transforms the image and the text polygons together.
"""
import cv2
import numpy as np

from ppdistill.registry import TRANSFORMS, ConfigError, check_keys, suggest


def _sampler(value, name):
    """A function returning a sample: uniform in [a, b] for a pair, the constant otherwise."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"{name}: expected a number or a [low, high] pair, got {value!r}")
        low, high = float(value[0]), float(value[1])
        if low > high:
            raise ConfigError(f"{name}: low {low} > high {high}")
        return lambda: float(np.random.uniform(low, high))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number or a [low, high] pair, got {value!r}")
    return lambda: float(value)


class Fliplr:
    """Mirror left-right with probability ``p``; x becomes ``width − x``."""

    def __init__(self, p=0.5):
        if not 0 <= float(p) <= 1:
            raise ConfigError(f"Fliplr: p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, image, polys):
        if np.random.rand() >= self.p:
            return image, polys
        polys = polys.copy()
        polys[..., 0] = image.shape[1] - polys[..., 0]
        return np.ascontiguousarray(image[:, ::-1]), polys


class Affine:
    """Rotate by an angle (degrees, uniform in ``rotate`` if it is a pair) about the image
    centre, keeping the image size (corners are cut off, the border is filled with 0)."""

    def __init__(self, rotate=0.0):
        self.sample_angle = _sampler(rotate, "Affine.rotate")

    def __call__(self, image, polys):
        angle = self.sample_angle()
        if angle == 0:
            return image, polys
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
        rotated = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        points = polys.reshape(-1, 2).astype(np.float64)
        points = points @ matrix[:, :2].T + matrix[:, 2]
        return rotated.reshape(image.shape), points.reshape(polys.shape).astype(polys.dtype)


class Resize:
    """Scale both sides by one factor (uniform in ``size`` if it is a pair); cubic
    interpolation; points are scaled by the realised per-axis factors."""

    def __init__(self, size=1.0):
        self.sample_scale = _sampler(size, "Resize.size")

    def __call__(self, image, polys):
        scale = self.sample_scale()
        if scale <= 0:
            raise ValueError(f"Resize: the scale must be positive, got {scale}")
        h, w = image.shape[:2]
        new_h, new_w = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
        polys = polys.copy()
        polys[..., 0] *= new_w / w
        polys[..., 1] *= new_h / h
        return resized.reshape((new_h, new_w) + image.shape[2:]), polys


AUGMENTERS = {"Fliplr": Fliplr, "Affine": Affine, "Resize": Resize}

DEFAULT_AUGMENTER_ARGS = [
    {"type": "Fliplr", "args": {"p": 0.5}},
    {"type": "Affine", "args": {"rotate": [-10, 10]}},
    {"type": "Resize", "args": {"size": [0.5, 3]}},
]


def build_augmenters(augmenter_args, path="IaaAugment.augmenter_args"):
    """Build ``[{"type": Name, "args": {...}}, ...]`` into augmenter objects (applied in order)."""
    if not isinstance(augmenter_args, (list, tuple)):
        raise ConfigError(f"{path}: expected a list of {{type, args}} mappings, got "
                          f"{augmenter_args!r}")
    augmenters = []
    for i, entry in enumerate(augmenter_args):
        where = f"{path}[{i}]"
        if not isinstance(entry, dict) or "type" not in entry:
            raise ConfigError(f"{where}: expected a mapping with 'type' (and 'args'), "
                              f"got {entry!r}")
        extra = set(entry) - {"type", "args"}
        if extra:
            key = sorted(extra)[0]
            raise ConfigError(f"{where}: unexpected key '{key}'{suggest(key, ['type', 'args'])}")
        name = entry["type"]
        if name not in AUGMENTERS:
            raise ConfigError(f"{where}: unknown augmenter {name!r}{suggest(name, AUGMENTERS)} "
                              f"(available without imgaug: {', '.join(AUGMENTERS)})")
        args = dict(entry.get("args") or {})
        check_keys(AUGMENTERS[name], args, f"{where}.args")
        augmenters.append(AUGMENTERS[name](**args))
    return augmenters


@TRANSFORMS.register()
class IaaAugment:
    """Apply a sequence of augmenters to ``image`` and ``polys`` (same random draw for both).

    ``augmenter_args`` uses PaddleOCR's imgaug notation, ``{type: Name, args: {...}}``; a pair
    ``[a, b]`` means "uniform in [a, b]" and a number a constant:

    * ``Fliplr: {p}``: horizontal flip with probability p (x → width − x);
    * ``Affine: {rotate}``: rotation in degrees about the centre, same output size;
    * ``Resize: {size}``: one scale factor for both sides.

    Default (PaddleOCR's): Fliplr 0.5, Affine rotate [-10, 10], Resize size [0.5, 3].
    Polygons are transformed, not clipped (the random crop that follows handles that).

    Difference from PaddleOCR: no imgaug dependency; other imgaug augmenters are rejected with a
    ConfigError instead of being accepted.

    YAML::

        - IaaAugment:
            augmenter_args:
              - {type: Fliplr, args: {p: 0.5}}
              - {type: Affine, args: {rotate: [-10, 10]}}
              - {type: Resize, args: {size: [0.5, 3]}}
    """

    def __init__(self, augmenter_args=None):
        if augmenter_args is None:
            augmenter_args = DEFAULT_AUGMENTER_ARGS
        self.augmenters = build_augmenters(augmenter_args)

    def __call__(self, data):
        image = data["image"]
        polys = np.asarray(data.get("polys", np.zeros((0, 4, 2))), dtype=np.float32)
        if polys.size == 0:
            polys = polys.reshape(0, 1, 2)
        for augmenter in self.augmenters:
            image, polys = augmenter(image, polys)
        data["image"] = image
        if "polys" in data:
            data["polys"] = polys
        return data
