"""MultiLoss: the CTC + SAR/NRTR loss of a recognition MultiHead (PP-OCRv3/v4 students)."""
from paddle import nn

from ppdistill.registry import LOSSES, ConfigError

#: loss name -> (head output key, batch slots it receives, weight attribute)
BRANCHES = {
    "CTCLoss": ("ctc", "ctc", "weight_1"),
    "SARLoss": ("sar", "second", "weight_2"),
    "NRTRLoss": ("gtc", "second", "weight_2"),
}


def ctc_batch(batch):
    """``[image, label_ctc, length, ...]``: the MultiHead batch without its SAR/GTC label."""
    return list(batch[:2]) + list(batch[3:])


def second_batch(batch):
    """``[image, label_sar|label_gtc, length, ...]``: the batch without the CTC label."""
    return list(batch[:1]) + list(batch[2:])


@LOSSES.register()
class MultiLoss(nn.Layer):
    """``w1 · CTCLoss(predicts["ctc"]) + w2 · (SARLoss(predicts["sar"]) or
    NRTRLoss(predicts["gtc"]))`` for a MultiHead trained on the batch
    ``[image, label_ctc, label_sar|label_gtc, length, valid_ratio]``.

    CTCLoss receives ``[image, label_ctc, length, ...]``, SARLoss/NRTRLoss receive
    ``[image, label_sar|label_gtc, length, ...]``. Returns
    ``{"CTCLoss": w1·ctc, "SARLoss"|"NRTRLoss": w2·…, "loss": their sum}``.

    Args:
        loss_config_list: one-key entries ``{CTCLoss: params}``, ``{SARLoss: params}`` or
            ``{NRTRLoss: params}`` (params may be empty).
        weight_1: weight of the CTC term.
        weight_2: weight of the SAR/NRTR term.

    Difference from PaddleOCR: each listed loss is built with its own parameters only
    (PaddleOCR merges every entry's parameters, and weight_1/weight_2, cumulatively into one
    dict); unknown loss names and parameters fail at construction.

    YAML::

        Loss:
          name: MultiLoss
          loss_config_list:
            - CTCLoss:
            - SARLoss:
    """

    def __init__(self, loss_config_list, weight_1=1.0, weight_2=1.0):
        super().__init__()
        if not isinstance(loss_config_list, (list, tuple)) or not loss_config_list:
            raise ConfigError("MultiLoss.loss_config_list: expected a non-empty list of "
                              "{CTCLoss|SARLoss|NRTRLoss: params} entries")
        self.weight_1 = float(weight_1)
        self.weight_2 = float(weight_2)
        self.names, losses = [], []
        for i, entry in enumerate(loss_config_list):
            path = f"MultiLoss.loss_config_list[{i}]"
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError(f"{path}: expected a one-key mapping {{LossName: params}}, "
                                  f"got {entry!r}")
            name = next(iter(entry))
            if name not in BRANCHES:
                raise ConfigError(f"{path}: MultiLoss supports {', '.join(BRANCHES)}, "
                                  f"got {name!r}")
            if name in self.names:
                raise ConfigError(f"{path}: {name} is listed twice")
            losses.append(LOSSES.build_single_key(entry, path))
            self.names.append(name)
        self.loss_funcs = nn.LayerList(losses)

    def forward(self, predicts, batch):
        if not isinstance(predicts, dict):
            raise ValueError("MultiLoss: expected the MultiHead training output, a dict with "
                             f"'ctc' and 'sar'/'gtc', got {type(predicts).__name__}")
        terms = {}
        for name, loss_fn in zip(self.names, self.loss_funcs):
            head_key, slots, weight_attr = BRANCHES[name]
            if head_key not in predicts:
                raise ValueError(f"MultiLoss: {name} needs the head output {head_key!r}, the "
                                 f"predictions have {', '.join(map(str, predicts))}")
            sub_batch = ctc_batch(batch) if slots == "ctc" else second_batch(batch)
            weight = getattr(self, weight_attr)
            terms[name] = loss_fn(predicts[head_key], sub_batch)["loss"] * weight
        values = list(terms.values())
        total = values[0]
        for value in values[1:]:
            total = total + value
        terms["loss"] = total
        return terms
