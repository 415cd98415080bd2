"""Bad data stays clear: all-bad sets fail at once, eval skips (never substitutes) and counts,
only "bad sample" errors are caught, skip counts cross the loader's worker processes."""
import logging
import time

import cv2
import numpy as np
import paddle
import pytest

from ppdistill.data import build_dataloader, is_empty_batch, report_skipped
from ppdistill.data.base_dataset import DataError
from ppdistill.data.simple_dataset import SimpleDataSet
from ppdistill.engine.evaluator import evaluate

KEEP = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
        {"DetLabelEncode": None},
        {"DetResizeForTest": {"image_shape": [32, 32]}},
        {"NormalizeImage": {"scale": "1./255.", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                            "order": "hwc"}},
        {"ToCHWImage": None},
        {"KeepKeys": {"keep_keys": ["image", "shape"]}}]
GOOD_LABEL = '[{"transcription": "w", "points": [[2, 2], [20, 2], [20, 12], [2, 12]]}]'


def _write(root, lines):
    for index in range(3):
        img = np.full((24, 32, 3), 40 * index, np.uint8)
        cv2.imwrite(str(root / f"good{index}.jpg"), img)
    (root / "junk.jpg").write_bytes(b"not an image")
    label = root / "label.txt"
    label.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(label)


def _config(root, label, mode, num_workers, batch=2):
    return {"Global": {"seed": 1},
            mode: {"dataset": {"name": "SimpleDataSet", "data_dir": str(root),
                               "label_file_list": [label], "transforms": KEEP},
                   "loader": {"shuffle": False, "drop_last": False, "num_workers": num_workers,
                              "batch_size_per_card": batch}}}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_all_bad_training_set_fails_at_once_naming_the_label_file(tmp_path, num_workers):
    label = _write(tmp_path, [f"missing{i}.jpg\t{GOOD_LABEL}" for i in range(40)]
                   + [f"junk.jpg\t{GOOD_LABEL}", "good0.jpg\tnot json", "no delimiter"])
    start = time.time()
    with pytest.raises(DataError, match=r"all 43 samples of .*label.txt are bad"):
        build_dataloader(_config(tmp_path, label, "Train", num_workers), "Train")
    assert time.time() - start < 10


@pytest.mark.parametrize("num_workers", [0, 2])
def test_eval_skips_bad_samples_counts_them_and_never_substitutes(tmp_path, num_workers):
    # good0, good1 | bad, bad | bad, good2 -> batches [good0, good1], (empty), [good2]
    label = _write(tmp_path, [f"good0.jpg\t{GOOD_LABEL}", f"good1.jpg\t{GOOD_LABEL}",
                              f"junk.jpg\t{GOOD_LABEL}", f"nope.jpg\t{GOOD_LABEL}",
                              "good2.jpg\tnot json", f"good2.jpg\t{GOOD_LABEL}"])
    loader = build_dataloader(_config(tmp_path, label, "Eval", num_workers), "Eval")
    batches = list(loader)
    assert [is_empty_batch(b) for b in batches] == [False, True, False]
    assert [int(b[0].shape[0]) for b in batches if not is_empty_batch(b)] == [2, 1]
    # each good image exactly once (their pixel values differ)
    means = sorted(round(float(m), 3) for b in batches if not is_empty_batch(b)
                   for m in b[0].numpy().mean(axis=(1, 2, 3)))
    assert len(means) == 3 and len(set(means)) == 3
    assert report_skipped(loader, None, "eval") == 3  # counted across worker processes
    assert report_skipped(loader, None, "eval") == 0  # and reset


class _CountingMetric:
    main_indicator = "n"

    def reset(self):
        self.seen = []

    def __call__(self, post_result, batch):
        self.seen.extend(post_result)

    def get_metric(self):
        return {"n": len(self.seen)}


def test_evaluate_reports_skipped_samples(tmp_path, caplog, monkeypatch):
    label = _write(tmp_path, [f"good0.jpg\t{GOOD_LABEL}", f"junk.jpg\t{GOOD_LABEL}",
                              f"good1.jpg\t{GOOD_LABEL}"])
    loader = build_dataloader(_config(tmp_path, label, "Eval", 0, batch=1), "Eval")
    model = paddle.nn.Identity()
    metric = _CountingMetric()
    with caplog.at_level(logging.WARNING):
        monkeypatch.setattr(logging.getLogger("ppdistill"), "propagate", True)
        result = evaluate(model, loader, lambda preds, shape: [float(preds.mean())] *
                          int(preds.shape[0]), metric, show_progress=False)
    assert result["n"] == 2 and result["skipped_samples"] == 1  # the bad one is not re-scored
    assert "eval: 1 bad sample skipped" in caplog.text


def test_a_bug_in_a_transform_is_not_swallowed(tmp_path):
    label = _write(tmp_path, [f"good0.jpg\t{GOOD_LABEL}"])
    dataset = SimpleDataSet(str(tmp_path), [label], KEEP, mode="train")

    def buggy(data):
        return data["no such key"]
    dataset.ops.insert(2, buggy)
    with pytest.raises(KeyError, match="no such key"):
        dataset[0]
    assert dataset.skipped == 0


def test_bad_sample_warnings_are_capped(tmp_path, caplog, monkeypatch):
    import ppdistill.data.base_dataset as base
    monkeypatch.setattr(base, "MAX_SAMPLE_WARNINGS", 3)
    label = _write(tmp_path, [f"missing{i}.jpg\t{GOOD_LABEL}" for i in range(8)]
                   + [f"good0.jpg\t{GOOD_LABEL}"])
    dataset = SimpleDataSet(str(tmp_path), [label], KEEP, mode="eval")
    with caplog.at_level(logging.WARNING, logger="ppdistill.data"):
        assert [dataset[i] is None for i in range(9)] == [True] * 8 + [False]
    assert len(caplog.records) == 4 and "further ones are skipped" in caplog.records[-1].message
    assert dataset.take_skip_count() == 8
