"""Registered transforms; `build_transform` builds one from its config section."""
from ppdistill.registry import TRANSFORMS_STN
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_transform"]


def build_transform(config, model_type=None, path="Architecture.Transform", **extra):
    """Build a transform from ``{name: X, **params}`` (the config is not modified)."""
    return TRANSFORMS_STN.build(config, path, **extra)
