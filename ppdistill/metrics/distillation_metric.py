"""DistillationMetric: one base metric per sub-model of a DistillationModel."""
import copy

from ppdistill.registry import METRICS, ConfigError, check_keys


@METRICS.register()
class DistillationMetric:
    """Evaluates every sub-model's post-processed output with its own ``base_metric_name`` metric.

    Base metrics are created on the first call, one per key of the prediction dict, with
    ``main_indicator`` and the extra keyword arguments (checked against the base metric's
    signature at construction). ``get_metric()`` returns the ``key`` model's metrics unprefixed
    (``hmean``, ``acc``) and every other model's as ``{model}_{metric}`` (``Teacher_acc``), then
    resets. Difference from PaddleOCR: ``reset()`` and ``get_metric()`` work before any batch
    (the latter returns ``{}``).

    YAML::

        Metric:
          name: DistillationMetric
          base_metric_name: RecMetric
          main_indicator: acc
          key: Student
          ignore_space: false
    """

    def __init__(self, key=None, base_metric_name=None, main_indicator=None, **kwargs):
        if base_metric_name is None or base_metric_name == "DistillationMetric":
            raise ConfigError(f"Metric.base_metric_name: expected a metric name such as "
                              f"DetMetric or RecMetric, got {base_metric_name!r}")
        self.base_class = METRICS.get(base_metric_name, "Metric.base_metric_name")
        check_keys(self.base_class, dict(kwargs, main_indicator=None), "Metric")
        self.key = key
        self.main_indicator = main_indicator
        self.kwargs = kwargs
        self.metrics = None

    def _new_base_metric(self):
        params = copy.deepcopy(self.kwargs)
        if self.main_indicator is not None:
            params["main_indicator"] = self.main_indicator
        return self.base_class(**params)

    def _init_metrics(self, preds):
        self.metrics = {name: self._new_base_metric() for name in preds}

    def indicator_names(self):
        """The unprefixed keys ``get_metric()`` returns for the ``key`` model (e.g. ``["acc",
        "norm_edit_dis"]``), from a fresh base metric; None if it cannot report before a batch.
        The trainer checks ``main_indicator`` against them at start."""
        try:
            result = self._new_base_metric().get_metric()
        except Exception:  # a base metric that cannot report before its first batch
            return None
        return list(result) if isinstance(result, dict) and result else None

    def __call__(self, preds, batch, **kwargs):
        if not isinstance(preds, dict):
            raise TypeError("DistillationMetric expects {model_name: post-processed output}, "
                            f"got {type(preds).__name__}")
        if self.metrics is None:
            self._init_metrics(preds)
        for name, metric in self.metrics.items():
            if name in preds:
                metric(preds[name], batch, **kwargs)

    def get_metric(self):
        output = {}
        for name, metric in (self.metrics or {}).items():
            for metric_name, value in metric.get_metric().items():
                output[metric_name if name == self.key else f"{name}_{metric_name}"] = value
        return output

    def reset(self):
        for metric in (self.metrics or {}).values():
            metric.reset()
