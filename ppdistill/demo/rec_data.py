"""A synthetic text-recognition data set: rendered word crops, plus an LMDB converter.

``make_rec_dataset()`` writes::

    <root>/train/word_0.png ...   <root>/train.txt     (lines "train/word_0.png<TAB>TEXT")
    <root>/val/word_0.png ...     <root>/val.txt
    <root>/lmdb/train, <root>/lmdb/val                  (the same samples as LMDBs)

Paths in the label files are relative to ``root`` (the configs' ``data_dir``,
``./train_data/rec/``). Words use digits and ASCII letters only, which are all in
``ppocr_keys_v1.txt``, so the shipped rec configs run on it unchanged.
"""
import os

import cv2
import lmdb
import numpy as np

HEIGHT = 48
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX_SMALL)
WORDS = ("STOP", "OPEN", "SALE", "EXIT", "Hotel", "CAFE", "bank", "taxi", "Paddle", "OCR",
         "distill", "student", "teacher", "PUSH", "PULL", "Parking", "2024", "police", "market",
         "Station", "free", "WiFi", "menu", "Tea", "Coffee", "SHOP", "Road", "open24h", "Exit3")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
TRAIN_LABEL, VAL_LABEL = "train.txt", "val.txt"


def random_word(rng, max_len=10):
    """A dictionary word (half the time) or a random letters/digits string of 1..max_len."""
    if rng.rand() < 0.5:
        return WORDS[rng.randint(len(WORDS))]
    length = rng.randint(1, max_len + 1)
    return "".join(ALPHABET[i] for i in rng.randint(len(ALPHABET), size=length))


def _background(rng, height, width):
    base = rng.randint(0, 256, size=3).astype(np.float32)
    if rng.rand() < 0.5:
        image = np.ones((height, width, 3), np.float32) * base
    else:
        other = rng.randint(0, 256, size=3).astype(np.float32)
        ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
        image = np.broadcast_to(base * (1 - ramp) + other * ramp, (height, width, 3)).copy()
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _contrasting_colour(rng, background):
    mean = float(background.mean())
    for _ in range(20):
        colour = rng.randint(0, 256, size=3)
        if abs(float(colour.mean()) - mean) > 90:
            return tuple(int(c) for c in colour)
    return (0, 0, 0) if mean > 127 else (255, 255, 255)


def render_word(rng, text, height=HEIGHT):
    """A BGR uint8 crop of height ``height`` showing ``text`` (random font, colours, small
    rotation or blur)."""
    font = FONTS[rng.randint(len(FONTS))]
    scale = cv2.getFontScaleFromHeight(font, int(height * rng.uniform(0.45, 0.6)))
    thickness = int(rng.randint(1, 3))
    (text_w, text_h), baseline = cv2.getTextSize(text, font, scale, thickness)
    margin_x = int(rng.randint(3, 10))
    width = text_w + 2 * margin_x
    image = _background(rng, height, width)
    colour = _contrasting_colour(rng, image)
    y = (height + text_h) // 2 - baseline // 2
    cv2.putText(image, text, (margin_x, y), font, scale, colour, thickness, cv2.LINE_AA)
    if rng.rand() < 0.3:
        angle = rng.uniform(-4, 4)
        matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
        image = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
    if rng.rand() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.5, 1.0))
    return image


def _write_split(rng, root, split, count):
    os.makedirs(os.path.join(root, split), exist_ok=True)
    lines = []
    for i in range(count):
        text = random_word(rng)
        relative = f"{split}/word_{i}.png"
        cv2.imwrite(os.path.join(root, relative), render_word(rng, text))
        lines.append(f"{relative}\t{text}\n")
    label_path = os.path.join(root, f"{split}.txt")
    with open(label_path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return label_path


def make_lmdb(label_file, data_dir, out_dir, delimiter="\t"):
    """Convert a ``image_path<TAB>text`` label file into an LMDB at ``out_dir``.

    Keys: ``image-%09d`` (the image file's bytes), ``label-%09d`` (UTF-8 text), 1-based, and
    ``num-samples``. Image paths are relative to ``data_dir``. Lines that are blank, have no
    delimiter, or name a missing image raise ``ValueError`` naming ``label_file:line``.
    Returns the number of samples written.
    """
    entries = []
    with open(label_file, "r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if delimiter not in line:
                raise ValueError(f"{label_file}:{number}: expected 'image_path{delimiter!r}text'")
            path, text = line.split(delimiter, 1)
            full = os.path.join(data_dir, path)
            if not os.path.isfile(full):
                raise ValueError(f"{label_file}:{number}: image {full!r} does not exist")
            entries.append((full, text))
    os.makedirs(out_dir, exist_ok=True)
    total = sum(os.path.getsize(p) for p, _ in entries)
    env = lmdb.open(out_dir, map_size=max(1 << 20, 4 * total + (1 << 20)))
    try:
        with env.begin(write=True) as txn:
            for index, (path, text) in enumerate(entries, start=1):
                with open(path, "rb") as image:
                    txn.put(f"image-{index:09d}".encode(), image.read())
                txn.put(f"label-{index:09d}".encode(), text.encode("utf-8"))
            txn.put(b"num-samples", str(len(entries)).encode())
    finally:
        env.close()
    return len(entries)


def rec_dataset_exists(root):
    """True if both label files are present under ``root``."""
    return all(os.path.isfile(os.path.join(root, name)) for name in (TRAIN_LABEL, VAL_LABEL))


def make_rec_dataset(root="./train_data/rec", num_train=200, num_val=40, seed=0, force=False,
                     with_lmdb=True):
    """Write the synthetic recognition set under ``root``; return ``(train_label, val_label)``.

    Args:
        root: output folder (the configs' ``data_dir``).
        num_train, num_val: number of word crops per split (``val/word_0.png`` is the first).
        seed: seed of the generator (same seed, same data).
        force: regenerate even if the label files already exist.
        with_lmdb: also write ``root/lmdb/train`` and ``root/lmdb/val``.
    """
    train_label = os.path.join(root, TRAIN_LABEL)
    val_label = os.path.join(root, VAL_LABEL)
    if rec_dataset_exists(root) and not force:
        return train_label, val_label
    if num_train < 1 or num_val < 1:
        raise ValueError(f"make_rec_dataset: num_train and num_val must be >= 1, "
                         f"got {num_train}, {num_val}")
    rng = np.random.RandomState(seed)
    _write_split(rng, root, "train", num_train)
    _write_split(rng, root, "val", num_val)
    if with_lmdb:
        for split, label in (("train", train_label), ("val", val_label)):
            out_dir = os.path.join(root, "lmdb", split)
            for name in ("data.mdb", "lock.mdb"):
                if os.path.isfile(os.path.join(out_dir, name)):
                    os.remove(os.path.join(out_dir, name))
            make_lmdb(label, root, out_dir)
    return train_label, val_label
