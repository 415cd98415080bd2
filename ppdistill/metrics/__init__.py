"""Metrics: DetMetric, RecMetric and DistillationMetric."""
from ppdistill.registry import METRICS
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_metric"]


def build_metric(config, path="Metric"):
    """Build the ``Metric`` section (the caller's config is not modified)."""
    return METRICS.build(config, path)
