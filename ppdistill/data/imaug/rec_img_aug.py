"""Recognition image transforms: augmentation (RecAug, RecConAug) and resizing (RecResizeImg).

All work on a BGR ``uint8`` crop ``data["image"]`` of shape [H, W, 3] (RecResizeImg turns it into
the normalised CHW float32 network input). Randomness comes from ``numpy.random``. Only OpenCV
and numpy are used (no imgaug).
"""
import math

import cv2
import numpy as np

from ppdistill.registry import TRANSFORMS, ConfigError

DEFAULT_DICT_PATH = "ppdistill/utils/dict/ppocr_keys_v1.txt"


# ----------------------------------------------------------------------------- resizing
def _match_channels(img, channels):
    if channels == 1 and img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if channels == 3 and img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def _normalise_into(resized, channels, height, width):
    """``(x / 255 - 0.5) / 0.5`` in CHW, written into a zero canvas [C, height, width]."""
    resized = resized.astype(np.float32)
    chw = resized[np.newaxis, :, :] if resized.ndim == 2 else resized.transpose((2, 0, 1))
    chw = (chw / 255.0 - 0.5) / 0.5
    canvas = np.zeros((channels, height, width), dtype=np.float32)
    canvas[:, :, :chw.shape[2]] = chw
    return canvas


def resize_norm_img(img, image_shape, padding=True, interpolation=cv2.INTER_LINEAR):
    """Resize a text crop to the network input and normalise it to [-1, 1].

    ``image_shape = [C, H, W]``. With ``padding`` the crop is resized to height H keeping its
    aspect ratio, width ``min(W, ceil(H · w / h))``, and zero-padded on the right to W; without
    it is stretched to W. Returns ``(image CHW float32 [C, H, W], valid_ratio)`` with
    ``valid_ratio = min(1, resized_w / W)``. A grey crop is expanded to three channels (and a
    colour crop turned grey when C is 1).
    """
    channels, height, width = (int(v) for v in image_shape)
    img = _match_channels(img, channels)
    h, w = img.shape[:2]
    if padding:
        resized_w = min(width, int(math.ceil(height * w / float(h))))
        resized_w = max(resized_w, 1)
        resized = cv2.resize(img, (resized_w, height), interpolation=interpolation)
    else:
        resized_w = width
        resized = cv2.resize(img, (width, height), interpolation=interpolation)
    return _normalise_into(resized, channels, height, width), min(1.0, resized_w / float(width))


def resize_norm_img_chinese(img, image_shape):
    """Like :func:`resize_norm_img` with padding, but the canvas widens to the crop's aspect
    ratio when that exceeds W/H (PaddleOCR's eval/infer resize): width
    ``int(H · max(W/H, w/h))``."""
    channels, height, width = (int(v) for v in image_shape)
    img = _match_channels(img, channels)
    h, w = img.shape[:2]
    width = int(height * max(width / float(height), w / float(h)))
    resized_w = max(1, min(width, int(math.ceil(height * w / float(h)))))
    resized = cv2.resize(img, (resized_w, height))
    return _normalise_into(resized, channels, height, width), min(1.0, resized_w / float(width))


@TRANSFORMS.register()
class RecResizeImg:
    """Resize and normalise a recognition crop; writes ``image`` (CHW float32) and
    ``valid_ratio = min(1, resized_w / W)``.

    Training/eval use :func:`resize_norm_img` (fixed [C, H, W], right zero padding). With
    ``eval_mode``, or with ``infer_mode`` and a dictionary, the canvas widens for long crops
    (:func:`resize_norm_img_chinese`), as PaddleOCR does.

    Args:
        image_shape: ``[C, H, W]`` of the network input, e.g. ``[3, 48, 320]``.
        infer_mode: inference resizing (see above).
        eval_mode: widen the canvas for long crops.
        character_dict_path: only tested for None together with ``infer_mode`` (PaddleOCR's
            rule; filled from ``Global``).
        padding: keep the aspect ratio and pad (true) or stretch to W (false).

    YAML::

        - RecResizeImg:
            image_shape: [3, 48, 320]
    """

    def __init__(self, image_shape, infer_mode=False, eval_mode=False,
                 character_dict_path=DEFAULT_DICT_PATH, padding=True):
        if not isinstance(image_shape, (list, tuple)) or len(image_shape) != 3 or \
                any(int(v) < 1 for v in image_shape) or int(image_shape[0]) not in (1, 3):
            raise ConfigError(f"RecResizeImg: image_shape must be [C, H, W] with C 1 or 3, "
                              f"got {image_shape!r}")
        self.image_shape = [int(v) for v in image_shape]
        self.infer_mode = bool(infer_mode)
        self.eval_mode = bool(eval_mode)
        self.character_dict_path = character_dict_path
        self.padding = bool(padding)

    def __call__(self, data):
        img = data["image"]
        if self.eval_mode or (self.infer_mode and self.character_dict_path is not None):
            norm_img, valid_ratio = resize_norm_img_chinese(img, self.image_shape)
        else:
            norm_img, valid_ratio = resize_norm_img(img, self.image_shape, self.padding)
        data["image"] = norm_img
        data["valid_ratio"] = np.float32(valid_ratio)
        return data


# ----------------------------------------------------------------------------- concatenation
@TRANSFORMS.register()
class RecConAug:
    """With probability ``prob``, append extra samples to the right of the crop.

    The dataset loads ``ext_data_num`` extra samples (decoded, label still text) into
    ``data["ext_data"]``. Each is appended in turn while the joint text fits in
    ``max_text_length`` characters and the joint aspect ratio (sum of w/h) stays within
    ``W / H`` of ``image_shape``: both crops are resized to height H and concatenated
    horizontally, and the labels are concatenated. ``ext_data`` is removed from the sample.

    Args:
        prob: probability of concatenating.
        image_shape: ``[H, W, C]`` of the target (PaddleOCR's order for this op).
        max_text_length: longest joint text (from ``Global``).
        ext_data_num: number of extra samples the dataset should provide.

    YAML (right after DecodeImage)::

        - RecConAug:
            prob: 0.5
            ext_data_num: 2
            image_shape: [48, 320, 3]
            max_text_length: *max_text_length
    """

    def __init__(self, prob=0.5, image_shape=(32, 320, 3), max_text_length=25, ext_data_num=1):
        if not 0 <= float(prob) <= 1:
            raise ConfigError(f"RecConAug: prob must be in [0, 1], got {prob!r}")
        if not isinstance(image_shape, (list, tuple)) or len(image_shape) < 2:
            raise ConfigError(f"RecConAug: image_shape must be [H, W, C], got {image_shape!r}")
        self.prob = float(prob)
        self.image_shape = [int(v) for v in image_shape]
        self.max_text_length = int(max_text_length)
        self.ext_data_num = int(ext_data_num)
        self.max_wh_ratio = self.image_shape[1] / float(self.image_shape[0])

    def _merge(self, data, ext):
        height = self.image_shape[0]
        parts = []
        for img in (data["image"], ext["image"]):
            width = max(1, int(round(img.shape[1] / float(img.shape[0]) * height)))
            parts.append(cv2.resize(img, (width, height)))
        if parts[0].ndim != parts[1].ndim:
            parts = [p if p.ndim == 3 else cv2.cvtColor(p, cv2.COLOR_GRAY2BGR) for p in parts]
        data["image"] = np.concatenate(parts, axis=1)
        data["label"] = data["label"] + ext["label"]
        return data

    def __call__(self, data):
        extras = data.pop("ext_data", None) or []
        if np.random.rand() > self.prob:
            return data
        for ext in extras:
            if not isinstance(ext, dict) or "image" not in ext or \
                    not isinstance(ext.get("label"), str):
                continue
            if len(data["label"]) + len(ext["label"]) > self.max_text_length:
                break
            ratio = (data["image"].shape[1] / float(data["image"].shape[0])
                     + ext["image"].shape[1] / float(ext["image"].shape[0]))
            if ratio > self.max_wh_ratio:
                break
            data = self._merge(data, ext)
        return data


# ----------------------------------------------------------------------------- distortions
def _mesh_warp(img, top_shift, bottom_shift):
    """Warp by control columns spread evenly over the width.

    ``top_shift``/``bottom_shift`` are [N, 2] (dx, dy) offsets, in pixels, of the source points
    sampled at N evenly spaced columns of the top and bottom edge. Offsets are interpolated
    linearly along x, then between top and bottom; each output pixel samples the source at
    its own position plus the offset (border replicated).
    """
    h, w = img.shape[:2]
    xs = np.arange(w, dtype=np.float32)
    columns = np.linspace(0, w - 1, len(top_shift), dtype=np.float32)
    top = [np.interp(xs, columns, top_shift[:, k]) for k in (0, 1)]
    bottom = [np.interp(xs, columns, bottom_shift[:, k]) for k in (0, 1)]
    t = (np.arange(h, dtype=np.float32) / max(h - 1, 1))[:, None]
    map_x = xs[None, :] + top[0][None, :] * (1 - t) + bottom[0][None, :] * t
    map_y = np.arange(h, dtype=np.float32)[:, None] + top[1][None, :] * (1 - t) \
        + bottom[1][None, :] * t
    return cv2.remap(img, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def tia_distort(img, segments=4):
    """Local distortion: every control point of both edges moves randomly by up to a sixth of
    a segment's width in x and y (y at most h/4)."""
    h, w = img.shape[:2]
    limit_x = w / float(segments) / 6.0
    limit_y = min(limit_x, h / 4.0)
    shifts = [np.stack([np.random.uniform(-limit_x, limit_x, segments + 1),
                        np.random.uniform(-limit_y, limit_y, segments + 1)], axis=1)
              for _ in range(2)]
    for shift in shifts:  # keep the outer columns inside the crop
        shift[0, 0], shift[-1, 0] = abs(shift[0, 0]), -abs(shift[-1, 0])
    return _mesh_warp(img, shifts[0], shifts[1])


def tia_stretch(img, segments=4):
    """Stretch/squeeze segments horizontally: inner column boundaries move left or right."""
    h, w = img.shape[:2]
    limit = w / float(segments) * 0.4
    dx = np.random.uniform(-limit, limit, segments + 1)
    dx[0] = dx[-1] = 0.0
    shift = np.stack([dx, np.zeros(segments + 1)], axis=1)
    return _mesh_warp(img, shift, shift.copy())


def tia_perspective(img):
    """Perspective-like change: the four corners move inwards vertically by up to h/4."""
    h = img.shape[0]
    dy = np.random.uniform(0, h / 4.0, 4)
    top = np.array([[0.0, -dy[0]], [0.0, -dy[1]]])
    bottom = np.array([[0.0, dy[2]], [0.0, dy[3]]])
    return _mesh_warp(img, top, bottom)


def random_crop_rows(img, max_rows=8):
    """Cut 1..max_rows rows from the top or the bottom (never the whole crop)."""
    h = img.shape[0]
    rows = min(int(np.random.randint(1, max_rows + 1)), h - 1)
    return img[rows:] if np.random.rand() < 0.5 else img[:h - rows]


def hsv_jitter(img):
    """Scale brightness (HSV value) by a random factor in [0.7, 1.3]."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] * np.random.uniform(0.7, 1.3), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def motion_jitter(img):
    """Average the crop with copies of itself shifted diagonally by 1..s pixels."""
    h, w = img.shape[:2]
    steps = max(1, int(min(h, w) * 0.01))
    steps = int(np.random.randint(1, steps + 1))
    acc = img.astype(np.float32)
    for s in range(1, steps + 1):
        shifted = img.copy()
        shifted[s:, s:] = img[:h - s, :w - s]
        acc += shifted
    return np.clip(acc / (steps + 1), 0, 255).astype(np.uint8)


def gaussian_noise(img, std=8.0):
    """Add zero-mean Gaussian noise of standard deviation ``std`` grey levels."""
    noisy = img.astype(np.float32) + np.random.normal(0.0, std, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@TRANSFORMS.register()
class RecAug:
    """PP-OCR's recognition augmentation, each step applied with its own probability:

    1. ``tia_prob``: TIA warps: local distortion and segment stretch (crops of at least 20×20,
       3–6 segments), then a perspective-like corner shift;
    2. ``crop_prob``: cut 1–8 rows at the top or bottom (crops of at least 20×20);
    3. ``blur_prob``: 5×5 Gaussian blur (σ 1);
    4. ``hsv_aug_prob``: brightness scale in HSV;
    5. ``jitter_prob``: small diagonal motion blur;
    6. ``noise_prob``: Gaussian noise;
    7. ``reverse_prob``: colour inversion ``255 − x``.

    The crop stays ``uint8`` with its channels; only the row crop changes its height.
    Difference from PaddleOCR: the TIA warps are a piecewise-linear mesh warp (OpenCV remap)
    rather than moving-least-squares, with comparable strength.

    YAML::

        - RecAug:
            tia_prob: 0.4
    """

    def __init__(self, tia_prob=0.4, crop_prob=0.4, reverse_prob=0.4, noise_prob=0.4,
                 jitter_prob=0.4, blur_prob=0.4, hsv_aug_prob=0.4):
        probs = dict(tia_prob=tia_prob, crop_prob=crop_prob, reverse_prob=reverse_prob,
                     noise_prob=noise_prob, jitter_prob=jitter_prob, blur_prob=blur_prob,
                     hsv_aug_prob=hsv_aug_prob)
        for key, value in probs.items():
            if isinstance(value, bool) or not 0 <= float(value) <= 1:
                raise ConfigError(f"RecAug: {key} must be a probability in [0, 1], got {value!r}")
            setattr(self, key, float(value))

    @staticmethod
    def _hit(prob):
        return prob > 0 and np.random.rand() <= prob

    def __call__(self, data):
        img = data["image"]
        h, w = img.shape[:2]
        colour = img.ndim == 3 and img.shape[2] == 3
        if self._hit(self.tia_prob):
            if h >= 20 and w >= 20:
                img = tia_distort(img, int(np.random.randint(3, 7)))
                img = tia_stretch(img, int(np.random.randint(3, 7)))
            img = tia_perspective(img)
        if self._hit(self.crop_prob) and h >= 20 and w >= 20:
            img = random_crop_rows(img)
        if self._hit(self.blur_prob):
            img = cv2.GaussianBlur(img, (5, 5), 1)
        if self._hit(self.hsv_aug_prob) and colour:
            img = hsv_jitter(img)
        if self._hit(self.jitter_prob):
            img = motion_jitter(img)
        if self._hit(self.noise_prob):
            img = gaussian_noise(img)
        if self._hit(self.reverse_prob):
            img = 255 - img
        data["image"] = np.ascontiguousarray(img, dtype=np.uint8)
        return data
