"""Seeded degradations that turn clean rendered pages into something like scans or phone photos.

``degrade_to_jpeg(image, level, seed, polygons)`` applies, in order: a slight perspective tilt and
rotation (polygons follow it), uneven lighting, lower contrast with a paper tint, blur, sensor
noise and JPEG compression (its result is the JPEG file). ``level`` 1 (mild), 2 (medium) and
3 (strong) scale every effect; ``degrade()`` returns the decoded image (level 0: unchanged).
The same ``(image, level, seed)`` always gives the same bytes: all randomness comes from one
``numpy.random.RandomState(seed)``.

``item_seed(seed, name)`` derives a per-file seed from the run seed and a file name, so one
file's degradation does not depend on which other files were made.
"""
import zlib

import cv2
import numpy as np

MAX_LEVEL = 3


def item_seed(seed, name):
    """A 32-bit seed for file ``name`` under run seed ``seed``."""
    return zlib.crc32(f"{int(seed)}:{name}".encode("utf-8")) & 0xFFFFFFFF


def _perspective(rng, image, level, polygons):
    height, width = image.shape[:2]
    angle = np.deg2rad(rng.uniform(-0.6, 0.6) * level)
    jitter = 0.012 * level * min(height, width)
    src = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    centre = np.float32([width / 2.0, height / 2.0])
    rotation = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (src - centre) @ rotation.T + centre
    dst += rng.uniform(-jitter, jitter, size=(4, 2)).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    border = tuple(int(v) for v in np.median(image.reshape(-1, 3), axis=0))
    warped = cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    moved = None
    if polygons is not None:
        moved = [cv2.perspectiveTransform(np.float32(p).reshape(1, -1, 2), matrix).reshape(-1, 2)
                 for p in polygons]
    return warped, moved


def _lighting(rng, image, level):
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(-0.2, 1.2) * width, rng.uniform(-0.2, 1.2) * height
    radius = rng.uniform(0.6, 1.4) * max(height, width)
    falloff = np.clip(np.hypot(xs - cx, ys - cy) / radius, 0.0, 1.0)
    shade = 1.0 - rng.uniform(0.10, 0.17) * level * falloff
    return image.astype(np.float32) * shade[:, :, None]


def _contrast(rng, image, level):
    factor = 1.0 - rng.uniform(0.10, 0.18) * level
    tint = np.float32([rng.uniform(-12, 0), rng.uniform(-6, 4), rng.uniform(-2, 6)]) * level / 3
    mean = image.mean()
    return (image - mean) * factor + mean + tint - rng.uniform(0, 10) * level


def _blur(rng, image, level):
    if rng.rand() < 0.5:
        sigma = rng.uniform(0.35, 0.55) * level
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    length = 1 + 2 * int(rng.randint(1, level + 1))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    centre = (length / 2.0 - 0.5, length / 2.0 - 0.5)
    rotation = cv2.getRotationMatrix2D(centre, float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))


def degrade_to_jpeg(image, level, seed, polygons=None):
    """Degrade uint8 BGR ``image`` (``level`` 1..3); return ``(jpeg_bytes, polygons)``: the
    JPEG stream that is the last step, and ``polygons`` (a list of ``[n, 2]`` point arrays in
    pixels, or None) moved with the geometric part."""
    level = int(level)
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"degradation level must be 1..{MAX_LEVEL}, got {level}")
    rng = np.random.RandomState(seed)
    out, polygons = _perspective(rng, image, level, polygons)
    out = _lighting(rng, out, level)
    out = _contrast(rng, out, level)
    out = _blur(rng, np.clip(out, 0, 255).astype(np.float32), level)
    out = out + rng.normal(0.0, 2.5 * level, size=out.shape).astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    quality = int(90 - 20 * level + rng.randint(0, 10))
    ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes(), polygons


def degrade(image, level, seed, polygons=None):
    """Like ``degrade_to_jpeg`` but returns the decoded image; ``level`` 0 returns a copy."""
    if int(level) == 0:
        return image.copy(), None if polygons is None else [np.float32(p) for p in polygons]
    data, polygons = degrade_to_jpeg(image, level, seed, polygons)
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), polygons
