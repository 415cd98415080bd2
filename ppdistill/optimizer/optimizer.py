"""Optimizers for the ``Optimizer`` section, with PaddleOCR's argument names.

Each class keeps its configuration and is called with the model to create the paddle optimizer
over the model's *trainable* parameters only (a frozen teacher, ``freeze_params: true``, is not
handed to the optimizer, so it gets neither moments nor weight decay).
"""
import paddle

from ppdistill.registry import OPTIMIZERS, ConfigError

__all__ = ["Adam", "AdamW", "SGD", "Momentum", "trainable_parameters"]


def trainable_parameters(model):
    """The parameters of ``model`` that are trained (``stop_gradient`` False)."""
    params = [p for p in model.parameters() if not p.stop_gradient]
    if not params:
        raise ConfigError("Optimizer: the model has no trainable parameter (is every sub-model "
                          "frozen with freeze_params: true?)")
    return params


def _number(value, what, low=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{what} must be >= {low}, got {value!r}")
    return float(value)


@OPTIMIZERS.register()
class Adam:
    """Adam (Kingma & Ba): ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``w -= lr * m_hat / (sqrt(v_hat) + epsilon)``.

    Args: learning_rate (set from ``lr``), beta1, beta2, epsilon, weight_decay (a float is L2
    decay; ``regularizer`` is the usual way), grad_clip (set from ``clip_norm`` /
    ``clip_norm_global``), lazy_mode.

    YAML::

        Optimizer:
          name: Adam
          beta1: 0.9
          beta2: 0.999
          clip_norm: 10
          lr: {name: Cosine, learning_rate: 0.001, warmup_epoch: 2}
          regularizer: {name: L2, factor: 5.0e-05}
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08,
                 weight_decay=None, grad_clip=None, lazy_mode=False):
        self.learning_rate = learning_rate
        self.beta1 = _number(beta1, "beta1", 0.0)
        self.beta2 = _number(beta2, "beta2", 0.0)
        self.epsilon = _number(epsilon, "epsilon", 0.0)
        self.weight_decay, self.grad_clip = weight_decay, grad_clip
        self.lazy_mode = bool(lazy_mode)

    def __call__(self, model):
        return paddle.optimizer.Adam(
            learning_rate=self.learning_rate, beta1=self.beta1, beta2=self.beta2,
            epsilon=self.epsilon, parameters=trainable_parameters(model),
            weight_decay=self.weight_decay, grad_clip=self.grad_clip, lazy_mode=self.lazy_mode)


@OPTIMIZERS.register()
class AdamW:
    """Adam with decoupled weight decay: ``w -= lr * (adam_update + weight_decay * w)``.

    Args: learning_rate, beta1, beta2, epsilon, weight_decay (float, default 0.01),
    multi_precision, grad_clip, lazy_mode, no_weight_decay_name (space-separated substrings
    of structured parameter names, e.g. ``"norm pos_embed"``, or a list) and
    one_dim_param_no_weight_decay (no decay on biases/norm scales): those parameters are not
    decayed.

    YAML::

        Optimizer:
          name: AdamW
          beta1: 0.9
          beta2: 0.99
          epsilon: 1.0e-08
          weight_decay: 0.05
          no_weight_decay_name: norm pos_embed
          one_dim_param_no_weight_decay: true
          lr: {name: Cosine, learning_rate: 0.0005, warmup_epoch: 2}
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08,
                 weight_decay=0.01, multi_precision=False, grad_clip=None,
                 no_weight_decay_name=None, one_dim_param_no_weight_decay=False,
                 lazy_mode=False):
        self.learning_rate = learning_rate
        self.beta1 = _number(beta1, "beta1", 0.0)
        self.beta2 = _number(beta2, "beta2", 0.0)
        self.epsilon = _number(epsilon, "epsilon", 0.0)
        if weight_decay is not None and not isinstance(weight_decay, (int, float)):
            raise ValueError("AdamW decays weights itself: set weight_decay: <float> instead "
                              "of a regularizer section")
        self.weight_decay = 0.01 if weight_decay is None else _number(weight_decay,
                                                                      "weight_decay", 0.0)
        self.multi_precision, self.grad_clip = bool(multi_precision), grad_clip
        if isinstance(no_weight_decay_name, str):
            no_weight_decay_name = no_weight_decay_name.split()
        self.no_weight_decay_name = list(no_weight_decay_name or [])
        self.one_dim_param_no_weight_decay = bool(one_dim_param_no_weight_decay)
        self.lazy_mode = bool(lazy_mode)

    def no_decay_param_names(self, model):
        """``param.name`` of every parameter that is not decayed."""
        names = set()
        for structured, param in model.named_parameters():
            if any(part in structured for part in self.no_weight_decay_name):
                names.add(param.name)
            elif self.one_dim_param_no_weight_decay and len(param.shape) == 1:
                names.add(param.name)
        return names

    def __call__(self, model):
        no_decay = self.no_decay_param_names(model)
        return paddle.optimizer.AdamW(
            learning_rate=self.learning_rate, beta1=self.beta1, beta2=self.beta2,
            epsilon=self.epsilon, parameters=trainable_parameters(model),
            weight_decay=self.weight_decay, multi_precision=self.multi_precision,
            grad_clip=self.grad_clip, lazy_mode=self.lazy_mode,
            apply_decay_param_fun=lambda name: name not in no_decay)


@OPTIMIZERS.register()
class SGD:
    """Plain stochastic gradient descent: ``w -= lr * g``.

    YAML::

        Optimizer:
          name: SGD
          lr: {name: Piecewise, decay_epochs: [30, 60], values: [0.1, 0.01, 0.001]}
          regularizer: {name: L2, factor: 1.0e-04}
    """

    def __init__(self, learning_rate=0.001, weight_decay=None, grad_clip=None,
                 multi_precision=False):
        self.learning_rate, self.weight_decay, self.grad_clip = (learning_rate, weight_decay,
                                                                 grad_clip)
        self.multi_precision = bool(multi_precision)

    def __call__(self, model):
        return paddle.optimizer.SGD(
            learning_rate=self.learning_rate, parameters=trainable_parameters(model),
            weight_decay=self.weight_decay, grad_clip=self.grad_clip,
            multi_precision=self.multi_precision)


@OPTIMIZERS.register()
class Momentum:
    """SGD with momentum: ``v = momentum * v + g``, ``w -= lr * v``.

    YAML::

        Optimizer:
          name: Momentum
          momentum: 0.9
          lr: {name: Cosine, learning_rate: 0.01, warmup_epoch: 1}
          regularizer: {name: L2, factor: 4.0e-05}
    """

    def __init__(self, learning_rate, momentum, weight_decay=None, grad_clip=None):
        self.learning_rate = learning_rate
        self.momentum = _number(momentum, "momentum", 0.0)
        self.weight_decay, self.grad_clip = weight_decay, grad_clip

    def __call__(self, model):
        return paddle.optimizer.Momentum(
            learning_rate=self.learning_rate, momentum=self.momentum,
            parameters=trainable_parameters(model), weight_decay=self.weight_decay,
            grad_clip=self.grad_clip)
