"""A synthetic ICDAR2015-style text-detection data set: rendered words on varied backgrounds.

``make_det_dataset()`` writes::

    <root>/ch4_training_images/img_1.jpg ...    <root>/train_icdar2015_label.txt
    <root>/ch4_test_images/img_1.jpg ...        <root>/test_icdar2015_label.txt

with label lines ``ch4_training_images/img_1.jpg<TAB>[{"transcription": ..., "points": ...}]``
(paths relative to ``root``, which is the configs' ``data_dir``), so the detection configs run
unchanged on it.
"""
import json
import os

import cv2
import numpy as np
from tqdm import tqdm

FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX_SMALL)
WORDS = ("STOP", "OPEN", "SALE", "EXIT", "Hotel", "CAFE", "bank", "taxi", "Paddle", "OCR",
         "distill", "student", "teacher", "PUSH", "PULL", "Parking", "2024", "No.17", "police",
         "market", "Station", "free", "WiFi", "menu", "Tea", "Coffee", "SHOP", "Road", "open24h")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
TRAIN_DIR, TEST_DIR = "ch4_training_images", "ch4_test_images"
TRAIN_LABEL, TEST_LABEL = "train_icdar2015_label.txt", "test_icdar2015_label.txt"


def _background(rng, height, width):
    """A flat, gradient, noisy or line-covered background (uint8 BGR)."""
    kind = rng.randint(4)
    base = rng.randint(0, 256, size=3).astype(np.float32)
    if kind == 0:
        image = np.ones((height, width, 3), np.float32) * base
    elif kind == 1:
        other = rng.randint(0, 256, size=3).astype(np.float32)
        ramp = (np.linspace(0, 1, width)[None, :, None] if rng.rand() < 0.5
                else np.linspace(0, 1, height)[:, None, None])
        image = np.broadcast_to(base * (1 - ramp) + other * ramp, (height, width, 3)).copy()
    elif kind == 2:
        image = base + rng.normal(0, 25, size=(height, width, 3))
    else:
        image = np.ones((height, width, 3), np.float32) * base
        for _ in range(rng.randint(3, 12)):
            p1 = (int(rng.randint(width)), int(rng.randint(height)))
            p2 = (int(rng.randint(width)), int(rng.randint(height)))
            colour = tuple(int(c) for c in rng.randint(0, 256, size=3))
            cv2.line(image, p1, p2, colour, int(rng.randint(1, 4)))
    return np.clip(image, 0, 255).astype(np.uint8)


def _text_colour(rng, background_patch):
    """A colour whose brightness differs clearly from the background under the word."""
    mean = background_patch.reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.randint(0, 256, size=3)
        if abs(colour.mean() - mean.mean()) > 90:
            return tuple(int(c) for c in colour)
    return (0, 0, 0) if mean.mean() > 127 else (255, 255, 255)


def _word(rng):
    if rng.rand() < 0.6:
        return WORDS[rng.randint(len(WORDS))]
    return "".join(ALPHABET[i] for i in rng.randint(len(ALPHABET), size=rng.randint(2, 9)))


def _render_word(rng, text, max_angle, max_scale):
    """Render ``text`` on a mask, maybe rotated; return (mask uint8 [h, w], box [4, 2])."""
    font = FONTS[rng.randint(len(FONTS))]
    scale = float(rng.uniform(0.35 * max_scale, max_scale))
    thickness = int(rng.randint(1, 4))
    (tw, th), baseline = cv2.getTextSize(text, font, scale, thickness)
    pad = 4 + thickness
    mask = np.zeros((th + baseline + 2 * pad, tw + 2 * pad), np.uint8)
    cv2.putText(mask, text, (pad, pad + th), font, scale, 255, thickness, cv2.LINE_AA)
    box = np.float64([[pad - 1, pad - 2], [pad + tw + 1, pad - 2],
                      [pad + tw + 1, pad + th + baseline], [pad - 1, pad + th + baseline]])
    angle = float(rng.uniform(-max_angle, max_angle)) if rng.rand() < 0.35 else 0.0
    if angle:
        h, w = mask.shape
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
        matrix[0, 2] += (new_w - w) / 2.0
        matrix[1, 2] += (new_h - h) / 2.0
        mask = cv2.warpAffine(mask, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR)
        box = box @ matrix[:, :2].T + matrix[:, 2]
    return mask, box


def render_image(rng, width, height, max_words=7, max_angle=30, ignore_prob=0.12):
    """One synthetic image (uint8 BGR) and its ICDAR label entries (at least one word)."""
    max_scale = float(np.clip(min(width, height) / 80.0, 0.5, 2.0))
    for _ in range(20):
        image = _background(rng, height, width)
        entries = _place_words(rng, image, rng.randint(2, max_words + 1), max_angle, max_scale,
                               ignore_prob)
        if entries:
            return image, entries
    raise ValueError(f"render_image: no word fits into a {width}x{height} image")


def _place_words(rng, image, count, max_angle, max_scale, ignore_prob):
    """Draw up to ``count`` non-overlapping words into ``image``; return their label entries."""
    height, width = image.shape[:2]
    placed, entries = [], []
    for _ in range(count):
        text = _word(rng)
        mask, box = _render_word(rng, text, max_angle, max_scale)
        mh, mw = mask.shape
        if mw >= width or mh >= height:
            continue
        for _ in range(20):
            x, y = int(rng.randint(0, width - mw)), int(rng.randint(0, height - mh))
            if all(x + mw < px or px + pw < x or y + mh < py or py + ph < y
                   for px, py, pw, ph in placed):
                break
        else:
            continue
        placed.append((x, y, mw, mh))
        region = image[y:y + mh, x:x + mw]
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        colour = np.array(_text_colour(rng, region), np.float32)
        region[...] = (alpha * colour + (1 - alpha) * region).astype(np.uint8)
        points = np.round(box + (x, y)).astype(int)
        points[:, 0] = np.clip(points[:, 0], 0, width - 1)
        points[:, 1] = np.clip(points[:, 1], 0, height - 1)
        transcription = "###" if rng.rand() < ignore_prob else text
        entries.append({"transcription": transcription, "points": points.tolist()})
    return entries


def _write_split(rng, root, folder, label_name, count, image_size, desc):
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    width, height = image_size
    lines = []
    for i in tqdm(range(1, count + 1), desc=desc, leave=False):
        image, entries = render_image(rng, width, height)
        relative = f"{folder}/img_{i}.jpg"
        cv2.imwrite(os.path.join(root, relative), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines.append(f"{relative}\t{json.dumps(entries, ensure_ascii=False)}\n")
    label_path = os.path.join(root, label_name)
    with open(label_path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return label_path


def det_dataset_exists(root):
    """True if both label files are present under ``root``."""
    return all(os.path.isfile(os.path.join(root, name)) for name in (TRAIN_LABEL, TEST_LABEL))


def make_det_dataset(root="./train_data/icdar2015/text_localization", num_train=100, num_test=20,
                     image_size=(480, 320), seed=0, force=False):
    """Write the synthetic detection set under ``root``; return ``(train_label, test_label)``.

    Args:
        root: output folder (the configs' ``data_dir``).
        num_train, num_test: number of images per split (test images start at ``img_1.jpg``).
        image_size: ``(width, height)`` of every image.
        seed: seed of the generator (same seed, same data).
        force: regenerate even if the label files already exist.
    """
    train_label = os.path.join(root, TRAIN_LABEL)
    test_label = os.path.join(root, TEST_LABEL)
    if det_dataset_exists(root) and not force:
        return train_label, test_label
    if num_train < 1 or num_test < 1:
        raise ValueError(f"make_det_dataset: num_train and num_test must be >= 1, "
                         f"got {num_train}, {num_test}")
    rng = np.random.RandomState(seed)
    _write_split(rng, root, TRAIN_DIR, TRAIN_LABEL, num_train, image_size, "det train")
    _write_split(rng, root, TEST_DIR, TEST_LABEL, num_test, image_size, "det test")
    return train_label, test_label
