"""CombinedLoss: the weighted sum of a list of losses, each term logged under its own key."""
import copy

import paddle
from paddle import nn

from ppdistill.registry import LOSSES, ConfigError


@LOSSES.register()
class CombinedLoss(nn.Layer):
    """``loss = Σ_i weight_i · loss_i(predicts, batch)``.

    ``loss_config_list`` is PaddleOCR's list of one-key mappings ``{LossName: {weight: w, ...}}``;
    ``weight`` is required. Each loss returns a dict of terms (and possibly its own ``loss``);
    every term is multiplied by its weight and kept under its key. The total adds each loss's
    ``loss`` entry, or the sum of its terms when it has none. The output is
    ``{term: value, ..., "loss": total}``, all 0-D.

    Differences from PaddleOCR: two losses never overwrite each other's log key (a clash gets
    the suffix ``_<list index>``), and a loss returning a bare tensor is logged as
    ``<LossName>_<index>`` instead of a key containing the tensor's printed value.
    ``str(loss)`` / :meth:`formula` give e.g. ``loss = 1.0 * DistillationDMLLoss(dml_ctc) + ...``.

    YAML::

        Loss:
          name: CombinedLoss
          loss_config_list:
          - DistillationDMLLoss: {weight: 1.0, model_name_pairs: [[Student, Teacher]], key: maps,
                                  maps_name: thrink_maps}
          - DistillationDBLoss: {weight: 1.0, model_name_list: [Student]}
    """

    def __init__(self, loss_config_list):
        super().__init__()
        if not isinstance(loss_config_list, (list, tuple)) or not loss_config_list:
            raise ConfigError("Loss.loss_config_list: expected a non-empty list of "
                              "{LossName: {weight: ..., ...}} entries")
        losses, self.weights, self.labels = [], [], []
        for i, entry in enumerate(loss_config_list):
            path = f"Loss.loss_config_list[{i}]"
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError(f"{path}: expected a one-key mapping {{LossName: params}}, "
                                  f"got {entry!r}")
            name, params = next(iter(entry.items()))
            params = copy.deepcopy(params) if params else {}
            if not isinstance(params, dict) or "weight" not in params:
                raise ConfigError(f"{path}.{name}: missing 'weight'")
            weight = params.pop("weight")
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                raise ConfigError(f"{path}.{name}.weight: expected a number, got {weight!r}")
            losses.append(LOSSES.build_single_key({name: params}, path))
            self.weights.append(float(weight))
            label = getattr(losses[-1], "name", None)
            self.labels.append(f"{name}({label})" if isinstance(label, str) else name)
        self.loss_func = nn.LayerList(losses)

    def formula(self):
        return "loss = " + " + ".join(f"{w:g} * {lab}" for w, lab in zip(self.weights, self.labels))

    def extra_repr(self):
        return self.formula()

    def forward(self, predicts, batch):
        terms, total = {}, []
        for i, (loss_fn, weight) in enumerate(zip(self.loss_func, self.weights)):
            result = loss_fn(predicts, batch)
            if not isinstance(result, dict):
                result = {f"{type(loss_fn).__name__}_{i}": result}
            own_total = result.get("loss")
            parts = {k: _scalar(v) * weight for k, v in result.items() if k != "loss"}
            if own_total is None and not parts:
                raise ValueError(f"Loss.loss_config_list[{i}] ({self.labels[i]}) returned no terms")
            weighted = (_scalar(own_total) * weight if own_total is not None
                        else paddle.add_n(list(parts.values())))
            total.append(weighted)
            if not parts:
                parts = {f"{type(loss_fn).__name__}_{i}": weighted}
            for key, value in parts.items():
                terms[key if key not in terms else f"{key}_{i}"] = value
        terms["loss"] = paddle.add_n(total)
        return terms


def _scalar(value):
    if isinstance(value, paddle.Tensor):
        return value.mean() if value.ndim > 0 else value
    return paddle.to_tensor(float(value), dtype="float32")


# PaddleOCR's ``ppocr/losses/combined_loss.py`` exposes the losses it can combine; scripts that
# import them from there get ours (each defined and registered once in its own module).
from ppdistill.losses.distillation_loss import (  # noqa: E402,F401
    DistillationCTCLoss, DistillationDBLoss, DistillationDilaDBLoss, DistillationDistanceLoss,
    DistillationDKDLoss, DistillationDMLLoss, DistillationKLDivLoss, DistillationLossFromOutput,
    DistillationNRTRLoss, DistillationSARLoss, DistillationSERDMLLoss,
    DistillationVQADistanceLoss, DistillationVQASerTokenLayoutLMLoss, DistillCTCLogits)
from ppdistill.losses.rec_ctc_loss import CTCLoss  # noqa: E402,F401
from ppdistill.losses.rec_sar_loss import SARLoss  # noqa: E402,F401
