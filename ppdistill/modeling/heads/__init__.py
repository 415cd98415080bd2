"""Registered heads; `build_head` builds one from its config section."""
from ppdistill.registry import HEADS
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_head"]


def build_head(config, model_type=None, path="Architecture.Head", **extra):
    """Build a head from ``{name: X, **params}`` (the config is not modified)."""
    return HEADS.build(config, path, **extra)
