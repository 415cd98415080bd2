"""Basic image operators: decode, normalize, HWC->CHW, key selection and test-time resize."""
import math

import cv2
import numpy as np

from ppdistill.registry import TRANSFORMS, ConfigError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def parse_scale(value, path="NormalizeImage.scale"):
    """A number, or PaddleOCR's string forms ``"0.00392"`` / ``"1./255."`` parsed without ``eval``.

    Only a float literal or a fraction ``a/b`` of two float literals is accepted; anything else
    (and a non-finite or zero-denominator value) raises :class:`ConfigError`.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a number or a fraction like '1./255.', got {value!r}")
    if isinstance(value, (int, float, np.number)):
        result = float(value)
    elif isinstance(value, str):
        parts = value.split("/")
        try:
            if len(parts) == 1:
                result = float(parts[0])
            elif len(parts) == 2:
                denominator = float(parts[1])
                if denominator == 0:
                    raise ConfigError(f"{path}: division by zero in {value!r}")
                result = float(parts[0]) / denominator
            else:
                raise ValueError(value)
        except ValueError:
            raise ConfigError(f"{path}: expected a number or a fraction like '1./255.', "
                              f"got {value!r}") from None
    else:
        raise ConfigError(f"{path}: expected a number or a fraction like '1./255.', got {value!r}")
    if not math.isfinite(result):
        raise ConfigError(f"{path}: the scale must be finite, got {value!r}")
    return result


@TRANSFORMS.register()
class DecodeImage:
    """Decode the encoded image bytes in ``data["image"]`` into a ``uint8`` array [H, W, 3].

    Args:
        img_mode: ``"BGR"`` (OpenCV order), ``"RGB"`` or ``"GRAY"`` (grey values repeated in the
            three channels, so the rest of the pipeline still sees three channels).
        channel_first: return [3, H, W] instead of [H, W, 3].
        ignore_orientation: ignore the EXIF orientation tag when decoding.

    Bytes that are empty or not an image raise ``ValueError`` (the dataset skips the sample with
    a warning naming the label line).

    Difference from PaddleOCR: ``GRAY`` converts to grey (PaddleOCR's GRAY branch fails on a
    colour-decoded image).

    YAML::

        - DecodeImage:
            img_mode: BGR
            channel_first: false
    """

    MODES = ("BGR", "RGB", "GRAY")

    def __init__(self, img_mode="RGB", channel_first=False, ignore_orientation=False):
        if img_mode not in self.MODES:
            raise ConfigError(f"DecodeImage: img_mode must be one of {self.MODES}, "
                              f"got {img_mode!r}")
        self.img_mode = img_mode
        self.channel_first = bool(channel_first)
        self.ignore_orientation = bool(ignore_orientation)

    def __call__(self, data):
        raw = data["image"]
        if not isinstance(raw, (bytes, bytearray)) or len(raw) == 0:
            size = len(raw) if hasattr(raw, "__len__") else "?"
            raise ValueError("DecodeImage: expected non-empty encoded image bytes, got "
                             f"{type(raw).__name__} of length {size}")
        flags = cv2.IMREAD_COLOR
        if self.ignore_orientation:
            flags |= cv2.IMREAD_IGNORE_ORIENTATION
        img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), flags)
        if img is None:
            raise ValueError("DecodeImage: the bytes are not a decodable image")
        if self.img_mode == "RGB":
            img = np.ascontiguousarray(img[:, :, ::-1])
        elif self.img_mode == "GRAY":
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        if self.channel_first:
            img = img.transpose((2, 0, 1))
        data["image"] = img
        return data


@TRANSFORMS.register()
class NormalizeImage:
    """``image = (image · scale − mean) / std`` as float32, per channel.

    Args:
        scale: a number or a fraction string such as ``"1./255."`` (default 1/255).
        mean, std: per-channel values (default ImageNet's).
        order: ``"hwc"`` when the image is [H, W, C], ``"chw"`` when it is [C, H, W].

    YAML::

        - NormalizeImage:
            scale: 1./255.
            mean: [0.485, 0.456, 0.406]
            std: [0.229, 0.224, 0.225]
            order: hwc
    """

    def __init__(self, scale=None, mean=None, std=None, order="chw"):
        if order not in ("chw", "hwc"):
            raise ConfigError(f"NormalizeImage: order must be 'chw' or 'hwc', got {order!r}")
        self.scale = np.float32(parse_scale(scale) if scale is not None else 1.0 / 255.0)
        mean = IMAGENET_MEAN if mean is None else mean
        std = IMAGENET_STD if std is None else std
        if len(mean) != len(std):
            raise ConfigError(f"NormalizeImage: mean {mean} and std {std} differ in length")
        if any(float(s) == 0 for s in std):
            raise ConfigError(f"NormalizeImage: std must not contain 0, got {std}")
        shape = (-1, 1, 1) if order == "chw" else (1, 1, -1)
        self.mean = np.array(mean, dtype=np.float32).reshape(shape)
        self.std = np.array(std, dtype=np.float32).reshape(shape)

    def __call__(self, data):
        img = np.asarray(data["image"])
        data["image"] = (img.astype(np.float32) * self.scale - self.mean) / self.std
        return data


@TRANSFORMS.register()
class ToCHWImage:
    """Transpose ``image`` from [H, W, C] to [C, H, W].

    YAML: ``- ToCHWImage:``
    """

    def __call__(self, data):
        data["image"] = np.asarray(data["image"]).transpose((2, 0, 1))
        return data


@TRANSFORMS.register()
class KeepKeys:
    """Return the list ``[data[k] for k in keep_keys]``: the batch order the loss relies on.

    YAML (det training)::

        - KeepKeys:
            keep_keys: [image, threshold_map, threshold_mask, shrink_map, shrink_mask]
    """

    def __init__(self, keep_keys):
        if isinstance(keep_keys, str) or not keep_keys:
            raise ConfigError(f"KeepKeys: keep_keys must be a non-empty list, got {keep_keys!r}")
        self.keep_keys = list(keep_keys)

    def __call__(self, data):
        missing = [key for key in self.keep_keys if key not in data]
        if missing:
            raise ValueError(f"KeepKeys: the sample has no key(s) {missing}; available: "
                             f"{sorted(data)} (is an earlier transform missing?)")
        return [data[key] for key in self.keep_keys]


@TRANSFORMS.register()
class DetResizeForTest:
    """Resize a detection image for evaluation/inference; sides become multiples of 32.

    Modes (the first that applies):
      * ``image_shape: [h, w]``: resize to exactly (h, w); with ``keep_ratio`` the width is
        ``ceil(w_src · h / h_src / 32) · 32`` instead.
      * ``resize_long: L``: scale the long side to L, round both sides *up* to multiples of 128.
      * ``limit_side_len`` / ``limit_type``: ``"min"`` scales up so the short side is at least
        ``limit_side_len``; ``"max"`` scales down so the long side is at most ``limit_side_len``;
        ``"resize_long"`` scales the long side to ``limit_side_len``. Each side is then rounded
        to the nearest multiple of 32 (at least 32).

    Images with ``h + w < 64`` are first zero-padded to at least 32×32 (bottom/right).
    Writes ``shape = [src_h, src_w, ratio_h, ratio_w]`` (float), the ratios being
    ``resized / source`` per axis, which the DB post-process uses to map boxes back.

    YAML::

        - DetResizeForTest:
            limit_side_len: 960
            limit_type: max
    """

    LIMIT_TYPES = ("min", "max", "resize_long")

    def __init__(self, limit_side_len=736, limit_type="min", resize_long=None, image_shape=None,
                 keep_ratio=False):
        if limit_type not in self.LIMIT_TYPES:
            raise ConfigError(f"DetResizeForTest: limit_type must be one of {self.LIMIT_TYPES}, "
                              f"got {limit_type!r}")
        if image_shape is not None and len(image_shape) != 2:
            raise ConfigError(f"DetResizeForTest: image_shape must be [h, w], got {image_shape!r}")
        self.limit_side_len = float(limit_side_len)
        self.limit_type = limit_type
        self.resize_long = resize_long
        self.image_shape = image_shape
        self.keep_ratio = bool(keep_ratio)

    def __call__(self, data):
        img = data["image"]
        src_h, src_w = img.shape[:2]
        if src_h + src_w < 64:
            padded = np.zeros((max(32, src_h), max(32, src_w)) + img.shape[2:], img.dtype)
            padded[:src_h, :src_w] = img
            img = padded
        if self.image_shape is not None:
            resize_h, resize_w = self._fixed_shape(img)
        elif self.resize_long is not None:
            resize_h, resize_w = self._long_side(img)
        else:
            resize_h, resize_w = self._limited(img)
        h, w = img.shape[:2]
        data["image"] = cv2.resize(img, (int(resize_w), int(resize_h)))
        data["shape"] = np.array([src_h, src_w, resize_h / float(h), resize_w / float(w)])
        return data

    def _fixed_shape(self, img):
        resize_h, resize_w = (int(v) for v in self.image_shape)
        if self.keep_ratio:
            h, w = img.shape[:2]
            resize_w = int(math.ceil(w * resize_h / h / 32) * 32)
        return resize_h, resize_w

    def _long_side(self, img):
        h, w = img.shape[:2]
        ratio = float(self.resize_long) / max(h, w)
        stride = 128
        resize_h = (int(h * ratio) + stride - 1) // stride * stride
        resize_w = (int(w * ratio) + stride - 1) // stride * stride
        return resize_h, resize_w

    def _limited(self, img):
        h, w = img.shape[:2]
        limit = self.limit_side_len
        if self.limit_type == "max":
            ratio = limit / max(h, w) if max(h, w) > limit else 1.0
        elif self.limit_type == "min":
            ratio = limit / min(h, w) if min(h, w) < limit else 1.0
        else:
            ratio = limit / max(h, w)
        resize_h = max(int(round(int(h * ratio) / 32) * 32), 32)
        resize_w = max(int(round(int(w * ratio) / 32) * 32), 32)
        return resize_h, resize_w
