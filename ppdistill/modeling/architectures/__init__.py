"""Model architectures and ``build_model``."""
import copy

from ppdistill.modeling.architectures.base_model import BaseModel
from ppdistill.modeling.architectures.distillation_model import DistillationModel
from ppdistill.registry import ConfigError, Registry

__all__ = ["build_model", "BaseModel", "DistillationModel", "ARCHITECTURES"]

ARCHITECTURES = Registry("architecture")
ARCHITECTURES.register("DistillationModel")(DistillationModel)


def build_model(config, path="Architecture"):
    """Build ``Architecture``: a BaseModel, or the class named by its ``name`` key.

    The caller's config is not modified.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping, got {config!r}")
    config = copy.deepcopy(config)
    if "name" not in config:
        return BaseModel(config, path=path)
    cls = ARCHITECTURES.get(config["name"], f"{path}.name")
    return cls(config, path=path)
