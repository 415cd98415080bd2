"""train_log.jsonl (and optional VisualDL) written by the trainer: content, prefixes, resume."""
import json
import logging
import sys
import types

import numpy as np
import pytest
import toy_components  # noqa: F401  (registers the toy dataset/post-process/metric)

from ppdistill.engine import run
from ppdistill.engine.scalar_log import LOG_NAME, ScalarLog
from ppdistill.metrics.distillation_metric import DistillationMetric
from ppdistill.utils.logging import get_logger
from ppdistill.utils.stats import TrainingStats

LOSS_KEYS = {"loss", "dml_thrink_maps_0", "loss_distance_l2_Student_Teacher_0"}


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def logger():
    return get_logger()


class ListLogger:
    """Collects warnings/infos like a logging.Logger."""

    def __init__(self):
        self.warnings, self.infos = [], []

    def warning(self, message):
        self.warnings.append(message)

    def info(self, message):
        self.infos.append(message)


def test_training_writes_one_line_per_logged_step_and_eval(tmp_path, logger):
    run.train(toy_components.toy_train_config(tmp_path / "out", epochs=2), logger)
    records = read_lines(tmp_path / "out" / LOG_NAME)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    # 8 samples / batch 2 = 4 steps per epoch, print_batch_step 1, eval every 2 steps
    assert [r["global_step"] for r in train] == list(range(1, 9))
    assert [r["epoch"] for r in train] == [1] * 4 + [2] * 4
    assert [(r["global_step"], r["epoch"]) for r in evals] == [(2, 1), (4, 1), (6, 2), (8, 2)]
    for record in train:
        assert set(record) == LOSS_KEYS | {"lr", "kind", "global_step", "epoch"}
        assert record["loss"] == pytest.approx(
            record["dml_thrink_maps_0"] + record["loss_distance_l2_Student_Teacher_0"], rel=0.2)
    # lr: the value of the logged step (Cosine with one warm-up epoch of 4 steps: 0, 1/4 ...)
    assert [r["lr"] for r in train[:5]] == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01])
    for record in evals:  # the Metric.key model's metric gets its sub-model prefix
        assert set(record) == {"kind", "global_step", "epoch", "Student_score", "fps"}
        assert 0.0 < record["Student_score"] <= 1.0


def test_resume_keeps_earlier_lines_and_drops_later_ones(tmp_path, logger):
    out = tmp_path / "out"
    run.train(toy_components.toy_train_config(out, epochs=1), logger)
    log = out / LOG_NAME
    first = log.read_text().splitlines()
    assert len(first) == 6  # 4 train + 2 eval lines
    # lines of an abandoned continuation past the checkpoint, and a line cut by a crash
    with open(log, "a") as handle:
        handle.write(json.dumps({"kind": "train", "global_step": 5, "epoch": 2, "loss": 9.0}))
        handle.write("\n{\"kind\": \"tra\n")
    run.train(toy_components.toy_train_config(out, epochs=2, checkpoints=str(out / "latest")),
              logger)
    lines = log.read_text().splitlines()
    assert lines[:6] == first
    records = [json.loads(line) for line in lines]
    steps = [r["global_step"] for r in records if r["kind"] == "train"]
    assert steps == list(range(1, 9))  # each step once; the stale step-5 line is gone
    assert all(r.get("loss") != 9.0 for r in records)
    # a fresh run (global step 0) in the same folder starts a new log
    run.train(toy_components.toy_train_config(out, epochs=1), logger)
    assert [json.loads(x)["global_step"] for x in log.read_text().splitlines()] == \
        [1, 2, 2, 3, 4, 4]


def test_unreadable_lines_are_reported(tmp_path):
    (tmp_path / LOG_NAME).write_text('{"kind": "train", "global_step": 1, "loss": 1.0}\n{"kin\n')
    sink = ListLogger()
    ScalarLog(str(tmp_path), start_step=3, logger=sink)
    assert (tmp_path / LOG_NAME).read_text().count("\n") == 1
    assert sink.warnings == [f"{tmp_path / LOG_NAME}: dropped 1 unreadable line(s)"]


def test_only_the_main_rank_writes(tmp_path):
    log = ScalarLog(str(tmp_path / "out"), enabled=False, use_visualdl=True)
    log.log_train(1, 1, {"loss": 1.0})
    log.log_eval(1, 1, {"acc": 0.5})
    assert log.close() is None and not (tmp_path / "out").exists()


def test_distillation_metrics_get_sub_model_prefixes(tmp_path):
    metric = DistillationMetric(key="Student", base_metric_name="RecMetric",
                                main_indicator="acc")
    metric._init_metrics({"Student": None, "Teacher": None})
    log = ScalarLog(str(tmp_path), metric=metric)
    stats = TrainingStats(3)
    for lr in (0.1, 0.2, 0.3):
        stats.update({"loss_ctc_Student_0": 2.0, "loss": 3.0, "lr": lr, "acc": 0.5,
                      "norm_edit_dis": 0.75, "Teacher_acc": 0.25})
    log.log_train(7, 2, stats)
    log.log_eval(8, 2, {"acc": 0.5, "norm_edit_dis": 0.9, "Teacher_acc": 0.6,
                        "Teacher_norm_edit_dis": 0.95, "fps": 10.0})
    train, evaluation = read_lines(tmp_path / LOG_NAME)
    assert train == {"kind": "train", "global_step": 7, "epoch": 2, "loss_ctc_Student_0": 2.0,
                     "loss": 3.0, "lr": 0.3, "Student_acc": 0.5, "Student_norm_edit_dis": 0.75,
                     "Teacher_acc": 0.25}
    assert evaluation == {"kind": "eval", "global_step": 8, "epoch": 2, "Student_acc": 0.5,
                          "Student_norm_edit_dis": 0.9, "Teacher_acc": 0.6,
                          "Teacher_norm_edit_dis": 0.95, "fps": 10.0}


def test_plain_metric_keys_stay_unprefixed_nan_is_null_and_non_numbers_are_dropped(tmp_path):
    log = ScalarLog(str(tmp_path))
    log.log_eval(3, 1, {"hmean": 0.5, "best_epoch": 1, "note": "text", "flag": True,
                        "recall": float("nan"), "precision": np.float32(0.25)})
    assert (tmp_path / LOG_NAME).read_text() == (
        '{"kind": "eval", "global_step": 3, "epoch": 1, "hmean": 0.5, "best_epoch": 1.0, '
        '"recall": null, "precision": 0.25}\n')


def test_visualdl_missing_warns_once_and_keeps_the_jsonl(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "visualdl", None)  # import visualdl -> ImportError
    sink = ListLogger()
    log = ScalarLog.from_config({"use_visualdl": True}, str(tmp_path), 0, enabled=True,
                                logger=sink)
    log.log_train(1, 1, {"loss": 1.0, "lr": 0.1})
    log.log_train(2, 1, {"loss": 0.5, "lr": 0.1})
    log.close()
    assert len(sink.warnings) == 1
    assert sink.warnings[0].startswith("Global.use_visualdl: the visualdl package is not "
                                       "installed")
    assert len(read_lines(tmp_path / LOG_NAME)) == 2 and not (tmp_path / "vdl").exists()


def test_visualdl_gets_train_and_eval_scalars(tmp_path, monkeypatch):
    calls = []

    class FakeWriter:
        def __init__(self, logdir):
            calls.append(("open", logdir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "visualdl", types.SimpleNamespace(LogWriter=FakeWriter))
    log = ScalarLog(str(tmp_path), use_visualdl=True)
    log.log_train(1, 1, {"loss": 1.0, "lr": 0.1})
    log.log_eval(1, 1, {"hmean": float("nan"), "precision": 0.5})
    log.close()
    assert calls == [("open", str(tmp_path / "vdl")), ("TRAIN/loss", 1.0, 1),
                     ("TRAIN/lr", 0.1, 1), ("EVAL/precision", 0.5, 1), ("close",)]


def test_plot_curves_at_the_end_of_training(tmp_path, logger, caplog):
    out = tmp_path / "out"
    cfg = toy_components.toy_train_config(out, epochs=1, plot_curves=True)
    with caplog.at_level(logging.INFO, logger="ppdistill"):
        logger.propagate = True
        try:
            run.train(cfg, logger)
        finally:
            logger.propagate = False
    assert (out / "curves.png").stat().st_size > 10000
    assert f"training curves drawn to {out / 'curves.png'}" in caplog.text
