"""Component registries and the config-to-object builder.

One :class:`Registry` per component kind (backbones, necks, heads, losses, ...). Classes register
themselves with a decorator; builders look names up here instead of calling ``eval`` on strings
that come from YAML. Building never mutates the caller's config and rejects unknown names and
unexpected keys with a :class:`ConfigError` that names the config path and suggests a fix::

    ConfigError: Loss.loss_config_list[2]: unknown loss 'DistilationDMLLoss'; did you mean 'DistillationDMLLoss'?
"""
import copy
import difflib
import inspect

__all__ = [
    "ConfigError", "Registry", "suggest", "BACKBONES", "NECKS", "HEADS", "TRANSFORMS_STN",
    "LOSSES", "POSTPROCESS", "METRICS", "TRANSFORMS", "DATASETS", "OPTIMIZERS", "LR_SCHEDULERS",
]


class ConfigError(ValueError):
    """A configuration problem, reported with the config path it was found at."""


def suggest(word, candidates):
    """Return ``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def accepted_keys(cls):
    """Names of keyword arguments ``cls`` accepts, or ``None`` if it takes ``**kwargs``."""
    sig = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls)
    names = []
    for p in list(sig.parameters.values()):
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.append(p.name)
    return names


def check_keys(cls, params, path):
    """Raise ConfigError if ``params`` has a key that ``cls`` does not accept."""
    allowed = accepted_keys(cls)
    if allowed is None:
        return
    for key in params:
        if key not in allowed:
            raise ConfigError(
                f"{path}: unexpected key '{key}' for {cls.__name__}{suggest(key, allowed)} "
                f"(accepted: {', '.join(allowed)})")


class Registry:
    """A name -> class table for one kind of component.

    Example::

        LOSSES = Registry("loss")

        @LOSSES.register()
        class DMLLoss(paddle.nn.Layer): ...

        LOSSES.build({"name": "DMLLoss", "act": "softmax"}, path="Loss")
    """

    def __init__(self, kind):
        self.kind = kind
        self._table = {}

    def register(self, name=None):
        def decorator(obj):
            key = name or obj.__name__
            if key in self._table:
                raise KeyError(f"{key!r} is already registered in the {self.kind} registry")
            self._table[key] = obj
            return obj
        return decorator

    def __contains__(self, name):
        return name in self._table

    def names(self):
        return sorted(self._table)

    def get(self, name, path="<config>"):
        if not isinstance(name, str) or name not in self._table:
            raise ConfigError(
                f"{path}: unknown {self.kind} {name!r}{suggest(name, self._table)}")
        return self._table[name]

    def build(self, config, path="<config>", defaults=None, **extra):
        """Build from ``{"name": X, **params}``.

        ``extra`` are arguments the caller adds; ``defaults`` (e.g. the ``Global`` section) fill
        in arguments the class accepts and the config does not set.
        """
        if not isinstance(config, dict) or "name" not in config:
            raise ConfigError(f"{path}: expected a mapping with a 'name' key, got {config!r}")
        params = copy.deepcopy(config)
        cls = self.get(params.pop("name"), f"{path}.name")
        return self.build_class(cls, params, f"{path}", defaults, **extra)

    def build_single_key(self, entry, path="<config>", defaults=None, **extra):
        """Build from PaddleOCR's one-key form ``{ClassName: {params}}`` (params may be None).

        ``defaults`` and ``extra`` as in :meth:`build`.
        """
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{path}: expected a one-key mapping {{Name: params}}, got {entry!r}")
        name, params = next(iter(entry.items()))
        cls = self.get(name, path)
        params = copy.deepcopy(params) if params else {}
        if not isinstance(params, dict):
            raise ConfigError(f"{path}.{name}: expected a mapping of parameters, got {params!r}")
        return self.build_class(cls, params, f"{path}.{name}", defaults, **extra)

    @staticmethod
    def build_class(cls, params, path, defaults=None, **extra):
        check_keys(cls, params, path)
        if defaults:
            allowed = accepted_keys(cls) or []
            for key, value in defaults.items():
                if key in allowed and key not in params:
                    params[key] = copy.deepcopy(value)
        params.update(extra)
        try:
            return cls(**params)
        except ConfigError as exc:
            if str(exc).startswith(path):
                raise
            raise ConfigError(f"{path}: {exc}") from exc  # the config path, then the cause
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot build {cls.__name__}: {exc}") from exc


BACKBONES = Registry("backbone")
NECKS = Registry("neck")
HEADS = Registry("head")
TRANSFORMS_STN = Registry("transform module")
LOSSES = Registry("loss")
POSTPROCESS = Registry("post-process")
METRICS = Registry("metric")
TRANSFORMS = Registry("data transform")
DATASETS = Registry("dataset")
OPTIMIZERS = Registry("optimizer")
LR_SCHEDULERS = Registry("learning-rate schedule")
