"""Run by test_distributed.py under paddle.distributed.launch (or alone): toy distillation.

``python dist_train_script.py OUT_DIR [MODE]``; every rank writes ``OUT_DIR/<mode>_rank<r>.npz``.

- ``basic``: train one epoch; save the final weights.
- ``frozen``: the Student keeps its BN statistics fixed (``freeze_bn_stats``, so batch statistics
  do not depend on the per-rank batch) and the run is compared with a one-process run of the same
  global batch (``BATCH`` = global batch / processes); the Teacher's tensors are saved before and
  after training.
- ``nonfinite``: rank 1's first loss is NaN. First with ``skip_nonfinite_loss`` (every rank must
  skip that step), then without it (every rank must stop with NonFiniteLossError).
"""
import os
import sys

import numpy as np
import paddle

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import conftest  # noqa: E402,F401  (registers the toy backbone/head)
import toy_components  # noqa: E402

from ppdistill.engine.launch import prepare_run  # noqa: E402
from ppdistill.engine.run import build_trainer  # noqa: E402
from ppdistill.engine.trainer import NonFiniteLossError  # noqa: E402
from ppdistill.losses.combined_loss import CombinedLoss  # noqa: E402


def unwrap(model):
    while hasattr(model, "_layers"):
        model = model._layers
    return model


def tensors(layer, prefix=""):
    return {prefix + k: v.numpy().copy() for k, v in layer.state_dict().items()}


def make_trainer(out_dir, **global_overrides):
    config = toy_components.toy_train_config(out_dir, epochs=1, distributed=True,
                                             **global_overrides)
    config["Eval"] = None
    config["Train"]["loader"]["batch_size_per_card"] = int(os.environ.get("BATCH", "2"))
    return config


def run_basic(out_dir, rank):
    config = make_trainer(out_dir)
    trainer = build_trainer(config, prepare_run(config))
    trainer.train()
    return dict(tensors(unwrap(trainer.model)), steps=trainer.global_step)


def run_frozen(out_dir, rank):
    config = make_trainer(out_dir)
    config["Architecture"]["Models"]["Student"]["freeze_bn_stats"] = True
    trainer = build_trainer(config, prepare_run(config))
    model = unwrap(trainer.model)
    before = dict(tensors(model.Teacher, "before.Teacher."),
                  **tensors(model.Student, "before.Student."))
    trainer.train()
    return dict(before, **tensors(model), steps=trainer.global_step,
                wrapper=type(trainer.model).__name__)


def run_nonfinite(out_dir, rank):
    original = CombinedLoss.forward
    calls = []

    def nan_on_rank1_first_call(self, predicts, batch):
        out = original(self, predicts, batch)
        calls.append(1)
        if rank == 1 and len(calls) == 1:
            out["loss"] = out["loss"] * float("nan")
        return out

    CombinedLoss.forward = nan_on_rank1_first_call
    config = make_trainer(out_dir, skip_nonfinite_loss=True)
    trainer = build_trainer(config, prepare_run(config))
    applied, step = [], trainer.optimizer.step
    trainer.optimizer.step = lambda: (applied.append(1), step())
    trainer.train()
    result = dict(tensors(unwrap(trainer.model)), steps=trainer.global_step,
                  optimizer_steps=len(applied))
    calls.clear()
    config = make_trainer(os.path.join(out_dir, "stop"), skip_nonfinite_loss=False)
    trainer = build_trainer(config, prepare_run(config))
    try:
        trainer.train()
        result["error"] = ""
    except NonFiniteLossError as exc:
        result["error"] = str(exc)
    result["steps_after_error"] = trainer.global_step
    return result


if __name__ == "__main__":
    out, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "basic")
    rank = paddle.distributed.get_rank()
    values = {"basic": run_basic, "frozen": run_frozen, "nonfinite": run_nonfinite}[mode](out, rank)
    np.savez(os.path.join(out, f"{mode}_rank{rank}.npz"),
             world=paddle.distributed.get_world_size(), **values)
