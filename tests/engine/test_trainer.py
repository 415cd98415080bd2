"""The training loop on toy components: logging, eval, best model, checkpoints, resume."""
import logging
import numpy as np
import pytest
import toy_components  # noqa: F401  (registers the toy dataset/post-process/metric)

from ppdistill.engine import run
from ppdistill.engine.trainer import NonFiniteLossError
from ppdistill.utils.logging import get_logger
from ppdistill.utils.safe_load import safe_load


@pytest.fixture()
def logger():
    return get_logger()


def test_train_logs_evaluates_and_saves(tmp_path, logger, caplog):
    cfg = toy_components.toy_train_config(tmp_path / "out", epochs=2)
    with caplog.at_level(logging.INFO, logger="ppdistill"):
        logger.propagate = True
        try:
            best = run.train(cfg, logger)
        finally:
            logger.propagate = False
    text = caplog.text
    assert "epoch: [1/2], global_step: 1, lr: " in text
    assert "dml_thrink_maps_0: " in text and "avg_reader_cost: " in text and "eta: " in text
    assert "ips: " in text and "loss: " in text
    assert "cur metric, score: " in text
    assert "score" in best and best["score"] > 0
    out = tmp_path / "out"
    for prefix in ("latest", "best_accuracy", "iter_epoch_1", "iter_epoch_2"):
        for ext in (".pdparams", ".pdopt", ".states"):
            assert (out / f"{prefix}{ext}").is_file(), prefix + ext
    student = safe_load(str(out / "best_model_student.pdparams"))
    assert "backbone.conv.weight" in student and not any(k.startswith("Student.") for k in student)
    states = safe_load(str(out / "latest.states"))
    assert states["epoch"] == 2 and states["global_step"] == 8


def test_resume_restores_epoch_step_lr_and_moments(tmp_path, logger):
    out = tmp_path / "out"
    run.train(toy_components.toy_train_config(out, epochs=1), logger)
    ckpt = str(out / "latest")
    opt_state = safe_load(ckpt + ".pdopt")
    cfg = toy_components.toy_train_config(tmp_path / "out2", epochs=1, checkpoints=ckpt)
    from ppdistill.engine.components import build_for_eval
    from ppdistill.optimizer import build_optimizer
    from ppdistill.utils.save_load import load_model
    cfg, model, _, _ = build_for_eval(cfg)
    optimizer, lr_scheduler = build_optimizer(cfg["Optimizer"], epochs=1, step_each_epoch=4,
                                              model=model)
    state = load_model(cfg, model, optimizer, "det")
    assert state["start_epoch"] == 2 and state["global_step"] == 4
    assert lr_scheduler.last_epoch == opt_state["LR_Scheduler"]["last_epoch"]
    # paddle names optimizer state after creation-order parameter names (conv2d_N.w_0), which
    # differ in a rebuilt model: map the saved names to the current ones via the name table
    table = safe_load(ckpt + ".pdparams", keep_name_table=True)["StructuredToParameterName@@"]
    restored = optimizer._accumulators_holder
    checked = 0
    for structured, old in table.items():
        if old + "_moment1_0" in opt_state:
            new_key = model.state_dict()[structured].name + "_moment1_0"
            np.testing.assert_allclose(np.asarray(restored[new_key]),
                                       np.asarray(opt_state[old + "_moment1_0"]))
            checked += 1
    assert checked == 6
    # continuing training goes on from epoch 2
    best = run.train(toy_components.toy_train_config(tmp_path / "out3", epochs=2, checkpoints=ckpt),
                     logger)
    states = safe_load(str(tmp_path / "out3" / "latest.states"))
    assert states["epoch"] == 2 and states["global_step"] == 8
    assert "score" in best


def test_non_finite_loss_stops_with_terms(tmp_path, logger, monkeypatch):
    cfg = toy_components.toy_train_config(tmp_path / "out", epochs=1)
    from ppdistill.losses.combined_loss import CombinedLoss
    original = CombinedLoss.forward

    def broken(self, predicts, batch):
        out = original(self, predicts, batch)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(CombinedLoss, "forward", broken)
    with pytest.raises(NonFiniteLossError, match=r"global_step 1: dml_thrink_maps_0: .*loss: nan"):
        run.train(cfg, logger)


def test_max_iters_and_bad_loss_model_name(tmp_path, logger):
    cfg = toy_components.toy_train_config(tmp_path / "out", epochs=5, max_iters=3)
    run.train(cfg, logger)
    assert safe_load(str(tmp_path / "out" / "latest.states"))["global_step"] == 3
    cfg = toy_components.toy_train_config(tmp_path / "o2")
    cfg["Loss"]["loss_config_list"][0]["DistillationDMLLoss"]["model_name_pairs"] = [["Student", "Teachr"]]
    from ppdistill.registry import ConfigError
    with pytest.raises(ConfigError, match=r"no sub-model 'Teachr'; did you mean 'Teacher'"):
        run.train(cfg, logger)


def test_eval_all_sub_models(tmp_path, logger):
    out = tmp_path / "out"
    run.train(toy_components.toy_train_config(out, epochs=1), logger)
    cfg = toy_components.toy_train_config(out, epochs=1, checkpoints=str(out / "latest"))
    metrics = run.evaluate_config(cfg, logger)
    assert "score" in metrics and "Teacher_score" in metrics
