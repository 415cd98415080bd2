"""SimpleDataSet (bad lines, all-bad data, ratios, extra samples), build_dataloader, demo data."""
import json
import logging
import os

import cv2
import numpy as np
import pytest

from ppdistill.data import build_dataloader, build_dataset, default_collate
from ppdistill.data.base_dataset import DataError
from ppdistill.data.simple_dataset import SimpleDataSet
from ppdistill.demo.det_data import make_det_dataset
from ppdistill.registry import ConfigError

DECODE = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}}, {"DetLabelEncode": None}]
NORMALIZE = {"NormalizeImage": {"scale": "1./255.", "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225], "order": "hwc"}}
CML_TRAIN = DECODE + [
    {"CopyPaste": None},
    {"IaaAugment": {"augmenter_args": [{"type": "Fliplr", "args": {"p": 0.5}},
                                       {"type": "Affine", "args": {"rotate": [-10, 10]}},
                                       {"type": "Resize", "args": {"size": [0.5, 3]}}]}},
    {"EastRandomCropData": {"size": [64, 64], "max_tries": 50, "keep_ratio": True}},
    {"MakeBorderMap": {"shrink_ratio": 0.4, "thresh_min": 0.3, "thresh_max": 0.7}},
    {"MakeShrinkMap": {"shrink_ratio": 0.4, "min_text_size": 8}},
    NORMALIZE, {"ToCHWImage": None},
    {"KeepKeys": {"keep_keys": ["image", "threshold_map", "threshold_mask", "shrink_map",
                                "shrink_mask"]}},
]
CML_EVAL = DECODE + [{"DetResizeForTest": {"image_shape": [64, 96]}}, NORMALIZE,
                     {"ToCHWImage": None},
                     {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}}]


@pytest.fixture
def data_log():
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    log = logging.getLogger("ppdistill.data")
    log.addHandler(handler)
    yield messages
    log.removeHandler(handler)


def _label(*boxes):
    return json.dumps([{"transcription": text, "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}
                       for text, (x0, y0, x1, y1) in boxes])


def _write_image(path, boxes=((10, 8, 40, 24),)):
    img = np.zeros((48, 64, 3), np.uint8)
    for x0, y0, x1, y1 in boxes:
        img[y0:y1, x0:x1] = 255
    cv2.imwrite(str(path), img)


@pytest.fixture
def tiny_set(tmp_path):
    """A label file with 3 good lines (1, 3, 6) and bad ones: missing image (2), broken JSON (4),
    no delimiter (5), no polygon (7)."""
    (tmp_path / "imgs").mkdir()
    for name in ("a", "b", "c"):
        _write_image(tmp_path / "imgs" / f"{name}.jpg")
    good = _label(("word", (10, 8, 40, 24)))
    lines = [f"imgs/a.jpg\t{good}", f"imgs/missing.jpg\t{good}", f"imgs/b.jpg\t{good}",
             'imgs/c.jpg\t[{"transcription": "x", "points": [[1, 2]', "imgs/c.jpg no tab here",
             f"imgs/c.jpg\t{good}", "imgs/a.jpg\t[]", ""]
    label_file = tmp_path / "label.txt"
    label_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path, str(label_file)


def _dataset(root, label_file, transforms=None, mode="eval", **kwargs):
    transforms = transforms or DECODE + [{"KeepKeys": {"keep_keys": ["img_path", "polys"]}}]
    return SimpleDataSet(str(root), [label_file], transforms, mode=mode, **kwargs)


def test_bad_lines_are_skipped_counted_and_warned_once(tiny_set, data_log):
    root, label_file = tiny_set
    dataset = _dataset(root, label_file)
    assert len(dataset) == 7  # the blank line is not a sample
    for _ in range(2):
        paths = [None if dataset[i] is None else os.path.basename(dataset[i][0])
                 for i in range(len(dataset))]
        # eval mode: a bad line is skipped (None), never replaced by another sample
        assert paths == ["a.jpg", None, "b.jpg", None, None, "c.jpg", None]
        assert dataset.take_skip_count() == 4 and dataset.take_skip_count() == 0
    assert dataset.skipped == 4
    assert sorted(dataset.bad_samples) == [1, 3, 4, 6]
    assert len(data_log) == 4  # one warning per bad line, even after two passes
    for line, reason in [(2, "does not exist"), (4, "not valid JSON"), (5, "no delimiter"),
                         (7, "DetLabelEncode rejected")]:
        assert any(m.startswith(f"{label_file}:{line}: skipped") and reason in m
                   for m in data_log), (line, data_log)


def test_train_mode_draws_a_random_good_sample(tiny_set):
    root, label_file = tiny_set
    dataset = _dataset(root, label_file, mode="train")
    np.random.seed(0)
    for _ in range(3):
        assert os.path.basename(dataset[1][0]) in {"a.jpg", "b.jpg", "c.jpg"}


def test_all_bad_lines_raise_a_clear_error(tmp_path, data_log):
    label_file = tmp_path / "all_bad.txt"
    label_file.write_text("nothing.jpg\t[]\nnope.jpg\t[]\n", encoding="utf-8")
    dataset = SimpleDataSet(str(tmp_path), str(label_file), DECODE, mode="train")
    with pytest.raises(DataError, match=r"all 2 samples of .*all_bad.txt are bad"):
        dataset[0]
    assert dataset.skipped == 2 and len(data_log) == 2
    with pytest.raises(DataError, match=r"all 2 samples of .*all_bad.txt are bad"):
        SimpleDataSet(str(tmp_path), str(label_file), DECODE, mode="eval").check_usable()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no samples"):
        SimpleDataSet(str(tmp_path), str(empty), DECODE)
    with pytest.raises(ConfigError, match=r"Train.dataset.label_file_list\[0\].*does not exist"):
        SimpleDataSet(str(tmp_path), str(tmp_path / "missing.txt"), DECODE, mode="Train")


def test_ratio_list_and_delimiter(tmp_path):
    _write_image(tmp_path / "a.jpg")
    good = _label(("w", (10, 8, 40, 24)))
    (tmp_path / "l.txt").write_text("".join(f"a.jpg|{good}\n" for _ in range(4)), "utf-8")
    dataset = SimpleDataSet(str(tmp_path), [str(tmp_path / "l.txt")], DECODE, ratio_list=[0.5],
                            delimiter="|", seed=1)
    assert len(dataset) == 2 and dataset[0]["polys"].shape == (1, 4, 2)
    with pytest.raises(ConfigError, match="ratio_list"):
        SimpleDataSet(str(tmp_path), [str(tmp_path / "l.txt")], DECODE, ratio_list=[0.5, 0.5])


def test_get_ext_data_for_copy_paste(tiny_set):
    root, label_file = tiny_set
    dataset = _dataset(root, label_file, transforms=DECODE + [{"CopyPaste": None}], mode="train")
    assert dataset.ext_data_num == 1
    np.random.seed(3)
    ext = dataset.get_ext_data()
    assert len(ext) == 1 and ext[0]["polys"].shape == (1, 4, 2) and ext[0]["image"].ndim == 3
    sample = dataset[0]
    assert len(sample["ext_data"]) == 1


def test_default_collate_stacks_equal_shapes_and_lists_the_rest():
    batch = [[np.zeros((3, 4)), np.zeros((2, 4, 2)), np.int64(5), "a"],
             [np.ones((3, 4)), np.zeros((1, 4, 2)), np.int64(6), "b"]]
    images, polys, lengths, texts = default_collate(batch)
    assert images.shape == (2, 3, 4) and lengths.tolist() == [5, 6]
    assert isinstance(polys, list) and [p.shape for p in polys] == [(2, 4, 2), (1, 4, 2)]
    assert texts == ["a", "b"]


def _config(root, train_tf=CML_TRAIN, eval_tf=CML_EVAL, **loader):
    def section(label, transforms, batch):
        return {"dataset": {"name": "SimpleDataSet", "data_dir": str(root),
                            "label_file_list": [os.path.join(str(root), label)],
                            "transforms": transforms},
                "loader": dict({"shuffle": False, "drop_last": False,
                                "batch_size_per_card": batch, "num_workers": 0}, **loader)}
    return {"Global": {"seed": 5},
            "Train": section("train_icdar2015_label.txt", train_tf, 2),
            "Eval": section("test_icdar2015_label.txt", eval_tf, 3)}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("det_demo")
    make_det_dataset(str(root), num_train=3, num_test=3, image_size=(96, 64), seed=0)
    return root


def test_demo_generator_writes_a_loadable_dataset(demo_root):
    assert (demo_root / "ch4_test_images" / "img_1.jpg").is_file()
    lines = (demo_root / "train_icdar2015_label.txt").read_text("utf-8").splitlines()
    assert len(lines) == 3 and lines[0].startswith("ch4_training_images/img_1.jpg\t")
    dataset = build_dataset(_config(demo_root), "Eval")
    for i in range(len(dataset)):
        image, shape, polys, tags = dataset[i]
        assert image.shape == (3, 64, 96) and polys.ndim == 3 and len(tags) == len(polys)
    assert dataset.skipped == 0
    before = os.path.getmtime(demo_root / "train_icdar2015_label.txt")
    make_det_dataset(str(demo_root), num_train=3, num_test=3)  # exists: kept
    assert os.path.getmtime(demo_root / "train_icdar2015_label.txt") == before


def test_build_dataloader_cml_transforms_batches(demo_root):
    np.random.seed(0)
    config = _config(demo_root)
    train = build_dataloader(config, "Train", seed=5)
    assert len(train) == 2
    batches = list(train)
    assert [list(t.shape) for t in batches[0]] == [[2, 3, 64, 64]] + [[2, 64, 64]] * 4
    assert [int(b[0].shape[0]) for b in batches] == [2, 1]
    eval_batch = next(iter(build_dataloader(config, "Eval", seed=5)))
    image, shape, polys, tags = eval_batch
    assert list(image.shape) == [3, 3, 64, 96] and list(shape.shape) == [3, 4]
    # the three images have different box counts: polys / ignore_tags stay per-image lists
    assert isinstance(polys, list) and isinstance(tags, list) and len(polys) == len(tags) == 3
    assert all(list(p.shape)[1:] == [4, 2] and p.shape[0] == t.shape[0]
               for p, t in zip(polys, tags))
    assert len({int(p.shape[0]) for p in polys}) > 1


def test_build_dataloader_rejects_unknown_loader_key(demo_root):
    config = _config(demo_root, batch_size=2)
    with pytest.raises(ConfigError, match="Train.loader: unexpected key 'batch_size'; did you "
                                          "mean 'batch_size_per_card'"):
        build_dataloader(config, "Train")
    with pytest.raises(ConfigError, match="collate_fn"):
        build_dataloader(_config(demo_root, collate_fn="ListCollater"), "Train")
    with pytest.raises(ConfigError, match=r"Train.dataset.transforms\[2\]"):
        build_dataloader(_config(demo_root, train_tf=DECODE + [{"MakeShrinkMapp": None}]), "Train")


def test_gen_demo_data_cli(tmp_path, capsys):
    from conftest import load_script
    cli = load_script("tools/gen_demo_data.py", "gen_demo_data")
    root = tmp_path / "det"
    cli.main(["--task", "det", "--root", str(root), "--num_train", "1", "--num_test", "1"])
    assert (root / "ch4_training_images" / "img_1.jpg").is_file()
    assert "det: data under" in capsys.readouterr().out


def test_distributed_sampler_reshuffles_every_epoch(demo_root):
    from ppdistill.data import EpochDistributedBatchSampler
    config = _config(demo_root, shuffle=True)
    config["Eval"]["dataset"]["label_file_list"] *= 4  # 12 samples
    loader = build_dataloader(config, "Eval", distributed=True)
    assert isinstance(loader.batch_sampler, EpochDistributedBatchSampler)
    orders = [sum(list(loader.batch_sampler), []) for _ in range(3)]
    assert all(sorted(order) == list(range(12)) for order in orders)
    assert orders[0] != orders[1] or orders[1] != orders[2]
    assert not isinstance(build_dataloader(config, "Eval").batch_sampler,
                          EpochDistributedBatchSampler)
