"""DBPostProcess and DistillationDBPostProcess on tiny synthetic probability maps."""
import cv2
import numpy as np
import paddle
import pytest

from ppdistill.postprocess import build_post_process
from ppdistill.postprocess.db_postprocess import (DBPostProcess, DistillationDBPostProcess,
                                                  box_score_fast, box_score_slow, get_mini_boxes)
from ppdistill.registry import ConfigError

SHAPE = np.array([[128, 192, 2, 2]], dtype=np.float64)
CHECK_BOXES = np.array([[[2, 52], [186, 52], [186, 78], [2, 78]],
                        [[10, 10], [108, 10], [108, 48], [10, 48]]], dtype=np.int32)


def check_map():
    """The §11 DBPostProcess example: a 64×96 map with three blobs."""
    pred = np.zeros((1, 1, 64, 96), dtype=np.float32)
    pred[0, 0, 10:20, 10:50] = 0.9
    pred[0, 0, 40:44, 60:62] = 0.8
    pred[0, 0, 30:36, 5:90] = 0.75
    return pred


def check_post(**kwargs):
    return DBPostProcess(thresh=0.3, box_thresh=0.6, unclip_ratio=1.5, **kwargs)


def test_check_example_gives_exactly_the_two_boxes():
    out = check_post()({"maps": check_map()}, SHAPE)
    assert len(out) == 1
    boxes = out[0]["points"]
    assert boxes.dtype == np.int32 and boxes.shape == (2, 4, 2)
    np.testing.assert_array_equal(boxes, CHECK_BOXES)


def test_tensor_input_and_batch_of_two():
    maps = paddle.to_tensor(np.concatenate([check_map(), np.zeros_like(check_map())]))
    out = check_post()({"maps": maps}, paddle.to_tensor(np.concatenate([SHAPE, SHAPE])))
    np.testing.assert_array_equal(out[0]["points"], CHECK_BOXES)
    empty = out[1]["points"]
    assert empty.dtype == np.int32 and empty.shape == (0,)


def test_box_thresh_and_scaling():
    # box_thresh above the 0.75 blob's score keeps only the 0.9 blob.
    out = DBPostProcess(thresh=0.3, box_thresh=0.8, unclip_ratio=1.5)({"maps": check_map()}, SHAPE)
    np.testing.assert_array_equal(out[0]["points"], CHECK_BOXES[1:])
    # a source image the size of the map: coordinates halve.
    same = check_post()({"maps": check_map()}, np.array([[64, 96, 1, 1]]))
    np.testing.assert_array_equal(same[0]["points"], CHECK_BOXES // 2)


def test_get_mini_boxes_order_and_side():
    contour = np.array([[[30, 5]], [[0, 5]], [[0, 0]], [[30, 0]]], dtype=np.int32)
    box, side = get_mini_boxes(contour)
    np.testing.assert_allclose(np.array(box), [[0, 0], [30, 0], [30, 5], [0, 5]], atol=1e-4)
    assert side == 5


def test_poly_mode_returns_integer_polygons():
    out = check_post(box_type="poly")({"maps": check_map()}, SHAPE)
    polygons = out[0]["points"]
    assert isinstance(polygons, list) and len(polygons) == 2
    for polygon, quad in zip(polygons, CHECK_BOXES):
        assert isinstance(polygon, list) and len(polygon) >= 4
        assert all(isinstance(v, int) for point in polygon for v in point)
        points = np.array(polygon)
        # the polygon spans the same extent as the quad box of the same blob
        np.testing.assert_array_equal(points.min(axis=0), quad.min(axis=0))
        np.testing.assert_array_equal(points.max(axis=0), quad.max(axis=0))


def test_use_dilation_rescues_a_thin_region():
    pred = np.zeros((1, 1, 32, 64), dtype=np.float32)
    pred[0, 0, 10:13, 10:50] = 0.9  # 3 rows: short side 2 < 3 without dilation
    shape = np.array([[32, 64, 1, 1]])
    assert check_post()({"maps": pred}, shape)[0]["points"].shape == (0,)
    boxes = check_post(use_dilation=True)({"maps": pred}, shape)[0]["points"]
    assert boxes.shape == (1, 4, 2)
    # the same as running on the OpenCV-dilated bitmap by hand
    post = check_post()
    dilated = cv2.dilate((pred[0, 0] > 0.3).astype(np.uint8), np.ones((2, 2), np.uint8))
    by_hand, _ = post.boxes_from_bitmap(pred[0, 0], dilated, 64, 32)
    np.testing.assert_array_equal(boxes[0], by_hand[0])


def test_slow_score_mode_scores_inside_the_contour():
    pred = np.zeros((1, 1, 40, 64), dtype=np.float32)
    pred[0, 0, 10:30, 10:15] = 0.9  # an L shape: its bounding box is mostly empty
    pred[0, 0, 25:30, 10:50] = 0.9
    shape = np.array([[40, 64, 1, 1]])
    assert check_post(score_mode="fast")({"maps": pred}, shape)[0]["points"].shape == (0,)
    boxes = check_post(score_mode="slow")({"maps": pred}, shape)[0]["points"]
    assert boxes.shape == (1, 4, 2)
    contour = np.array([[[10, 10]], [[14, 10]], [[14, 25]], [[49, 25]], [[49, 29]],
                        [[10, 29]]], dtype=np.int32)
    assert abs(box_score_slow(pred[0, 0], contour) - 0.9) < 1e-6
    assert box_score_fast(pred[0, 0], np.array([[10, 10], [49, 10], [49, 29], [10, 29]],
                                               dtype=np.float32)) < 0.5


def test_bad_arguments_fail_clearly():
    with pytest.raises(ConfigError, match="score_mode"):
        DBPostProcess(score_mode="fats")
    with pytest.raises(ConfigError, match="box_type"):
        DBPostProcess(box_type="polygon")
    with pytest.raises(ConfigError, match="unexpected key"):
        build_post_process({"name": "DBPostProcess", "unclip": 1.5})


def test_distillation_wrapper_defaults_and_key_handling():
    maps = check_map()
    preds = {"Student": {"maps": paddle.to_tensor(maps)},
             "Teacher": {"maps": paddle.to_tensor(np.zeros_like(maps))}}
    # PaddleOCR det configs ship key: head_out while the outputs are {"maps": ...}
    post = build_post_process({"name": "DistillationDBPostProcess", "model_name": ["Student"],
                               "key": "head_out", "thresh": 0.3, "box_thresh": 0.6,
                               "unclip_ratio": 1.5})
    out = post(preds, SHAPE)
    assert list(out) == ["Student"]
    np.testing.assert_array_equal(out["Student"][0]["points"], CHECK_BOXES)
    # defaults box_thresh 0.6, unclip 1.5; a key present in the output is used
    nested = {"Student": {"head_out": {"maps": maps}}, "Teacher": {"head_out": {"maps": maps}}}
    both = DistillationDBPostProcess(model_name=["Student", "Teacher"], key="head_out")(nested,
                                                                                        SHAPE)
    for name in ("Student", "Teacher"):
        np.testing.assert_array_equal(both[name][0]["points"], CHECK_BOXES)
    # model_name may be replaced after construction (evaluate every sub-model)
    post.model_name = ["Teacher"]
    assert post(preds, SHAPE)["Teacher"][0]["points"].shape == (0,)


def test_distillation_wrapper_unknown_model_lists_available_names():
    post = DistillationDBPostProcess()  # default model name is lower-case "student"
    with pytest.raises(ConfigError, match="available: Student, Teacher"):
        post({"Student": {"maps": check_map()}, "Teacher": {"maps": check_map()}}, SHAPE)
    with pytest.raises(ConfigError, match="no 'maps'"):
        DistillationDBPostProcess("Student", key="head_out")({"Student": {"x": 1}}, SHAPE)
