"""Training setup in one place: freeze -> AMP decoration -> SyncBN -> DataParallel.

:func:`prepare_for_training` owns the order; ``build_trainer`` (behind ``tools/train.py``) and the
tests call it, nothing else wraps or decorates the model:

1. **Freeze.** ``freeze_params: true`` sub-models were frozen structurally when the
   DistillationModel was built (parameters not trainable, forward without a gradient graph,
   BatchNorm/Dropout pinned in eval mode at every forward). Here they are checked and reported;
   a frozen sub-model with no weights to load is a warning.
   Then each frozen sub-model's ``precision`` (e.g. a bfloat16 teacher) is resolved for the
   device (``ppdistill.modeling.precision.apply_precisions``), before AMP decoration.
2. **AMP decoration** (``Global.use_amp``, level O2): ``paddle.amp.decorate`` on the plain model
   and optimizer, before any wrapper (paddle refuses a DataParallel model at O2). It casts every
   sub-model, the frozen teacher too, which then runs in the AMP dtype under ``no_grad``; at O1
   the teacher's forward runs under the same ``auto_cast`` as the students'. No shipped config
   turns AMP on, and paddle's CPU build ignores ``auto_cast`` (it warns that AMP needs a GPU),
   so on the CPU AMP stays off with one warning.
3. **SyncBN** (``Global.use_sync_bn``, several processes): only trainable sub-models are converted;
   a frozen one has no statistics to synchronise.
4. **DataParallel** (several processes): a DistillationModel with frozen sub-models becomes a
   :class:`DistillationDataParallel`: the trainable sub-models run inside ``paddle.DataParallel``,
   the frozen ones outside it (nothing of theirs is all-reduced; their weights and buffers are
   broadcast from rank 0 once so every rank distils from the same teacher). Other models are
   wrapped in ``paddle.DataParallel`` as a whole.
"""
import copy

import paddle
from paddle import nn

from ppdistill.engine.amp import AmpContext
from ppdistill.engine.launch import world_size
from ppdistill.registry import ConfigError, suggest

__all__ = ["prepare_for_training", "DistillationDataParallel", "unwrap", "sub_models",
           "check_metric"]


def unwrap(model):
    """The model inside ``paddle.DataParallel`` / :class:`DistillationDataParallel`."""
    while isinstance(getattr(model, "_layers", None), nn.Layer):
        model = model._layers
    return model


def sub_models(model):
    """``{name: BaseModel}``: a DistillationModel's sub-models, or ``{"Architecture": model}``."""
    model = unwrap(model)
    names = getattr(model, "model_name_list", None)
    if names is None:
        return {"Architecture": model}
    return {name: getattr(model, name) for name in names}


class _TrainableSubModels(nn.Layer):
    """The trainable sub-models of a DistillationModel (shared, not copied), run by name."""

    def __init__(self, model):
        super().__init__()
        self._distillation = [model]  # a list: not registered as a sub-layer
        self.names = model.trainable_names
        for name in self.names:
            self.add_sublayer(name, getattr(model, name))

    def forward(self, x, data=None):
        return {name: self._distillation[0].run_sub_model(name, x, data) for name in self.names}


class DistillationDataParallel(nn.Layer):
    """A DistillationModel for multi-process training with its frozen sub-models kept outside
    ``paddle.DataParallel``.

    ``forward`` returns ``{name: output}`` in the model's order, like the DistillationModel;
    ``state_dict`` / ``set_state_dict`` are the DistillationModel's (no wrapper prefix), and
    ``_layers`` is the DistillationModel, as for ``paddle.DataParallel``. Built by
    :func:`prepare_for_training`; not configured in YAML.
    """

    def __init__(self, model, **data_parallel_args):
        super().__init__()
        self._layers = model
        self._frozen = [name for name in model.model_name_list if name in model.frozen_names]
        for name in self._frozen:
            for tensor in getattr(model, name).state_dict().values():
                paddle.distributed.broadcast(tensor, src=0)
        self._parallel = paddle.DataParallel(_TrainableSubModels(model), **data_parallel_args)

    def forward(self, x, data=None):
        trained = self._parallel(x, data)
        return {name: trained[name] if name in trained
                else self._layers.run_sub_model(name, x, data)
                for name in self._layers.model_name_list}

    def state_dict(self, *args, **kwargs):
        return self._layers.state_dict(*args, **kwargs)

    def set_state_dict(self, *args, **kwargs):
        return self._layers.set_state_dict(*args, **kwargs)


def _report_frozen(model, config, logger):
    frozen = sorted(getattr(model, "frozen_names", ()))
    if not frozen:
        return
    logger.info(f"frozen sub-models (eval-mode BatchNorm/Dropout, no gradient graph, not "
                f"trained): {', '.join(frozen)}")
    global_cfg = config.get("Global") or {}
    if global_cfg.get("checkpoints") or global_cfg.get("pretrained_model"):
        return
    without = [n for n in frozen if n not in getattr(model, "pretrained_names", ())]
    if without:
        logger.warning(f"frozen sub-model(s) {', '.join(without)} have no 'pretrained' file and "
                       f"neither Global.pretrained_model nor Global.checkpoints is set: they "
                       f"stay at their random initialisation")


def _convert_sync_batchnorm(model):
    names = getattr(model, "trainable_names", None)
    if names is None:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name in names:
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(getattr(model, name))
        if converted is not getattr(model, name):
            setattr(model, name, converted)
    return model


def prepare_for_training(model, optimizer, config, logger):
    """Return ``(train_model, optimizer, amp)`` with the steps of the module docstring applied
    in order. ``model`` is the plain (unwrapped) model, already loaded or resumed; ``amp`` is
    the :class:`AmpContext` the trainer's steps use. ``config`` is not modified."""
    global_cfg = copy.deepcopy(config.get("Global") or {})
    _report_frozen(model, config, logger)
    if getattr(model, "precisions", None):  # per-sub-model precision of frozen sub-models
        from ppdistill.modeling.precision import apply_precisions
        apply_precisions(model, logger)
    amp = AmpContext(global_cfg, logger)
    model, optimizer = amp.decorate(model, optimizer)
    if world_size() > 1:
        if global_cfg.get("use_sync_bn", False):
            model = _convert_sync_batchnorm(model)
        if getattr(model, "frozen_names", None):
            model = DistillationDataParallel(model)
        else:
            model = paddle.DataParallel(model)
    return model, optimizer, amp


# -------------------------------------------------------------------------------- the metric
def expected_indicators(metric):
    """The keys ``metric.get_metric()`` returns (for a DistillationMetric: the ``key`` model's),
    or None when they cannot be known before evaluating."""
    if hasattr(metric, "indicator_names"):
        return metric.indicator_names()
    try:
        result = copy.deepcopy(metric).get_metric()
    except Exception:  # a metric that cannot report before its first batch
        return None
    return list(result) if isinstance(result, dict) and result else None


def check_metric(metric, model):
    """Fail at start when the best model could never be tracked: a ``Metric.key`` that names no
    sub-model, or a ``main_indicator`` that the metric does not return."""
    if metric is None:
        return
    names = getattr(unwrap(model), "model_name_list", None)
    if names is not None and hasattr(metric, "key"):
        if metric.key is None:
            raise ConfigError(f"Metric.key: missing; name the sub-model whose metric selects the "
                              f"best model (one of: {', '.join(names)})")
        if metric.key not in names:
            raise ConfigError(f"Metric.key: no sub-model {metric.key!r}{suggest(metric.key, names)}"
                              f" in Architecture.Models (available: {', '.join(names)}); "
                              f"best_accuracy would never be written")
    main = getattr(metric, "main_indicator", None) or "acc"
    indicators = expected_indicators(metric)
    if indicators is not None and main not in indicators:
        raise ConfigError(f"Metric.main_indicator: {type(metric).__name__} returns no {main!r}"
                          f"{suggest(main, indicators)} (it returns: {', '.join(indicators)}); "
                          f"best_accuracy would never be written")
