"""PP-OCRv4's ``total_epoch`` on MakeShrinkMap/MakeBorderMap: the shrink ratio becomes
0.4 + 0.2·epoch/total_epoch, with ``epoch`` = the training loader's seed injected by the dataset,
as in PaddleOCR."""
import copy
import json

import numpy as np
import pytest

from ppdistill.data.imaug.make_border_map import MakeBorderMap
from ppdistill.data.imaug.make_shrink_map import MakeShrinkMap
from ppdistill.data.simple_dataset import SimpleDataSet
from ppdistill.registry import ConfigError

V4_RATIO = 0.4 + 0.2 * 1024 / 500  # = 0.8096, Global.seed 1024 (the default) and total_epoch 500


def _data(shape=(120, 200)):
    """One 100 x 40 text box (50, 30)-(150, 70): area 4000, perimeter 280."""
    return {"image": np.zeros(shape + (3,), np.uint8),
            "polys": np.array([[[50, 30], [150, 30], [150, 70], [50, 70]]], np.float32),
            "ignore_tags": np.array([False])}


def test_ratio_formula_known_values():
    assert MakeShrinkMap(total_epoch=500, epoch=1024).shrink_ratio == pytest.approx(0.8096)
    assert MakeBorderMap(total_epoch=500, epoch=1024).shrink_ratio == pytest.approx(0.8096)
    assert MakeShrinkMap(shrink_ratio=0.4, total_epoch=100, epoch=50).shrink_ratio == \
        pytest.approx(0.5)
    # inactive unless both are given (v3 configs, or ops built outside a training dataset)
    assert MakeShrinkMap(total_epoch=500).shrink_ratio == 0.4
    assert MakeBorderMap(epoch=1024).shrink_ratio == 0.4


def test_shrink_map_with_v4_ratio_known_extent():
    # D = A (1 - r^2) / L = 4000 * (1 - 0.8096^2) / 280 = 4.922 (12 with r = 0.4)
    out = MakeShrinkMap(min_text_size=8, total_epoch=500, epoch=1024)(_data())
    ys, xs = np.nonzero(out["shrink_map"])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (55, 145, 35, 65)
    assert out["shrink_map"].sum() == (145 - 55 + 1) * (65 - 35 + 1)


def test_border_map_with_v4_ratio_known_values():
    out = MakeBorderMap(thresh_min=0.3, thresh_max=0.7, total_epoch=500, epoch=1024)(_data())
    threshold, mask = out["threshold_map"], out["threshold_mask"]
    distance = 4000 * (1 - V4_RATIO ** 2) / 280
    assert threshold[50, 50] == pytest.approx(0.7)                                  # on the edge
    assert threshold[50, 48] == pytest.approx(0.3 + 0.4 * (1 - 2 / distance), abs=1e-5)
    assert threshold[50, 44] == pytest.approx(0.3)                                   # beyond D
    # the mask is the box grown by D = 4.92: x from 45 to 155
    cols = np.nonzero(mask[50])[0]
    assert (cols.min(), cols.max()) == (45, 155)


def test_too_large_ratio_is_a_config_error():
    with pytest.raises(ConfigError, match="Global.seed"):
        MakeShrinkMap(total_epoch=500, epoch=5000)
    with pytest.raises(ConfigError, match="total_epoch must be a positive number"):
        MakeBorderMap(total_epoch=0, epoch=1)


def _transforms():
    return [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
            {"DetLabelEncode": None},
            {"MakeBorderMap": {"shrink_ratio": 0.4, "thresh_min": 0.3, "thresh_max": 0.7,
                               "total_epoch": 500}},
            {"MakeShrinkMap": {"shrink_ratio": 0.4, "min_text_size": 8, "total_epoch": 500}}]


def _dataset(tmp_path, mode, seed, transforms=None):
    label = tmp_path / "label.txt"
    label.write_text("img.jpg\t" + json.dumps(
        [{"transcription": "a", "points": [[1, 1], [20, 1], [20, 9], [1, 9]]}]) + "\n")
    transforms = _transforms() if transforms is None else transforms
    before = copy.deepcopy(transforms)
    dataset = SimpleDataSet(str(tmp_path), [str(label)], transforms, seed=seed, mode=mode,
                            global_config={})
    assert transforms == before  # the caller's config is not modified
    return {type(op).__name__: op for op in dataset.ops}


def test_training_dataset_injects_the_loader_seed_as_epoch(tmp_path):
    ops = _dataset(tmp_path, "train", seed=1024)
    assert ops["MakeShrinkMap"].shrink_ratio == pytest.approx(V4_RATIO)
    assert ops["MakeBorderMap"].shrink_ratio == pytest.approx(V4_RATIO)
    ops = _dataset(tmp_path, "train", seed=None)  # PaddleOCR: epoch 0
    assert ops["MakeShrinkMap"].shrink_ratio == pytest.approx(0.4)


def test_eval_dataset_does_not_inject_epoch(tmp_path):
    ops = _dataset(tmp_path, "eval", seed=1024)
    assert ops["MakeShrinkMap"].shrink_ratio == 0.4
    assert ops["MakeBorderMap"].shrink_ratio == 0.4


def test_no_injection_unless_both_map_makers_are_present(tmp_path):
    """PaddleOCR injects ``epoch`` only when MakeBorderMap and MakeShrinkMap are both listed."""
    ops = _dataset(tmp_path, "train", seed=1024, transforms=_transforms()[:2] + _transforms()[3:])
    assert ops["MakeShrinkMap"].shrink_ratio == 0.4
