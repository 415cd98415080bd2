"""ImageFolderDataSet and the teacher's pseudo-labels (a tiny ONNX teacher, known outputs)."""
import json

import cv2
import numpy as np
import pytest
from exported_teachers import (TinyDetNet, block_image, block_teacher, det_onnx, rec_onnx,
                               write_dict)

from ppdistill.data import build_dataloader, build_dataset
from ppdistill.data.pseudo_label import DetPseudoLabeler
from ppdistill.registry import ConfigError

pytest.importorskip("onnxruntime")
P_CHAR = float(np.exp(5) / (1 + np.exp(5) + np.exp(-15)))   # block_teacher's confidence


@pytest.fixture
def rec_root(tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    cv2.imwrite(str(folder / "x1.png"), block_image("aa-b-a--"))    # -> "aba"
    cv2.imwrite(str(folder / "x2.png"), block_image("bb--b---"))    # -> "bb"
    cv2.imwrite(str(tmp_path / "l1.png"), block_image("a-------"))
    (tmp_path / "labelled.txt").write_text("l1.png\tdc\nunlabelled/x2.png\n", encoding="utf-8")
    return {"root": tmp_path, "folder": str(folder), "onnx": rec_onnx(block_teacher(),
                                                                      tmp_path / "t.onnx"),
            "dict": write_dict(tmp_path / "dict.txt", list("abcd"))}


def rec_config(r, entries, threshold=0.9, **dataset):
    return {"Global": {"character_dict_path": r["dict"]},
            "Train": {"dataset": dict({
                "name": "ImageFolderDataSet", "data_dir": str(r["root"]),
                "label_file_list": entries,
                "pseudo_label": {"inference_model": r["onnx"], "character_dict_path": r["dict"],
                                 "image_shape": [3, 16, 32], "threshold": threshold},
                "transforms": [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
                               {"CTCLabelEncode": {"max_text_length": 6}},
                               {"RecResizeImg": {"image_shape": [3, 16, 32]}},
                               {"KeepKeys": {"keep_keys": ["image", "label", "length"]}}]},
                **dataset),
                "loader": {"batch_size_per_card": 4, "shuffle": False}}}


def test_folder_samples_get_the_teachers_text(rec_root):
    dataset = build_dataset(rec_config(rec_root, [rec_root["folder"]]), "Train")
    assert len(dataset) == 2 and dataset.unlabelled == 2
    labels = [(list(dataset[i][1][:4]), int(dataset[i][2])) for i in range(2)]
    assert labels == [([1, 2, 1, 0], 3), ([2, 2, 0, 0], 2)]       # "aba", "bb"
    assert len(dataset.pseudo_labeler._cache) == 2               # the teacher ran once per image


def test_confidence_threshold_skips_and_counts(rec_root):
    config = rec_config(rec_root, [rec_root["folder"]], threshold=P_CHAR + 1e-4)
    dataset = build_dataset(config, "Train")
    dataset.mode = "eval"                                        # skipped, not replaced
    assert dataset[0] is None and dataset[1] is None
    assert dataset.low_confidence == 2 and dataset.take_skip_count() == 2
    assert "confidence 0.993 < threshold" in dataset.bad_samples[0]


def test_labelled_and_unlabelled_mix_with_ratio_list(rec_root):
    config = rec_config(rec_root, [str(rec_root["root"] / "labelled.txt"), rec_root["folder"]],
                        ratio_list=[1.0, 0.5], seed=3)
    dataset = build_dataset(config, "Train")
    assert len(dataset) == 3 and dataset.unlabelled == 2
    batch = next(iter(build_dataloader(config, "Train")))
    assert batch[0].shape == [3, 3, 16, 32]
    texts = {tuple(l[:n]) for l, n in zip(batch[1].numpy().tolist(), batch[2].numpy())}
    assert (4, 3) in texts and (2, 2) in texts                   # "dc" given, "bb" pseudo


def test_unlabelled_without_pseudo_label_is_a_config_error(rec_root):
    config = rec_config(rec_root, [rec_root["folder"]])
    del config["Train"]["dataset"]["pseudo_label"]
    with pytest.raises(ConfigError,
                       match="2 samples have no label; set Train.dataset.pseudo_label"):
        build_dataset(config, "Train")
    config = rec_config(rec_root, [rec_root["folder"]])
    config["Train"]["dataset"]["pseudo_label"]["treshold"] = 0.5
    with pytest.raises(ConfigError, match="unexpected key 'treshold'; did you mean 'threshold'"):
        build_dataset(config, "Train")


def test_det_pseudo_label_is_the_teachers_box(tmp_path):
    net = TinyDetNet()
    weight = np.zeros([1, 3, 3, 3], "float32")
    weight[0, :, 1, 1] = 20.0                                    # white pixel -> p ≈ 1
    net.conv.weight.set_value(weight)
    net.conv.bias.set_value(np.array([-10.0], "float32"))
    labeler = DetPseudoLabeler(det_onnx(net, tmp_path / "det.onnx"), limit_side_len=64,
                               box_thresh=0.5, unclip_ratio=0.0001)
    image = np.zeros([64, 64, 3], "uint8")
    image[20:36, 8:56] = 255                                     # one text block
    (entry,) = json.loads(labeler(image))
    points = np.array(entry["points"])
    assert abs(points[:, 0].min() - 8) <= 1 and abs(points[:, 0].max() - 55) <= 1
    assert abs(points[:, 1].min() - 20) <= 1 and abs(points[:, 1].max() - 35) <= 1
    with pytest.raises(ValueError, match="finds no text"):
        labeler(np.zeros([64, 64, 3], "uint8"))
