"""Optimizers, learning-rate schedules and regularizers; ``build_optimizer``.

``build_optimizer(config["Optimizer"], epochs, step_each_epoch, model)`` returns
``(optimizer, lr_scheduler)`` exactly like PaddleOCR's builder, from the same YAML::

    Optimizer:
      name: Adam
      beta1: 0.9
      beta2: 0.999
      clip_norm: 10                 # or clip_norm_global: 10
      lr: {name: Cosine, learning_rate: 0.001, warmup_epoch: 2}
      regularizer: {name: L2, factor: 5.0e-05}

Gradient clipping, as in PaddleOCR: ``clip_norm: c`` clips *each* parameter's gradient to norm
``c`` (``paddle.nn.ClipGradByNorm``); ``clip_norm_global: c`` rescales all gradients together
so that their global norm is at most ``c`` (``paddle.nn.ClipGradByGlobalNorm``).
"""
import copy

import paddle

from ppdistill.optimizer.learning_rate import build_lr_scheduler
from ppdistill.optimizer.regularizer import build_regularizer
from ppdistill.registry import OPTIMIZERS, ConfigError
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_optimizer", "build_lr_scheduler", "build_regularizer", "build_grad_clip"]

_CLIP_KEYS = {"clip_norm": paddle.nn.ClipGradByNorm,
              "clip_norm_global": paddle.nn.ClipGradByGlobalNorm}
_NOT_IN_SECTION = {
    "learning_rate": "set the rate in the 'lr' section, e.g. lr: {name: Const, learning_rate: x}",
    "grad_clip": "use clip_norm (per parameter) or clip_norm_global (all gradients together)",
    "parameters": "the optimizer always gets the model's trainable parameters",
}


def build_grad_clip(config, path="Optimizer"):
    """Pop ``clip_norm`` / ``clip_norm_global`` from ``config``; return the paddle clip or None."""
    given = [key for key in _CLIP_KEYS if config.get(key) is not None]
    for key in _CLIP_KEYS:
        if key in config and config[key] is None:
            config.pop(key)
    if len(given) > 1:
        raise ConfigError(f"{path}: set only one of clip_norm and clip_norm_global")
    if not given:
        return None
    key = given[0]
    value = config.pop(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{path}.{key}: expected a number > 0, got {value!r}")
    return _CLIP_KEYS[key](clip_norm=float(value))


def build_optimizer(config, epochs, step_each_epoch, model, path="Optimizer"):
    """Build the optimizer over ``model``'s trainable parameters and its LR schedule.

    Args:
        config: the ``Optimizer`` section (not modified).
        epochs: ``Global.epoch_num``; step_each_epoch: batches per epoch (schedules are
            per iteration).
        model: the model (its frozen parameters are left out).

    Returns ``(optimizer, lr_scheduler)``; ``lr_scheduler`` is a
    ``paddle.optimizer.lr.LRScheduler`` to ``step()`` after each iteration, or a float for a
    constant rate without warmup.
    """
    if not isinstance(config, dict) or "name" not in config:
        raise ConfigError(f"{path}: expected a mapping with a 'name' key, got {config!r}")
    config = copy.deepcopy(config)
    for key, hint in _NOT_IN_SECTION.items():
        if key in config:
            raise ConfigError(f"{path}: unexpected key '{key}': {hint}")
    if "lr" not in config:
        raise ConfigError(f"{path}: missing 'lr' section, e.g. lr: {{name: Cosine, "
                          f"learning_rate: 0.001, warmup_epoch: 2}}")
    OPTIMIZERS.get(config["name"], f"{path}.name")
    lr_scheduler = build_lr_scheduler(config.pop("lr"), epochs, step_each_epoch, f"{path}.lr")
    regularizer = build_regularizer(config.pop("regularizer", None), f"{path}.regularizer")
    extra = {"learning_rate": lr_scheduler, "grad_clip": build_grad_clip(config, path)}
    if regularizer is not None:
        if config.get("weight_decay") is not None:
            raise ConfigError(f"{path}: set either 'regularizer' or 'weight_decay', not both")
        config.pop("weight_decay", None)
        extra["weight_decay"] = regularizer
    builder = OPTIMIZERS.build(config, path, **extra)
    return builder(model), lr_scheduler
