"""Run by test_distributed.py under paddle.distributed.launch: toy distillation training."""
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

out_dir = sys.argv[1]
config = toy_components.toy_train_config(out_dir, epochs=1, distributed=True)
config["Eval"] = None
logger = prepare_run(config)
trainer = build_trainer(config, logger)
trainer.train()
rank = paddle.distributed.get_rank()
model = trainer.model._layers if hasattr(trainer.model, "_layers") else trainer.model
weights = {k: v.numpy() for k, v in model.state_dict().items()}
np.savez(os.path.join(out_dir, f"rank{rank}.npz"), world=paddle.distributed.get_world_size(),
         steps=trainer.global_step, **weights)
