"""After the first step: report trainable parameters that got no gradient, pin their BatchNorm.

A loss can leave whole parts of a trainable model untouched, e.g. a CTC-only loss on a PP-OCRv3/v4
rec model, whose CTC neck detaches its input: the backbone gets no gradient, yet its BatchNorm
statistics follow every training batch, which alone ruins a released model within tens of steps.

:class:`FirstStepAudit` runs once, between the first backward and the first optimizer step:

- for every trainable sub-model (``Architecture`` for a single model) whose trainable parameters
  did not all receive a gradient (``grad is None``), one warning with the count and the first
  names;
- in a sub-model whose ``freeze_bn_stats`` is left unset, each BatchNorm layer none of whose
  parameters received a gradient is pinned (eval mode, running statistics used and never
  updated: :meth:`BaseModel.pin_layers`) and its running statistics are put back to their values
  before the first step, which had already moved them; one info line lists the pinned layers.
  ``freeze_bn_stats: false`` keeps them updating; ``true`` pinned every BatchNorm from the start.
"""
import paddle

from ppdistill.engine.setup import sub_models
from ppdistill.modeling.architectures.base_model import BATCH_NORMS

_SHOW = 5


def _batch_norms(model):
    return [(name, layer) for name, layer in model.named_sublayers()
            if isinstance(layer, BATCH_NORMS)]


def _buffers(layer):
    return {key: value.numpy().copy() for key, value in layer.state_dict().items()
            if key.startswith("_")}  # _mean, _variance


class FirstStepAudit:
    """Call :meth:`snapshot` before the first forward and :meth:`check` after its backward."""

    def __init__(self, model, logger):
        self.groups = {name: sub for name, sub in sub_models(model).items()
                       if any(not p.stop_gradient for p in sub.parameters())}
        self.logger = logger
        self.done = False
        self.saved = {}

    def snapshot(self):
        """Keep the BatchNorm statistics that :meth:`check` may restore."""
        for group, model in self.groups.items():
            if getattr(model, "freeze_bn_stats", False) is None:
                self.saved[group] = {name: _buffers(layer) for name, layer in _batch_norms(model)}

    def check(self):
        """Report and pin as the module docstring says; returns ``{group: [unused names]}``."""
        if self.done:
            return {}
        self.done = True
        unused = {}
        for group, model in self.groups.items():
            trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
            missing = [n for n, p in trainable if p.grad is None]
            if not missing:
                continue
            unused[group] = missing
            more = f" ... and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
            self.logger.warning(
                f"{group}: {len(missing)} of {len(trainable)} trainable parameters received no "
                f"gradient in the first step, so they are not trained: "
                f"{', '.join(missing[:_SHOW])}{more} (does the loss reach them?)")
            if group in self.saved:
                self._pin_untrained_batch_norms(group, model, set(missing))
        self.saved = {}
        return unused

    def _pin_untrained_batch_norms(self, group, model, missing):
        pinned = []
        for name, layer in _batch_norms(model):
            params = [f"{name}.{key}" for key, param in layer.named_parameters()
                      if not param.stop_gradient]  # nn.BatchNorm lists _mean/_variance too
            if not params or not all(p in missing for p in params):
                continue
            for key, value in self.saved[group].get(name, {}).items():
                getattr(layer, key).set_value(paddle.to_tensor(value))
            pinned.append(name)
        if pinned:
            model.pin_layers(pinned)
            more = f" ... and {len(pinned) - _SHOW} more" if len(pinned) > _SHOW else ""
            self.logger.info(
                f"{group}: {len(pinned)} BatchNorm layers get no gradient: their running "
                f"statistics are restored to before the first step and kept fixed "
                f"(freeze_bn_stats: false keeps them updating): {', '.join(pinned[:_SHOW])}{more}")
