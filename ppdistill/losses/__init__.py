"""Losses: basic, task (DB, CTC, SAR, NRTR), distillation wrappers and ``CombinedLoss``."""
from ppdistill.registry import LOSSES
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_loss"]


def build_loss(config, path="Loss"):
    """Build the ``Loss`` section: a ``CombinedLoss`` or any single registered loss.

    ``{name: CombinedLoss, loss_config_list: [...]}`` or ``{name: DMLLoss, act: softmax}``.
    The caller's config is not modified.
    """
    return LOSSES.build(config, path)
