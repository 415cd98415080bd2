"""Weight-decay regularizers for the ``Optimizer.regularizer`` section (PaddleOCR names)."""
import paddle

from ppdistill.registry import ConfigError, Registry

__all__ = ["REGULARIZERS", "L1Decay", "L2Decay", "build_regularizer"]

REGULARIZERS = Registry("regularizer")


def _check_factor(factor):
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 0:
        raise ValueError(f"factor must be a number >= 0, got {factor!r}")
    return float(factor)


class L1Decay:
    """L1 weight decay: adds ``factor * sign(w)`` to every gradient (loss += factor * sum|w|).

    Parameters whose ``ParamAttr`` carries its own regularizer keep that one instead.

    YAML::

        Optimizer:
          regularizer:
            name: L1          # or L1Decay
            factor: 1.0e-05
    """

    def __init__(self, factor=0.0):
        self.factor = _check_factor(factor)

    def __call__(self):
        return paddle.regularizer.L1Decay(self.factor)


class L2Decay:
    """L2 weight decay: adds ``factor * w`` to every gradient (loss += factor/2 * sum w^2).

    Parameters whose ``ParamAttr`` carries its own regularizer keep that one instead (PaddleOCR's
    CTC head, for example, sets ``L2Decay(fc_decay)`` on its fc layers).

    YAML::

        Optimizer:
          regularizer:
            name: L2          # or L2Decay
            factor: 5.0e-05
    """

    def __init__(self, factor=0.0):
        self.factor = _check_factor(factor)

    def __call__(self):
        return paddle.regularizer.L2Decay(self.factor)


for _cls in (L1Decay, L2Decay):
    REGULARIZERS.register()(_cls)
    REGULARIZERS.register(_cls.__name__[:2])(_cls)


def build_regularizer(config, path="Optimizer.regularizer"):
    """``{name: L2, factor: 5e-5}`` -> ``paddle.regularizer.L2Decay(5e-5)``; None -> None."""
    if config is None:
        return None
    if not isinstance(config, dict) or "name" not in config:
        raise ConfigError(f"{path}: expected a mapping like {{name: L2, factor: 5.0e-05}}, "
                          f"got {config!r}")
    return REGULARIZERS.build(config, path)()
