"""Training setup: order of freeze/AMP/DataParallel, pretrained checks, gradient audit, metric
checks, Ctrl-C. (Two-process behaviour: test_distributed.py.)"""
import logging

import numpy as np
import paddle
import pytest
import toy_components
import yaml
from paddle import nn

from ppdistill.engine import run, setup
from ppdistill.engine.trainer import Trainer
from ppdistill.registry import BACKBONES, HEADS, ConfigError
from ppdistill.utils.logging import get_logger
from ppdistill.utils.safe_load import safe_load
from ppdistill.utils.save_load import save_state_dict


@HEADS.register("ToyDetachedHead")
class ToyDetachedHead(nn.Layer):
    """Like ToyHead, but detaches its input (as a v3/v4 CTC neck does): nothing before it trains."""

    def __init__(self, in_channels, out_channels=3):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, 1)

    def forward(self, x, targets=None):
        return {"maps": nn.functional.sigmoid(self.conv(x.detach()))}


@BACKBONES.register("ToyBackbone2D")
class ToyBackbone2D(nn.Layer):
    """conv -> BatchNorm2D -> relu (``SyncBatchNorm.convert_sync_batchnorm`` converts it)."""

    def __init__(self, in_channels=3, channels=4):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, channels, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2D(channels)
        self.out_channels = channels

    def forward(self, x):
        return nn.functional.relu(self.bn(self.conv(x)))


@pytest.fixture()
def logger():
    return get_logger()


@pytest.fixture()
def log_text(caplog, logger):
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="ppdistill"):
        yield lambda: caplog.text
    logger.propagate = False


def student(cfg):
    return cfg["Architecture"]["Models"]["Student"]


# ------------------------------------------------------------------ order: freeze, AMP, DP
def test_amp_decoration_runs_before_data_parallel_and_frozen_models_stay_outside(
        tmp_path, logger, monkeypatch):
    calls = []

    def fake_decorate(models, optimizers, level, dtype):
        assert not isinstance(models, (paddle.DataParallel, setup.DistillationDataParallel))
        calls.append(("decorate", type(models).__name__, level, dtype))
        return models, optimizers

    class FakeDataParallel(nn.Layer):
        def __init__(self, layers, **kwargs):
            super().__init__()
            calls.append(("DataParallel", sorted(n for n, _ in layers.named_children())))
            self._layers = layers

        def forward(self, *args, **kwargs):
            return self._layers(*args, **kwargs)

    monkeypatch.setattr(paddle.amp, "decorate", fake_decorate)
    monkeypatch.setattr(paddle, "DataParallel", FakeDataParallel)
    monkeypatch.setattr(paddle, "get_device", lambda: "gpu:0")  # AMP is GPU-only in paddle
    monkeypatch.setattr(setup, "world_size", lambda: 2)
    broadcast = []
    monkeypatch.setattr(paddle.distributed, "broadcast",
                        lambda tensor, src=0: broadcast.append(tensor.name))
    cfg = toy_components.toy_train_config(tmp_path, use_amp=True, amp_level="O2",
                                          amp_dtype="bfloat16", use_sync_bn=True)
    cfg["Architecture"]["Models"]["Student"]["Backbone"]["name"] = "ToyBackbone2D"
    cfg["Architecture"]["Models"]["Teacher"]["Backbone"]["name"] = "ToyBackbone2D"
    trainer = run.build_trainer(cfg, logger)
    model = trainer.model._layers
    assert isinstance(model.Student.backbone.bn, nn.SyncBatchNorm)  # SyncBN: trainable only
    assert type(model.Teacher.backbone.bn) is nn.BatchNorm2D
    assert calls == [("decorate", "DistillationModel", "O2", "bfloat16"),
                     ("DataParallel", ["Student"])]  # the frozen Teacher is not wrapped
    assert isinstance(trainer.model, setup.DistillationDataParallel)
    assert len(broadcast) == 8  # every Teacher tensor, from rank 0, once
    assert trainer.amp.enabled and trainer.amp.scaler is not None
    assert list(trainer.model.state_dict()) == list(trainer.model._layers.state_dict())
    # (paddle has no CPU SyncBatchNorm kernel: the wrapper's forward is run by
    # test_distributed.py in two real processes)


def test_amp_decorate_refuses_a_data_parallel_model(logger, monkeypatch):
    from ppdistill.engine.amp import AmpContext
    monkeypatch.setattr(paddle, "get_device", lambda: "gpu:0")
    amp = AmpContext({"use_amp": True, "amp_level": "O2"}, logger)
    wrapped = paddle.DataParallel.__new__(paddle.DataParallel)
    with pytest.raises(RuntimeError, match="before paddle.DataParallel"):
        amp.decorate(wrapped, None)


# ----------------------------------------------------------------------- pretrained checks
def _teacher_file(tmp_path, drop=()):
    cfg = toy_components.toy_train_config(tmp_path)
    from ppdistill.modeling.architectures import BaseModel
    teacher = BaseModel({k: v for k, v in cfg["Architecture"]["Models"]["Teacher"].items()
                         if k != "freeze_params"})
    state = {k: v for k, v in teacher.state_dict().items() if k not in drop}
    save_state_dict(state, tmp_path / "teacher.pdparams")
    return str(tmp_path / "teacher")


def test_frozen_teacher_must_load_fully(tmp_path):
    from ppdistill.modeling.architectures import build_model
    cfg = toy_components.toy_train_config(tmp_path)
    arch = cfg["Architecture"]
    arch["Models"]["Teacher"]["pretrained"] = _teacher_file(tmp_path)
    build_model(arch)  # complete: fine
    arch["Models"]["Teacher"]["pretrained"] = _teacher_file(
        tmp_path, drop=("head.conv.weight", "backbone.bn._mean"))
    with pytest.raises(ConfigError, match=r"Architecture.Models.Teacher.pretrained: the frozen "
                       r"sub-model 'Teacher' does not fully load: 6 tensors loaded, 2 missing, 0 "
                       r"shape-mismatched .*first: backbone.bn._mean, head.conv.weight"):
        build_model(arch)


def test_trainable_sub_model_partial_load_warns(tmp_path, log_text):
    from ppdistill.modeling.architectures import build_model
    arch = toy_components.toy_train_config(tmp_path)["Architecture"]
    arch["Models"]["Student"]["pretrained"] = _teacher_file(tmp_path, drop=("head.conv.bias",))
    build_model(arch)
    assert ("Architecture.Models.Student.pretrained: sub-model 'Student' loaded partially: 7 "
            "tensors loaded, 1 missing, 0 shape-mismatched") in log_text()
    assert "first: head.conv.bias" in log_text()


# ---------------------------------------------------------- parameters without a gradient
def _bn_stats(model, name):
    layer = getattr(setup.unwrap(model), name).backbone.bn
    return layer._mean.numpy().copy(), layer._variance.numpy().copy()


def test_untrained_parts_reported_and_their_batch_norm_pinned(tmp_path, logger, log_text):
    cfg = toy_components.toy_train_config(tmp_path, epochs=1)
    cfg["Eval"] = None
    student(cfg)["Head"] = {"name": "ToyDetachedHead"}
    trainer = run.build_trainer(cfg, logger)
    mean, var = _bn_stats(trainer.model, "Student")
    trainer.train()
    text = log_text()
    assert ("Student: 4 of 6 trainable parameters received no gradient in the first step, so "
            "they are not trained: backbone.conv.weight, backbone.conv.bias, backbone.bn.weight, "
            "backbone.bn.bias") in text
    assert text.count("received no gradient") == 1  # once
    assert "Student: 1 BatchNorm layers get no gradient" in text and "backbone.bn" in text
    # the statistics moved by the first step were put back, and did not move afterwards
    after = _bn_stats(trainer.model, "Student")
    np.testing.assert_array_equal(after[0], mean)
    np.testing.assert_array_equal(after[1], var)
    assert setup.unwrap(trainer.model).Student.pinned_layer_names == ["backbone.bn"]


def test_freeze_bn_stats_false_keeps_statistics_updating(tmp_path, logger, log_text):
    cfg = toy_components.toy_train_config(tmp_path, epochs=1)
    cfg["Eval"] = None
    student(cfg)["Head"] = {"name": "ToyDetachedHead"}
    student(cfg)["freeze_bn_stats"] = False
    trainer = run.build_trainer(cfg, logger)
    mean, _ = _bn_stats(trainer.model, "Student")
    trainer.train()
    assert "received no gradient" in log_text()
    assert "BatchNorm layers get no gradient" not in log_text()
    assert not np.array_equal(_bn_stats(trainer.model, "Student")[0], mean)


def test_freeze_bn_stats_true_fixes_statistics_but_trains_weights(tmp_path, logger):
    cfg = toy_components.toy_train_config(tmp_path, epochs=1)
    cfg["Eval"] = None
    student(cfg)["freeze_bn_stats"] = True
    trainer = run.build_trainer(cfg, logger)
    model = setup.unwrap(trainer.model)
    mean, var = _bn_stats(model, "Student")
    weight = model.Student.backbone.bn.weight.numpy().copy()
    trainer.train()
    np.testing.assert_array_equal(_bn_stats(model, "Student")[0], mean)
    np.testing.assert_array_equal(_bn_stats(model, "Student")[1], var)
    assert not np.array_equal(model.Student.backbone.bn.weight.numpy(), weight)


def test_freeze_bn_stats_single_model_and_bad_value():
    from conftest import toy_model_config

    from ppdistill.modeling.architectures import build_model
    model = build_model(dict(toy_model_config(), freeze_bn_stats=True))
    model.train()
    before = model.backbone.bn._mean.numpy().copy()
    model(paddle.rand([2, 3, 8, 8]))
    np.testing.assert_array_equal(model.backbone.bn._mean.numpy(), before)
    with pytest.raises(ConfigError, match=r"Architecture.freeze_bn_stats: expected true or false"):
        build_model(dict(toy_model_config(), freeze_bn_stats="yes"))


# ----------------------------------------------------------------------------- the metric
def test_misspelt_metric_key_fails_at_start(tmp_path, logger):
    cfg = toy_components.toy_train_config(tmp_path / "out")
    cfg["Metric"]["key"] = "Studnet"
    with pytest.raises(ConfigError, match=r"Metric.key: no sub-model 'Studnet'; did you mean "
                                          r"'Student'"):
        run.train(cfg, logger)
    assert not (tmp_path / "out" / "latest.pdparams").exists()
    cfg["Metric"].pop("key")
    with pytest.raises(ConfigError, match=r"Metric.key: missing"):
        run.train(cfg, logger)


def test_wrong_main_indicator_fails_at_start(tmp_path, logger):
    cfg = toy_components.toy_train_config(tmp_path / "out")
    cfg["Metric"]["main_indicator"] = "hmean"
    with pytest.raises(ConfigError, match=r"Metric.main_indicator: DistillationMetric returns no "
                                          r"'hmean' \(it returns: score\)"):
        run.train(cfg, logger)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_metric_that_cannot_report_early_is_checked_at_first_eval(tmp_path, logger, monkeypatch):
    monkeypatch.setattr(setup, "expected_indicators", lambda metric: None)
    monkeypatch.setattr(toy_components.ToyMapMetric, "get_metric", lambda self: {"other": 1.0})
    cfg = toy_components.toy_train_config(tmp_path / "out")
    with pytest.raises(ConfigError, match=r"returned no 'score'"):
        run.train(cfg, logger)


# ---------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_saves_latest_and_exits_with_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    cfg = toy_components.toy_train_config(out, epochs=3)
    cfg["Eval"] = None  # no progress bar on stderr
    config_path = tmp_path / "toy.yml"
    config_path.write_text(yaml.safe_dump(cfg))
    original, calls = Trainer.train_step, []

    def interrupted_at_step_6(self, batch):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted_at_step_6)
    with pytest.raises(SystemExit) as exit_info:
        run.train_main(["-c", str(config_path)])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interrupted at global_step 5; resume with "
                   f"-o Global.checkpoints={out / 'latest'}"]
    states = safe_load(str(out / "latest.states"))
    assert states["global_step"] == 5 and states["epoch"] == 1  # epoch 2 was not finished
    monkeypatch.setattr(Trainer, "train_step", original)
    cfg = toy_components.toy_train_config(tmp_path / "out2", epochs=3,
                                          checkpoints=str(out / "latest"))
    run.train(cfg, get_logger())
    assert safe_load(str(tmp_path / "out2" / "latest.states"))["global_step"] == 5 + 8


def test_freeze_bn_stats_can_be_set_with_an_override(tmp_path):
    from ppdistill.utils.config import merge_overrides
    cfg = toy_components.toy_train_config(tmp_path)
    cfg = merge_overrides(cfg, ["Architecture.Models.Student.freeze_bn_stats=true"])
    assert student(cfg)["freeze_bn_stats"] is True
    with pytest.raises(ConfigError, match=r"did you mean 'freeze_bn_stats'"):
        merge_overrides(cfg, ["Architecture.Models.Teacher.freeze_bn_stat=true"])


@pytest.mark.slow
def test_ctc_only_loss_on_pp_ocrv3_rec_pins_the_untouched_backbone(tmp_path, monkeypatch,
                                                                   log_text):
    # the v3 CTC neck (svtr, use_guide) detaches its input: with a CTC-only loss the backbone
    # gets no gradient, and its BN statistics must not follow the training batches
    import os

    from ppdistill.demo.rec_data import make_rec_dataset
    from ppdistill.utils.config import load_with_overrides
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    make_rec_dataset(root=str(tmp_path / "train_data/rec"), num_train=4, num_val=2, seed=3,
                     with_lmdb=False)
    monkeypatch.chdir(tmp_path)
    config = load_with_overrides(os.path.join(repo, "configs/rec/ch_PP-OCRv3_rec.yml"), [
        "Global.use_gpu=false", "Train.loader.batch_size_per_card=2", "Train.loader.num_workers=0",
        "Optimizer.lr.warmup_epoch=0", "Loss.loss_config_list=[{CTCLoss: null}]",
        f"Global.save_model_dir={tmp_path / 'out'}"])
    trainer = run.build_trainer(config, get_logger())
    model = setup.unwrap(trainer.model)
    stem = model.backbone.conv1._batch_norm
    neck_bn = model.head.ctc_encoder.encoder.conv1.norm
    before = stem._mean.numpy().copy(), neck_bn._mean.numpy().copy()
    batches = iter(trainer.train_loader)
    for _ in range(2):
        trainer.train_step(next(batches))
    text = log_text()
    assert "Architecture: " in text and "received no gradient in the first step" in text
    assert "backbone.conv1._conv.weight" in text
    assert "BatchNorm layers get no gradient" in text
    np.testing.assert_array_equal(stem._mean.numpy(), before[0])
    assert not np.array_equal(neck_bn._mean.numpy(), before[1])  # the CTC neck trains
