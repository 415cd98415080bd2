"""Detection transforms: label parsing, DB targets, crop, augmentation, normalisation, resize."""
import json
import logging

import cv2
import numpy as np
import pytest

import ppdistill.data  # noqa: F401  (registers everything)
from ppdistill.data.imaug import create_operators, transform
from ppdistill.data.imaug.copy_paste import CopyPaste
from ppdistill.data.imaug.iaa_augment import IaaAugment
from ppdistill.data.imaug.label_ops_det import DetLabelEncode
from ppdistill.data.imaug.make_border_map import MakeBorderMap, polygon_border_distance
from ppdistill.data.imaug.make_shrink_map import MakeShrinkMap
from ppdistill.data.imaug.operators import (DetResizeForTest, KeepKeys, NormalizeImage,
                                            ToCHWImage, parse_scale)
from ppdistill.data.imaug.random_crop_data import EastRandomCropData
from ppdistill.registry import ConfigError


@pytest.fixture
def data_log():
    """Messages logged on ``ppdistill.data`` (warnings of skipped lines / dropped polygons)."""
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    log = logging.getLogger("ppdistill.data")
    log.addHandler(handler)
    yield messages
    log.removeHandler(handler)


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# ----------------------------------------------------------------------------- DetLabelEncode
def test_det_label_encode_pads_tags_and_drops_bad_polygon(data_log):
    label = json.dumps([
        {"transcription": "hello", "points": rect(1, 2, 11, 12)},
        {"transcription": "###", "points": [[0, 0], [5, 0], [6, 3], [5, 6], [0, 6]]},
        {"transcription": "bad", "points": [[0, 0], [3, 3]]},
        {"transcription": "*", "points": rect(20, 20, 30, 30)},
        {"transcription": "nan", "points": [[0, 0], ["x", 1], [2, 2]]},
    ])
    out = DetLabelEncode()({"label": label, "source": "lbl.txt:7"})
    assert out["polys"].dtype == np.float32 and out["polys"].shape == (3, 5, 2)
    np.testing.assert_array_equal(out["polys"][0, 4], [1, 12])  # last point repeated
    np.testing.assert_array_equal(out["polys"][0, 3], [1, 12])
    assert out["texts"] == ["hello", "###", "*"]
    np.testing.assert_array_equal(out["ignore_tags"], [False, True, True])
    assert any("lbl.txt:7" in m and "polygon 2" in m for m in data_log)
    assert any("lbl.txt:7" in m and "polygon 4" in m for m in data_log)


def test_det_label_encode_rejects_empty_and_broken():
    assert DetLabelEncode()({"label": "[]"}) is None
    bad_only = json.dumps([{"transcription": "a", "points": [[1, 1]]}])
    assert DetLabelEncode()({"label": bad_only, "source": "x:1"}) is None
    with pytest.raises(ValueError, match="not valid JSON"):
        DetLabelEncode()({"label": '[{"transcription": "a", "points": [[1, 2]'})
    with pytest.raises(ValueError, match="JSON list"):
        DetLabelEncode()({"label": '{"a": 1}'})


# ----------------------------------------------------------------------------- DB targets
RECT = np.array([rect(50, 30, 150, 70)], dtype=np.float32)  # 100 x 40: D = 4000·0.84/280 = 12


def _target_data(polys=RECT, tags=(False,), shape=(120, 200)):
    return {"image": np.zeros(shape + (3,), np.uint8), "polys": np.array(polys, np.float32),
            "ignore_tags": np.array(tags, dtype=bool)}


def test_shrink_map_rectangle_extent():
    out = MakeShrinkMap(min_text_size=8, shrink_ratio=0.4)(_target_data())
    shrink, mask = out["shrink_map"], out["shrink_mask"]
    assert shrink.dtype == np.float32 and shrink.shape == (120, 200)
    ys, xs = np.nonzero(shrink)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (62, 138, 42, 58)  # offset by D = 12
    assert shrink.sum() == (138 - 62 + 1) * (58 - 42 + 1)
    assert mask.min() == 1.0


def test_shrink_map_ignores_small_and_tagged_text():
    polys = [rect(50, 30, 150, 70), rect(10, 10, 40, 15), rect(160, 80, 190, 110)]
    out = MakeShrinkMap(min_text_size=8)(_target_data(polys, (False, False, True)))
    np.testing.assert_array_equal(out["ignore_tags"], [False, True, True])
    assert out["shrink_mask"][12, 20] == 0 and out["shrink_mask"][95, 175] == 0
    assert out["shrink_mask"][50, 100] == 1
    assert out["shrink_map"][:20].sum() == 0 and out["shrink_map"][80:, 155:].sum() == 0


def test_border_map_values_at_known_points():
    out = MakeBorderMap(shrink_ratio=0.4, thresh_min=0.3, thresh_max=0.7)(_target_data())
    tmap, tmask = out["threshold_map"], out["threshold_mask"]

    def expected(dist):
        return 0.3 + 0.4 * (1 - min(dist / 12.0, 1.0))

    checks = {(50, 50): 0.0, (100, 50): 20.0, (100, 36): 6.0, (40, 50): 10.0,
              (44, 24): np.hypot(6, 6), (100, 15): 15.0, (5, 5): 99.0}
    for (x, y), dist in checks.items():
        assert tmap[y, x] == pytest.approx(expected(dist), abs=1e-5), (x, y)
    assert tmask[50, 40] == 1 and tmask[24, 44] == 1 and tmask[50, 100] == 1
    assert tmask[15, 100] == 0 and tmask[5, 5] == 0
    assert tmap.dtype == np.float32 and tmask.dtype == np.float32


def test_border_map_skips_ignored_polygons():
    out = MakeBorderMap()(_target_data(tags=(True,)))
    assert out["threshold_mask"].sum() == 0
    np.testing.assert_allclose(out["threshold_map"], 0.3)


def test_border_distance_matches_point_to_segment_brute_force():
    polygon = np.array([[3.5, 2.0], [17.0, 5.0], [12.0, 14.5], [12.0, 14.5], [2.0, 9.0]])
    dist = polygon_border_distance(polygon, (0, 19), (0, 16))

    def seg(p, a, b):
        t = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0, 1) if np.any(a != b) else 0
        return np.linalg.norm(p - (a + t * (b - a)))

    for y, x in [(0, 0), (5, 9), (9, 2), (16, 19), (14, 12), (3, 17), (10, 10)]:
        p = np.array([x, y], dtype=float)
        brute = min(seg(p, polygon[i], polygon[(i + 1) % 5]) for i in range(5))
        assert dist[y, x] == pytest.approx(brute, abs=1e-4)


# ----------------------------------------------------------------------------- EastRandomCropData
def _rect_image():
    img = np.zeros((200, 300, 3), np.uint8)
    polys = np.array([rect(20, 20, 80, 50), rect(150, 100, 260, 140), rect(40, 150, 120, 185)],
                     dtype=np.float32)
    for p in polys:
        cv2.fillPoly(img, [p.astype(np.int32)], (255, 255, 255))
    return img, polys


@pytest.mark.parametrize("keep_ratio", [True, False])
def test_east_random_crop_size_and_polygons_on_text(keep_ratio):
    img, polys = _rect_image()
    op = EastRandomCropData(size=[64, 96], max_tries=10, keep_ratio=keep_ratio)
    for seed in range(8):
        np.random.seed(seed)
        data = {"image": img.copy(), "polys": polys.copy(), "texts": ["a", "b", "c"],
                "ignore_tags": np.array([False, False, True])}
        out = op(data)
        assert out["image"].shape == (96, 64, 3)
        assert len(out["polys"]) == len(out["texts"]) == len(out["ignore_tags"]) >= 1
        for poly in out["polys"]:
            cx, cy = np.asarray(poly).mean(0)
            if 0 <= cx < 64 and 0 <= cy < 96:
                assert out["image"][int(cy), int(cx)].min() > 200  # the centre is still text


# ----------------------------------------------------------------------------- IaaAugment
def _filled(poly, shape):
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def test_iaa_flip_moves_polygon_with_text():
    img = np.zeros((60, 100, 3), np.uint8)
    img[10:30, 5:40] = 255
    poly = np.array([rect(5, 10, 40, 30)], np.float32)
    out = IaaAugment([{"type": "Fliplr", "args": {"p": 1.0}}])({"image": img, "polys": poly})
    np.testing.assert_allclose(out["polys"][0], rect(95, 10, 60, 30))
    assert out["image"][10:30, 60:95].min() == 255 and out["image"][:, :55].max() == 0


def test_iaa_rotate_keeps_polygon_on_text():
    img = np.zeros((120, 160, 3), np.uint8)
    poly = np.array([rect(50, 45, 110, 75)], np.float32)
    img[45:76, 50:111] = 255
    out = IaaAugment([{"type": "Affine", "args": {"rotate": [25, 25]}}])(
        {"image": img, "polys": poly.copy()})
    rotated = out["polys"][0]
    assert not np.allclose(rotated, poly[0])
    inner = _filled(rotated.mean(0) + 0.85 * (rotated - rotated.mean(0)), (120, 160))
    assert out["image"][inner].min() > 200  # every pixel inside the polygon is still text
    outer = ~_filled(rotated.mean(0) + 1.15 * (rotated - rotated.mean(0)), (120, 160))
    assert out["image"][outer].max() < 50  # and nothing outside it


def test_iaa_resize_scales_polygons_and_defaults():
    img = np.zeros((40, 50, 3), np.uint8)
    poly = np.array([rect(10, 10, 20, 30)], np.float32)
    out = IaaAugment([{"type": "Resize", "args": {"size": 2}}])({"image": img, "polys": poly})
    assert out["image"].shape == (80, 100, 3)
    np.testing.assert_allclose(out["polys"][0], np.array(rect(20, 20, 40, 60)))
    assert [type(a).__name__ for a in IaaAugment().augmenters] == ["Fliplr", "Affine", "Resize"]


def test_iaa_rejects_unknown_augmenter_and_argument():
    with pytest.raises(ConfigError, match="unknown augmenter 'Fliplrr'; did you mean 'Fliplr'"):
        IaaAugment([{"type": "Fliplrr", "args": {"p": 0.5}}])
    with pytest.raises(ConfigError, match="unexpected key 'rotation'.*did you mean 'rotate'"):
        IaaAugment([{"type": "Affine", "args": {"rotation": [-10, 10]}}])
    # the config path of the transform, then the constructor's own message
    blur = (r"^Train.dataset.transforms\[0\].IaaAugment: IaaAugment.augmenter_args\[0\]: "
            r"unknown augmenter 'Blur'")
    with pytest.raises(ConfigError, match=blur):
        create_operators([{"IaaAugment": {"augmenter_args": [{"type": "Blur"}]}}])


# ----------------------------------------------------------------------------- CopyPaste
def test_copy_paste_adds_a_text_box_from_the_extra_sample():
    np.random.seed(1)
    ext_img = np.zeros((100, 100, 3), np.uint8)
    ext_img[40:60, 20:80] = 255
    ext = {"image": ext_img, "polys": np.array([rect(20, 40, 80, 60)], np.float32),
           "texts": ["pasted"], "ignore_tags": np.array([False])}
    src = np.zeros((200, 200, 3), np.uint8)
    data = {"image": src, "polys": np.array([rect(0, 0, 30, 20)], np.float32), "texts": ["own"],
            "ignore_tags": np.array([False]), "ext_data": [ext]}
    out = CopyPaste(objects_paste_ratio=0.2, limit_paste=True)(data)
    assert out["polys"].shape == (2, 4, 2) and out["texts"] == ["own", "pasted"]
    np.testing.assert_array_equal(out["ignore_tags"], [False, False])
    new = out["polys"][1]
    inner = _filled(new.mean(0) + 0.7 * (new - new.mean(0)), (200, 200))
    assert out["image"][inner].mean() > 200
    assert CopyPaste().ext_data_num == 1
    no_ext = CopyPaste()({"image": src, "polys": data["polys"][:1], "ignore_tags": [False]})
    assert len(no_ext["polys"]) == 1


# ----------------------------------------------------------------------------- basic operators
@pytest.mark.parametrize("text,value", [("1./255.", 1 / 255), ("1/255", 1 / 255), (0.5, 0.5),
                                        ("0.00392", 0.00392), (" 2 / 4 ", 0.5), (3, 3.0)])
def test_parse_scale_accepts_numbers_and_fractions(text, value):
    assert parse_scale(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["__import__('os')", "1+1", "1/0", "a/b", "nan", "1/2/3", "",
                                  True, [1]])
def test_parse_scale_rejects_everything_else(text):
    with pytest.raises(ConfigError):
        parse_scale(text)


def test_normalize_image_hwc_values():
    img = np.full((2, 3, 3), 255, np.uint8)
    out = NormalizeImage(scale="1./255.", order="hwc")({"image": img})["image"]
    expected = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert out.dtype == np.float32 and out.shape == (2, 3, 3)
    np.testing.assert_allclose(out[1, 2], expected, rtol=1e-6)
    chw = NormalizeImage(scale=1.0, mean=[0, 0, 0], std=[1, 1, 2], order="chw")(
        {"image": np.ones((3, 2, 2))})["image"]
    np.testing.assert_allclose(chw[:, 0, 0], [1, 1, 0.5])
    with pytest.raises(ConfigError, match="NormalizeImage.scale"):
        NormalizeImage(scale="exec('x')")


def test_det_resize_for_test_shapes():
    img = np.zeros((100, 150, 3), np.uint8)
    out = DetResizeForTest()({"image": img})  # limit_type min, 736
    assert out["image"].shape == (736, 1088, 3)
    np.testing.assert_allclose(out["shape"], [100, 150, 7.36, 1088 / 150])
    big = np.zeros((1000, 2000, 3))
    out = DetResizeForTest(limit_side_len=960, limit_type="max")({"image": big})
    assert out["image"].shape[:2] == (480, 960)
    out = DetResizeForTest(image_shape=[64, 128])({"image": img})
    assert out["image"].shape[:2] == (64, 128)
    np.testing.assert_allclose(out["shape"], [100, 150, 0.64, 128 / 150])
    out = DetResizeForTest(image_shape=[64, 128], keep_ratio=True)({"image": img})
    assert out["image"].shape[:2] == (64, 96)
    out = DetResizeForTest(resize_long=256)({"image": img})
    assert out["image"].shape[:2] == (256, 256)
    out = DetResizeForTest(limit_side_len=32, limit_type="max")({"image": np.zeros((10, 20, 3))})
    assert out["image"].shape[:2] == (32, 32) and list(out["shape"][:2]) == [10, 20]
    with pytest.raises(ConfigError, match="limit_type"):
        DetResizeForTest(limit_type="mean")


def test_create_operators_and_transform_chain():
    ops = create_operators([{"ToCHWImage": None}, {"KeepKeys": {"keep_keys": ["image", "x"]}}],
                           global_config={"character_dict_path": "unused.txt"})
    assert isinstance(ops[0], ToCHWImage) and isinstance(ops[1], KeepKeys)
    image, x = transform({"image": np.zeros((4, 5, 3)), "x": 1}, ops)
    assert image.shape == (3, 4, 5) and x == 1
    assert transform({"label": "[]"}, [DetLabelEncode(), ToCHWImage()]) is None
    with pytest.raises(ValueError, match="no key"):
        transform({"image": np.zeros((4, 5, 3))}, ops)
    with pytest.raises(ConfigError, match=r"Train.dataset.transforms\[1\]: unknown data transform"):
        create_operators([{"ToCHWImage": None}, {"KeepKey": {"keep_keys": ["image"]}}])
