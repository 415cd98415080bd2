"""LMDBDataSet read back from a tiny LMDB written with make_lmdb; the rec demo generator."""
import logging
import os

import lmdb
import numpy as np
import pytest

from ppdistill.data import build_dataloader
from ppdistill.data.lmdb_dataset import LMDBDataSet
from ppdistill.demo.rec_data import make_lmdb, make_rec_dataset, render_word
from ppdistill.registry import ConfigError


def _write_words(root, words):
    import cv2
    rng = np.random.RandomState(0)
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    lines = []
    for i, word in enumerate(words):
        cv2.imwrite(os.path.join(root, "img", f"w{i}.png"), render_word(rng, word))
        lines.append(f"img/w{i}.png\t{word}\n")
    label = os.path.join(root, "label.txt")
    with open(label, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return label


TRANSFORMS = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
              {"CTCLabelEncode": None},
              {"RecResizeImg": {"image_shape": [3, 16, 64]}},
              {"KeepKeys": {"keep_keys": ["image", "label", "length", "valid_ratio"]}}]
GLOBAL = {"max_text_length": 6, "character_dict_path": None, "use_space_char": False}


@pytest.fixture
def tiny_lmdb(tmp_path):
    label = _write_words(str(tmp_path), ["ab", "c1", "toolongword", "xyz9"])
    out = tmp_path / "lmdb" / "part1"
    assert make_lmdb(label, str(tmp_path), str(out)) == 4
    return tmp_path / "lmdb"


def test_lmdb_dataset_reads_samples_and_skips_bad_ones(tiny_lmdb, caplog):
    dataset = LMDBDataSet(str(tiny_lmdb), TRANSFORMS, global_config=GLOBAL, mode="eval")
    assert len(dataset) == 4
    image, label, length, valid_ratio = dataset[0]
    assert image.shape == (3, 16, 64) and image.dtype == np.float32
    assert label.tolist() == [11, 12, 0, 0, 0, 0] and int(length) == 2
    assert 0 < valid_ratio <= 1
    with caplog.at_level(logging.WARNING, logger="ppdistill.data"):
        skipped = dataset[2]             # too long for max_text_length 6: skipped, not replaced
    assert skipped is None and dataset[3][1].tolist()[:4] == [34, 35, 36, 10]
    assert dataset.skipped == 1 and dataset.take_skip_count() == 1
    assert f"{tiny_lmdb / 'part1'}:3" in caplog.text and "rejected" in caplog.text


def test_lmdb_dataset_several_lmdbs_ratio_and_loader(tiny_lmdb, tmp_path):
    label = _write_words(str(tmp_path / "second"), ["dd", "e"])
    make_lmdb(label, str(tmp_path / "second"), str(tiny_lmdb / "part2"))
    dataset = LMDBDataSet(str(tiny_lmdb), TRANSFORMS, global_config=GLOBAL, mode="train",
                          shuffle=True, seed=3)
    assert len(dataset) == 6 and dataset.lmdb_dirs[0].endswith("part1")
    half = LMDBDataSet(str(tiny_lmdb), TRANSFORMS, ratio_list=[0.5, 1.0], global_config=GLOBAL,
                       seed=0)
    assert len(half) == 2 + 2
    with pytest.raises(ConfigError, match="ratio_list"):
        LMDBDataSet(str(tiny_lmdb), TRANSFORMS, ratio_list=[0.5, 0.5, 0.5], global_config=GLOBAL)
    config = {"Global": GLOBAL, "Eval": {
        "dataset": {"name": "LMDBDataSet", "data_dir": str(tiny_lmdb / "part2"),
                    "transforms": TRANSFORMS},
        "loader": {"batch_size_per_card": 2, "shuffle": False, "num_workers": 0}}}
    images, labels, lengths, ratios = next(iter(build_dataloader(config, "Eval")))
    assert list(images.shape) == [2, 3, 16, 64] and lengths.numpy().tolist() == [2, 1]


def test_lmdb_dataset_errors(tmp_path):
    with pytest.raises(ConfigError, match="no LMDB"):
        LMDBDataSet(str(tmp_path), TRANSFORMS, global_config=GLOBAL)
    broken = tmp_path / "broken"
    env = lmdb.open(str(broken))
    with env.begin(write=True) as txn:
        txn.put(b"num-samples", b"2")
        txn.put(b"label-000000001", b"ab")
    env.close()
    dataset = LMDBDataSet(str(broken), TRANSFORMS, global_config=GLOBAL, mode="eval")
    with pytest.raises(RuntimeError, match="all 2 samples"):
        dataset.check_usable()
    assert "no 'image-000000001'" in dataset.bad_samples[0]


def test_make_lmdb_reports_bad_lines(tmp_path):
    label = tmp_path / "label.txt"
    label.write_text("missing.png\tab\n", encoding="utf-8")
    with pytest.raises(ValueError, match="label.txt:1"):
        make_lmdb(str(label), str(tmp_path), str(tmp_path / "out"))


def test_rec_demo_data_is_loadable(tmp_path):
    root = tmp_path / "rec"
    train_label, val_label = make_rec_dataset(str(root), num_train=6, num_val=3, seed=1)
    assert (root / "val" / "word_0.png").is_file()
    first = (root / "train.txt").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("train/word_0.png\t")
    transforms = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
                  {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
                  {"RecResizeImg": {"image_shape": [3, 48, 320]}},
                  {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length",
                                              "valid_ratio"]}}]
    glob = {"max_text_length": 25, "character_dict_path": None, "use_space_char": False}
    config = {"Global": glob, "Train": {
        "dataset": {"name": "SimpleDataSet", "data_dir": str(root),
                    "label_file_list": [train_label], "transforms": transforms},
        "loader": {"batch_size_per_card": 3, "shuffle": False}}}
    batch = next(iter(build_dataloader(config, "Train")))
    assert list(batch[0].shape) == [3, 3, 48, 320]
    lmdb_set = LMDBDataSet(str(root / "lmdb" / "val"), transforms, global_config=glob,
                           mode="eval")
    assert len(lmdb_set) == 3 and lmdb_set.skipped == 0 and lmdb_set[2][0].shape == (3, 48, 320)
    # an existing set is kept unless force is given
    assert make_rec_dataset(str(root), num_train=1, num_val=1) == (train_label, val_label)
    assert len((root / "train.txt").read_text().splitlines()) == 6


def test_same_lmdb_in_two_datasets_and_recreated(tmp_path):
    root = tmp_path / "rec"
    make_rec_dataset(str(root), num_train=2, num_val=2, seed=0)
    first = LMDBDataSet(str(root / "lmdb" / "val"), TRANSFORMS, global_config=GLOBAL)
    second = LMDBDataSet(str(root / "lmdb" / "val"), TRANSFORMS, global_config=GLOBAL)
    assert len(first) == len(second) == 2
    make_rec_dataset(str(root), num_train=2, num_val=3, seed=0, force=True)
    assert len(LMDBDataSet(str(root / "lmdb" / "val"), TRANSFORMS, global_config=GLOBAL)) == 3
