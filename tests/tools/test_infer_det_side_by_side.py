"""infer_det on a DistillationModel checkpoint: one side-by-side panel per sub-model."""
import logging

import cv2
import numpy as np
import paddle
import pytest
from conftest import toy_model_config

from ppdistill.infer.checkpoint import infer_det
from ppdistill.modeling.architectures import build_model
from ppdistill.postprocess.db_postprocess import DistillationDBPostProcess
from ppdistill.utils.visual import (COLORS, TITLE_HEIGHT, boxes_of_all_models,
                                    draw_side_by_side, title_height)

NAMES = ("Teacher", "Student", "Student2")


def test_side_by_side_has_one_panel_per_model_with_its_boxes():
    image = np.full((40, 160, 3), 128, dtype=np.uint8)
    box = [[10, 10], [150, 10], [150, 30], [10, 30]]
    drawn = draw_side_by_side(image, {"Teacher": [box], "Student": [], "Student2": [box, box]})
    assert drawn.shape == (40 + TITLE_HEIGHT, 3 * 160, 3) and drawn.dtype == np.uint8
    for index, has_box in enumerate((True, False, True)):
        panel = drawn[TITLE_HEIGHT:, index * 160:(index + 1) * 160]
        color = np.array(COLORS[index], dtype=np.uint8)
        assert (panel[10, 80] == color).all() == has_box  # the box's top edge
        assert (panel[20, 80] == 128).all()  # inside the box: untouched
        title = drawn[:TITLE_HEIGHT, index * 160 + 1:(index + 1) * 160].astype(int)
        # the title ("Teacher: 1 box") is written in the panel colour on white (tolerance 80:
        # opencv 4.x anti-aliases the thin strokes more than 5.x, ~100 vs ~250 pixels pass)
        assert (np.abs(title - color.astype(int)).sum(-1) < 80).sum() > 20
    assert (image == 128).all()  # the source is not drawn on


def test_side_by_side_accepts_grey_images_scales_the_title_and_rejects_no_model():
    drawn = draw_side_by_side(np.zeros((8, 10), dtype=np.uint8), {"Student": []})
    assert drawn.shape == (8 + TITLE_HEIGHT, 10, 3)
    large = draw_side_by_side(np.zeros((30, 1500, 3), dtype=np.uint8), {"A": [], "B": []})
    assert large.shape == (30 + 60, 3000, 3) and title_height(1500) == 60  # the bar grows
    with pytest.raises(ValueError, match="no sub-model"):
        draw_side_by_side(np.zeros((8, 10, 3), dtype=np.uint8), {})


def _distillation_model():
    model = build_model({"name": "DistillationModel", "model_type": "det", "Models": {
        name: toy_model_config(4) for name in NAMES}})
    # Teacher and Student2 see text everywhere (one box over the image), Student nowhere
    for name, bias in zip(NAMES, (10.0, -10.0, 10.0)):
        head = getattr(model, name).head.conv
        head.weight.set_value(paddle.zeros_like(head.weight))
        head.bias.set_value(paddle.full_like(head.bias, bias))
    return model


def test_boxes_of_all_models_restores_the_configured_names():
    post = DistillationDBPostProcess(model_name=["Student"], thresh=0.3, box_thresh=0.5)
    preds = _distillation_model()(paddle.rand([1, 3, 32, 48]))
    shape = np.array([[32, 48, 1.0, 1.0]], dtype="float32")
    boxes = boxes_of_all_models(post, preds, shape, NAMES)
    assert list(boxes) == list(NAMES) and post.model_name == ["Student"]
    assert [len(boxes[n]) for n in NAMES] == [1, 0, 1]


def test_infer_det_writes_the_side_by_side_png(tmp_path):
    model = _distillation_model()
    paddle.save(model.state_dict(), str(tmp_path / "best_accuracy.pdparams"))
    image = np.random.RandomState(0).randint(0, 255, (36, 52, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "img_1.jpg"), image)
    config = {
        "Global": {"use_gpu": False, "pretrained_model": str(tmp_path / "best_accuracy"),
                   "infer_img": str(tmp_path / "img_1.jpg"),
                   "save_res_path": str(tmp_path / "out" / "predicts.txt")},
        "Architecture": {"name": "DistillationModel", "model_type": "det",
                         "algorithm": "Distillation",
                         "Models": {name: toy_model_config(4) for name in NAMES}},
        "PostProcess": {"name": "DistillationDBPostProcess", "model_name": ["Student"],
                        "thresh": 0.3, "box_thresh": 0.5},
        "Metric": {"name": "DistillationMetric", "base_metric_name": "DetMetric",
                   "main_indicator": "hmean", "key": "Student"},
        "Eval": {"dataset": {"name": "SimpleDataSet", "transforms": [
            {"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
            {"DetLabelEncode": None},
            {"DetResizeForTest": {"image_shape": [32, 48]}},
            {"NormalizeImage": {"scale": "1./255.", "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225], "order": "hwc"}},
            {"ToCHWImage": None},
            {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}}]}},
    }
    lines = infer_det(config, logging.getLogger("test_infer_det"))
    drawn_dir = tmp_path / "out" / "det_results"
    # the existing outputs are unchanged: only the configured Student
    assert len(lines) == 1 and '"Student": []' in lines[0] and "Teacher" not in lines[0]
    assert (drawn_dir / "det_res_Student_img_1.jpg").is_file()
    assert not (drawn_dir / "det_res_Teacher_img_1.jpg").exists()
    side = cv2.imread(str(drawn_dir / "det_res_sub_models_img_1.png"))
    assert side is not None and side.shape == (36 + TITLE_HEIGHT, 3 * 52, 3)
    # Teacher and Student2 panels carry their box colour, the Student panel none
    for index, expected in enumerate((True, False, True)):
        panel = side[TITLE_HEIGHT:, index * 52 + 1:(index + 1) * 52].astype(int)
        hit = (np.abs(panel - np.array(COLORS[index])).sum(-1) < 30).any()
        assert hit == expected, NAMES[index]
