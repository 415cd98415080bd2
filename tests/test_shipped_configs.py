"""Every shipped config builds all its components and runs one forward+backward step on tiny
generated data through its own transforms, loss and optimizer."""
import glob
import os

import numpy as np
import pytest

from ppdistill.demo.det_data import make_det_dataset
from ppdistill.demo.rec_data import make_rec_dataset
from ppdistill.engine.run import build_trainer
from ppdistill.utils.config import load_with_overrides
from ppdistill.utils.logging import get_logger

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*", "*.yml")))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shipped")
    make_det_dataset(root=str(root / "train_data/icdar2015/text_localization"), num_train=2,
                     num_test=1, image_size=(96, 64), seed=3)
    make_rec_dataset(root=str(root / "train_data/rec"), num_train=4, num_val=2, seed=3,
                     with_lmdb=False)
    return root


def tiny_overrides(path):
    overrides = ["Global.use_gpu=false", "Train.loader.batch_size_per_card=2",
                 "Train.loader.num_workers=0", "Eval.loader.num_workers=0",
                 "Optimizer.lr.warmup_epoch=0"]  # so that the first step moves the weights
    config = load_with_overrides(path)
    for index, entry in enumerate(config["Train"]["dataset"]["transforms"]):
        if "EastRandomCropData" in entry:
            overrides.append(f"Train.dataset.transforms.{index}.EastRandomCropData.size=[64,64]")
    return overrides


def test_every_config_is_covered():
    names = {os.path.relpath(p, os.path.join(REPO, "configs")) for p in CONFIGS}
    assert {"det/ch_PP-OCRv3_det_cml.yml", "det/ch_PP-OCRv3_det_dml.yml",
            "det/ch_PP-OCRv3_det_distill.yml", "det/ch_PP-OCRv3_det_student.yml",
            "rec/ch_PP-OCRv3_rec_distillation.yml", "rec/ch_PP-OCRv2_rec_distillation.yml",
            "rec/ch_PP-OCRv3_rec.yml", "rec/ch_PP-OCRv4_rec.yml", "rec/ch_PP-OCRv4_rec_hgnet.yml",
            "rec/ch_PP-OCRv4_rec_distill.yml", "rec/PP-OCRv5_mobile_rec.yml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_one_training_step(path, data_dir, monkeypatch):
    monkeypatch.chdir(data_dir)
    config = load_with_overrides(path, tiny_overrides(path))
    exported = [m["inference_model"] for m in (config["Architecture"].get("Models") or {}).values()
                if isinstance(m, dict) and m.get("inference_model")]
    if any(not os.path.exists(p) for p in exported):
        pytest.skip(f"the teacher is an exported model ({exported[0]}), not present here; "
                    f"tests/e2e/test_exported_teacher.py runs this config with a tiny one")
    trainer = build_trainer(config, get_logger())
    batch = next(iter(trainer.train_loader))
    trainable = [p for p in trainer.model.parameters() if not p.stop_gradient]
    before = [p.numpy().copy() for p in trainable[:3]]
    terms = trainer.train_step(batch)
    assert np.isfinite(terms["loss"]) and terms["loss"] > 0
    assert any(not np.array_equal(b, p.numpy()) for b, p in zip(before, trainable[:3]))
