"""Tiny registered dataset / post-process / metric for trainer tests (no real OCR data needed)."""
import numpy as np
import paddle

from ppdistill.registry import DATASETS, METRICS, POSTPROCESS


@DATASETS.register("ToyMapDataSet")
class ToyMapDataSet(paddle.io.Dataset):
    """Random 3x16x16 images with a fixed target map, deterministic per index."""

    def __init__(self, num_samples=8, size=16, global_config=None, mode="train", seed=None):
        self.num_samples, self.size = num_samples, size

    def __len__(self):
        return self.num_samples

    def __getitem__(self, idx):
        rng = np.random.RandomState(idx)
        image = rng.rand(3, self.size, self.size).astype("float32")
        target = (image.mean(0, keepdims=True)[:, ::2, ::2] > 0.5).astype("float32")
        return [image, target]


@POSTPROCESS.register("ToyMapPostProcess")
class ToyMapPostProcess:
    def __init__(self, model_name=("Student",)):
        self.model_name = list(model_name)

    def __call__(self, preds, label):
        return {name: preds[name]["maps"].numpy()[:, 0] for name in self.model_name}


@METRICS.register("ToyMapMetric")
class ToyMapMetric:
    """1 - mean absolute error between the map and the target."""

    def __init__(self, main_indicator="score"):
        self.main_indicator = main_indicator
        self.reset()

    def __call__(self, pred, batch):
        self.errors.append(float(np.abs(pred - batch[1][:, 0]).mean()))

    def get_metric(self):
        out = {"score": 1.0 - float(np.mean(self.errors)) if self.errors else 0.0}
        self.reset()
        return out

    def reset(self):
        self.errors = []


def toy_train_config(save_dir, epochs=2, **global_overrides):
    model = {"model_type": "det", "algorithm": "DB",
             "Backbone": {"name": "ToyBackbone", "channels": 4}, "Head": {"name": "ToyHead"}}
    teacher = dict(model, freeze_params=True)
    glob = {"epoch_num": epochs, "print_batch_step": 1, "log_smooth_window": 5,
            "save_model_dir": str(save_dir), "save_epoch_step": 1, "eval_batch_step": [0, 2],
            "use_gpu": False, "seed": 7}
    glob.update(global_overrides)
    loader = {"shuffle": False, "drop_last": False, "batch_size_per_card": 2, "num_workers": 0}
    return {
        "Global": glob,
        "Architecture": {"name": "DistillationModel", "model_type": "det",
                         "algorithm": "Distillation",
                         "Models": {"Teacher": teacher, "Student": dict(model)}},
        "Loss": {"name": "CombinedLoss", "loss_config_list": [
            {"DistillationDMLLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]],
                                     "key": "maps", "maps_name": "thrink_maps"}},
            {"DistillationDistanceLoss": {"weight": 1.0, "mode": "l2",
                                          "model_name_pairs": [["Student", "Teacher"]],
                                          "key": "maps"}}]},
        "Optimizer": {"name": "Adam", "beta1": 0.9, "beta2": 0.999,
                      "lr": {"name": "Cosine", "learning_rate": 0.01, "warmup_epoch": 1}},
        "PostProcess": {"name": "ToyMapPostProcess", "model_name": ["Student"]},
        "Metric": {"name": "DistillationMetric", "base_metric_name": "ToyMapMetric",
                   "main_indicator": "score", "key": "Student"},
        "Train": {"dataset": {"name": "ToyMapDataSet", "num_samples": 8}, "loader": dict(loader)},
        "Eval": {"dataset": {"name": "ToyMapDataSet", "num_samples": 4}, "loader": dict(loader)},
    }
