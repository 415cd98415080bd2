"""Learning-rate schedules for the ``Optimizer.lr`` section (PaddleOCR names and semantics).

Every schedule counts *iterations*: the trainer calls ``lr_scheduler.step()`` after each
optimizer step, so epochs in the config are converted with ``step_each_epoch``. With
``warmup_epoch > 0`` the schedule is wrapped in ``paddle.optimizer.lr.LinearWarmup``: the rate
rises linearly from 0.0 to the base rate over ``round(warmup_epoch * step_each_epoch)`` steps,
then the wrapped schedule runs from *its own* step 0 (so a Cosine schedule after warmup is
``cos`` of ``step - warmup_steps`` with ``T_max`` still the total number of steps, as in
PaddleOCR).
"""
from paddle.optimizer import lr as paddle_lr

from ppdistill.registry import LR_SCHEDULERS, ConfigError

__all__ = ["Const", "Linear", "Cosine", "Piecewise", "Step", "build_lr_scheduler"]


def _positive_number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{what} must be a number > 0, got {value!r}")
    return float(value)


def _warmup_steps(warmup_epoch, step_each_epoch):
    if isinstance(warmup_epoch, bool) or not isinstance(warmup_epoch, (int, float)) \
            or warmup_epoch < 0:
        raise ValueError(f"warmup_epoch must be a number >= 0, got {warmup_epoch!r}")
    return int(round(warmup_epoch * step_each_epoch))


def _with_warmup(schedule, warmup_steps, end_lr, last_epoch):
    if warmup_steps <= 0:
        return schedule
    return paddle_lr.LinearWarmup(learning_rate=schedule, warmup_steps=warmup_steps,
                                  start_lr=0.0, end_lr=end_lr, last_epoch=last_epoch)


@LR_SCHEDULERS.register()
class Const:
    """A constant rate, optionally after a linear warmup.

    Without warmup the optimizer gets the plain float (no scheduler state), as in PaddleOCR.

    YAML::

        lr:
          name: Const
          learning_rate: 0.001
          warmup_epoch: 0
    """

    def __init__(self, learning_rate, step_each_epoch, epochs=None, warmup_epoch=0,
                 last_epoch=-1):
        self.learning_rate = _positive_number(learning_rate, "learning_rate")
        self.warmup_steps = _warmup_steps(warmup_epoch, step_each_epoch)
        self.last_epoch = last_epoch

    def __call__(self):
        return _with_warmup(self.learning_rate, self.warmup_steps, self.learning_rate,
                            self.last_epoch)


@LR_SCHEDULERS.register()
class Linear:
    """Polynomial decay to ``end_lr`` over all training steps (``power: 1`` is linear).

    ``lr(t) = (learning_rate - end_lr) * (1 - t / (epochs * step_each_epoch)) ** power + end_lr``.

    YAML::

        lr:
          name: Linear
          learning_rate: 0.001
          end_lr: 0.0
          power: 1.0
          warmup_epoch: 1
    """

    def __init__(self, learning_rate, epochs, step_each_epoch, end_lr=0.0, power=1.0,
                 warmup_epoch=0, last_epoch=-1):
        self.learning_rate = _positive_number(learning_rate, "learning_rate")
        self.decay_steps = int(epochs * step_each_epoch)
        if self.decay_steps <= 0:
            raise ValueError(f"epochs * step_each_epoch must be > 0, got {epochs} * "
                              f"{step_each_epoch}")
        self.end_lr, self.power = float(end_lr), float(power)
        self.warmup_steps = _warmup_steps(warmup_epoch, step_each_epoch)
        self.last_epoch = last_epoch

    def __call__(self):
        schedule = paddle_lr.PolynomialDecay(
            learning_rate=self.learning_rate, decay_steps=self.decay_steps, end_lr=self.end_lr,
            power=self.power, last_epoch=self.last_epoch)
        return _with_warmup(schedule, self.warmup_steps, self.learning_rate, self.last_epoch)


@LR_SCHEDULERS.register()
class Cosine:
    """Cosine annealing over all training steps.

    ``lr(t) = learning_rate * (1 + cos(pi * t / T)) / 2`` with ``T = epochs * step_each_epoch``
    (``t`` counts from the end of the warmup).

    YAML::

        lr:
          name: Cosine
          learning_rate: 0.001
          warmup_epoch: 2
    """

    def __init__(self, learning_rate, step_each_epoch, epochs, warmup_epoch=0, last_epoch=-1):
        self.learning_rate = _positive_number(learning_rate, "learning_rate")
        self.t_max = int(step_each_epoch * epochs)
        if self.t_max <= 0:
            raise ValueError(f"epochs * step_each_epoch must be > 0, got {epochs} * "
                              f"{step_each_epoch}")
        self.warmup_steps = _warmup_steps(warmup_epoch, step_each_epoch)
        self.last_epoch = last_epoch

    def __call__(self):
        schedule = paddle_lr.CosineAnnealingDecay(
            learning_rate=self.learning_rate, T_max=self.t_max, last_epoch=self.last_epoch)
        return _with_warmup(schedule, self.warmup_steps, self.learning_rate, self.last_epoch)


@LR_SCHEDULERS.register()
class Piecewise:
    """Piecewise constant: ``values[i]`` until step ``decay_epochs[i] * step_each_epoch``.

    ``values`` has one entry more than ``decay_epochs``; the warmup ends at ``values[0]``.
    A list as long as ``decay_epochs`` (as in PaddleOCR's PP-OCRv2 rec configs) is accepted the
    way paddle's PiecewiseDecay treats it: the last value also holds after the last boundary.

    YAML::

        lr:
          name: Piecewise
          decay_epochs: [700]
          values: [0.0005, 0.00005]
          warmup_epoch: 5
    """

    def __init__(self, step_each_epoch, decay_epochs, values, epochs=None, warmup_epoch=0,
                 last_epoch=-1):
        if not isinstance(decay_epochs, (list, tuple)) or not isinstance(values, (list, tuple)):
            raise ValueError(f"decay_epochs and values must be lists, got {decay_epochs!r} and "
                              f"{values!r}")
        if len(values) == len(decay_epochs) and values:
            values = list(values) + [values[-1]]
        if len(values) != len(decay_epochs) + 1:
            raise ValueError(f"values needs one entry more than decay_epochs, got "
                              f"{len(values)} values for {len(decay_epochs)} decay_epochs")
        if list(decay_epochs) != sorted(decay_epochs):
            raise ValueError(f"decay_epochs must be increasing, got {list(decay_epochs)}")
        self.boundaries = [int(round(step_each_epoch * e)) for e in decay_epochs]
        self.values = [_positive_number(v, "each of values") for v in values]
        self.warmup_steps = _warmup_steps(warmup_epoch, step_each_epoch)
        self.last_epoch = last_epoch

    def __call__(self):
        schedule = paddle_lr.PiecewiseDecay(boundaries=self.boundaries, values=self.values,
                                            last_epoch=self.last_epoch)
        return _with_warmup(schedule, self.warmup_steps, self.values[0], self.last_epoch)


@LR_SCHEDULERS.register()
class Step:
    """Multiply the rate by ``gamma`` every ``step_size`` epochs.

    ``lr(t) = learning_rate * gamma ** floor(t / (step_size * step_each_epoch))``.

    YAML::

        lr:
          name: Step
          learning_rate: 0.001
          step_size: 10
          gamma: 0.1
    """

    def __init__(self, learning_rate, step_size, step_each_epoch, gamma=0.1, epochs=None,
                 warmup_epoch=0, last_epoch=-1):
        self.learning_rate = _positive_number(learning_rate, "learning_rate")
        self.step_size = max(int(round(_positive_number(step_size, "step_size")
                                       * step_each_epoch)), 1)
        self.gamma = float(gamma)
        self.warmup_steps = _warmup_steps(warmup_epoch, step_each_epoch)
        self.last_epoch = last_epoch

    def __call__(self):
        schedule = paddle_lr.StepDecay(learning_rate=self.learning_rate,
                                       step_size=self.step_size, gamma=self.gamma,
                                       last_epoch=self.last_epoch)
        return _with_warmup(schedule, self.warmup_steps, self.learning_rate, self.last_epoch)


def build_lr_scheduler(config, epochs, step_each_epoch, path="Optimizer.lr"):
    """Build ``Optimizer.lr``; returns a ``paddle.optimizer.lr.LRScheduler`` or a float.

    ``name`` defaults to ``Const`` (as in PaddleOCR); a bare number means a constant rate.
    ``epochs`` and ``step_each_epoch`` come from the trainer, not from the section.
    """
    if isinstance(config, (int, float)) and not isinstance(config, bool):
        config = {"name": "Const", "learning_rate": config}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping like {{name: Cosine, learning_rate: "
                          f"0.001}}, got {config!r}")
    if isinstance(step_each_epoch, bool) or not isinstance(step_each_epoch, int) \
            or step_each_epoch <= 0:
        raise ConfigError(f"{path}: step_each_epoch must be a positive int (the number of "
                          f"batches per epoch), got {step_each_epoch!r}")
    config = dict(config)
    config.setdefault("name", "Const")
    if "step_each_epoch" in config:
        raise ConfigError(f"{path}: unexpected key 'step_each_epoch': it is the number of "
                          f"batches of the training data, not a config value")
    if "epochs" in config and config.pop("epochs") != epochs:
        raise ConfigError(f"{path}.epochs: the schedule always spans Global.epoch_num "
                          f"({epochs}) epochs; remove this key or make it equal")
    return LR_SCHEDULERS.build(config, path, epochs=epochs, step_each_epoch=step_each_epoch)()
