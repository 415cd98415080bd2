"""The distillation plumbing shared by every ``Distillation*Loss``, written once.

A DistillationModel returns ``{model_name: output}``. Each distillation loss picks, per model,
``output[key]`` (e.g. ``head_out``, ``backbone_out``, ``maps``), then with ``multi_head`` the
branch ``output[key][dis_head]`` (``ctc``, ``sar``, ``gtc``), and for detection maps optionally
channels of the ``[B, 3, H, W]`` tensor named by ``maps_name``. A name the predictions do not
have fails with an error naming the loss, the model(s) and the names that *are* available.
"""
import paddle

from ppdistill.registry import ConfigError, suggest

#: channel of a DB ``maps`` tensor for each ``maps_name`` entry. ``thrink_maps`` is PaddleOCR's
#: (misspelt) name and is kept for config compatibility; ``shrink_maps`` is accepted as well.
MAP_CHANNELS = {"thrink_maps": 0, "shrink_maps": 0, "threshold_maps": 1, "binary_maps": 2}


def normalize_pairs(model_name_pairs, loss_name):
    """Return a list of ``(first, second)`` name tuples.

    Accepts a list of pairs ``[[S, T], ...]`` or a single flat pair ``[S, T]`` (PaddleOCR accepts
    both). Anything else raises a ConfigError naming the loss.
    """
    pairs = model_name_pairs
    if isinstance(pairs, (list, tuple)) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        pairs = [pairs]
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise ConfigError(f"{loss_name}: model_name_pairs must be a non-empty list of "
                          f"[first, second] model names, got {model_name_pairs!r}")
    result = []
    for pair in pairs:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(p, str) for p in pair)):
            raise ConfigError(f"{loss_name}: each model_name_pairs entry must be two model "
                              f"names, got {pair!r}")
        result.append((pair[0], pair[1]))
    return result


def normalize_names(model_name_list, loss_name):
    """Return a non-empty list of model names (a single string is accepted)."""
    names = [model_name_list] if isinstance(model_name_list, str) else model_name_list
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{loss_name}: model_name_list must be a non-empty list of model "
                          f"names, got {model_name_list!r}")
    return list(names)


def normalize_maps_name(maps_name, loss_name):
    """``None`` -> None; a string or a list of strings -> list of known map names.

    PaddleOCR wraps a list into another list and then silently matches nothing; here a list
    selects every map it names, and an unknown map name is an error.
    """
    if maps_name is None:
        return None
    names = [maps_name] if isinstance(maps_name, str) else maps_name
    if not isinstance(names, (list, tuple)) or not names:
        raise ConfigError(f"{loss_name}: maps_name must be a string or a list of strings, "
                          f"got {maps_name!r}")
    for n in names:
        if n not in MAP_CHANNELS:
            raise ConfigError(f"{loss_name}: unknown maps_name {n!r}{suggest(n, MAP_CHANNELS)} "
                              f"(known: {', '.join(MAP_CHANNELS)})")
    return list(names)


def _lookup(container, name, what, loss_name, context):
    if not isinstance(container, dict):
        raise ConfigError(f"{loss_name}: cannot take {what} {name!r} of {context}: it is a "
                         f"{type(container).__name__}, not a dict")
    if name not in container:
        raise ConfigError(f"{loss_name}: {context}: no {what} {name!r}{suggest(name, container)}"
                         f" (available: {', '.join(map(str, container))})")
    return container[name]


def select_output(predicts, model_name, key=None, multi_head=False, dis_head="ctc",
                  loss_name="loss"):
    """``predicts[model_name]``, then ``[key]``, then ``[dis_head]`` when ``multi_head``."""
    out = _lookup(predicts, model_name, "model", loss_name, "the predictions")
    if key is not None:
        out = _lookup(out, key, "key", loss_name, f"the output of {model_name!r}")
    if multi_head:
        out = _lookup(out, dis_head, "head", loss_name, f"{model_name!r}[{key!r}]")
    return out


def map_channel(maps, map_name):
    """Channel ``MAP_CHANNELS[map_name]`` of a ``[B, C, H, W]`` maps tensor, as ``[B, H, W]``."""
    channel = MAP_CHANNELS[map_name]
    return maps[:, channel, :, :]


def to_scalar(value):
    """Reduce a per-sample vector to its mean so every logged term and the total are 0-D."""
    if isinstance(value, paddle.Tensor) and value.ndim > 0:
        return value.mean()
    return value


def sum_terms(terms):
    """Add a ``loss`` entry (0-D) summing every term; an empty dict gives a 0-D zero."""
    values = [to_scalar(v) for k, v in terms.items() if k != "loss"]
    total = paddle.add_n(values) if values else paddle.zeros([], dtype="float32")
    terms = {k: to_scalar(v) for k, v in terms.items()}
    terms["loss"] = total
    return terms


class PairSelector:
    """Selects the tensors a pairwise distillation loss compares.

    ``pairs(predicts)`` yields ``(idx, first_name, second_name, suffix, first, second)``, one item
    per model pair and (when ``maps_name`` is set) per map, where ``suffix`` is ``""`` or the map
    name, ready to build the term key.
    """

    def __init__(self, model_name_pairs, key=None, multi_head=False, dis_head="ctc",
                 maps_name=None, loss_name="loss"):
        self.loss_name = loss_name
        self.model_name_pairs = normalize_pairs(model_name_pairs, loss_name)
        self.key = key
        self.multi_head = multi_head
        self.dis_head = dis_head
        self.maps_name = normalize_maps_name(maps_name, loss_name)

    def select(self, predicts, model_name):
        return select_output(predicts, model_name, self.key, self.multi_head, self.dis_head,
                             self.loss_name)

    def pairs(self, predicts):
        for idx, (first_name, second_name) in enumerate(self.model_name_pairs):
            first = self.select(predicts, first_name)
            second = self.select(predicts, second_name)
            if self.maps_name is None:
                yield idx, first_name, second_name, "", first, second
            else:
                for map_name in self.maps_name:
                    yield (idx, first_name, second_name, map_name,
                           map_channel(first, map_name), map_channel(second, map_name))


class ModelSelector:
    """Selects each model's output for a per-model task loss (``model_name_list``)."""

    def __init__(self, model_name_list, key=None, multi_head=False, dis_head="ctc",
                 loss_name="loss"):
        self.loss_name = loss_name
        self.model_name_list = normalize_names(model_name_list, loss_name)
        self.key = key
        self.multi_head = multi_head
        self.dis_head = dis_head

    def models(self, predicts):
        """Yield ``(idx, model_name, output)``."""
        for idx, name in enumerate(self.model_name_list):
            yield idx, name, select_output(predicts, name, self.key, self.multi_head,
                                           self.dis_head, self.loss_name)
