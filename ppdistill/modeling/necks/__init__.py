"""Registered necks; `build_neck` builds one from its config section."""
from ppdistill.registry import NECKS
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_neck"]


def build_neck(config, model_type=None, path="Architecture.Neck", **extra):
    """Build a neck from ``{name: X, **params}`` (the config is not modified)."""
    return NECKS.build(config, path, **extra)
