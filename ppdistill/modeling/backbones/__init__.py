"""Registered backbones; `build_backbone` builds one from its config section."""
from ppdistill.registry import BACKBONES
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_backbone"]


def build_backbone(config, model_type=None, path="Architecture.Backbone", **extra):
    """Build a backbone from ``{name: X, **params}`` (the config is not modified)."""
    return BACKBONES.build(config, path, **extra)
