"""The weighted layers of a training-form model, in the order its eval forward runs them.

One eval forward with post-hooks on every layer that owns parameters records the call order;
the records are then grouped into :class:`ModelUnit` s that mirror the export's weighted ops:

=========  ================================================================================
kind       layers
=========  ================================================================================
conv       Conv2D, with the BatchNorm that follows it in the same parent (if any)
convT      Conv2DTranspose, likewise
rep        a re-parameterisable layer (one with ``rep()``, e.g. LearnableRepLayer): all its
           conv/BN branches; the export holds them as one fused convolution
bn         a BatchNorm not preceded by its convolution
linear     Linear
ln         LayerNorm
affine     any other layer whose parameters are all scalars ``scale``/``bias`` (learnable
           affine blocks)
=========  ================================================================================
"""
from dataclasses import dataclass

import paddle
from paddle import nn

_REP_BRANCHES = ("identity", "conv_kxk", "conv_1x1")


@dataclass
class ModelUnit:
    kind: str
    path: str
    layers: dict  # role -> (path, layer): "conv", "bn", "linear", "ln", "affine", "rep"

    def describe(self):
        parts = []
        for role, (_, layer) in self.layers.items():
            if role == "rep":
                continue
            shapes = ", ".join(str(list(p.shape)) for _, p in
                               layer.named_parameters(include_sublayers=False))
            parts.append(f"{type(layer).__name__} {shapes}")
        what = "; ".join(parts) or type(self.layers["rep"][1]).__name__
        return f"{self.kind} '{self.path}' ({what})"


def _is_bn(layer):
    return isinstance(layer, (nn.BatchNorm2D, nn.BatchNorm1D, nn.BatchNorm, nn.SyncBatchNorm)) \
        or type(layer).__name__.startswith("BatchNorm")


def _own_params(layer):
    return list(layer.named_parameters(include_sublayers=False))


def _rep_root(path, rep_paths):
    for root in rep_paths:
        rest = path[len(root) + 1:] if path.startswith(root + ".") else None
        if rest is not None and rest.split(".")[0] in _REP_BRANCHES:
            return root
    return None


def record_calls(model, inputs):
    """Run ``model(*inputs)`` in eval mode; return ``(output, [(path, layer), ...])``."""
    named = [(name, layer) for name, layer in model.named_sublayers(include_self=True)
             if _own_params(layer)]
    calls, seen, hooks = [], set(), []
    for name, layer in named:
        def hook(layer, _inputs, _output, name=name):
            if id(layer) not in seen:
                seen.add(id(layer))
                calls.append((name, layer))
        hooks.append(layer.register_forward_post_hook(hook))
    model.eval()
    try:
        with paddle.no_grad():
            output = model(*inputs)
    finally:
        for handle in hooks:
            handle.remove()
    return output, calls


def _parent(path):
    return path.rsplit(".", 1)[0] if "." in path else ""


def group_units(model, calls):
    """Group recorded calls into :class:`ModelUnit` s (see the module docstring)."""
    rep_paths = [name for name, layer in model.named_sublayers()
                 if callable(getattr(layer, "rep", None))]
    layers_by_path = dict(model.named_sublayers())
    units, index, done_reps = [], 0, set()
    while index < len(calls):
        path, layer = calls[index]
        index += 1
        root = _rep_root(path, rep_paths)
        if root is not None:
            if root not in done_reps:
                done_reps.add(root)
                units.append(ModelUnit("rep", root, {"rep": (root, layers_by_path[root])}))
            continue
        if isinstance(layer, (nn.Conv2D, nn.Conv2DTranspose)):
            kind = "conv" if isinstance(layer, nn.Conv2D) else "convT"
            unit = ModelUnit(kind, path, {"conv": (path, layer)})
            if index < len(calls):
                next_path, next_layer = calls[index]
                channels = layer.weight.shape[0] if kind == "conv" else \
                    layer.weight.shape[1] * layer._groups
                if _is_bn(next_layer) and _parent(next_path) == _parent(path) and \
                        next_layer.weight.shape[0] == channels:
                    unit.layers["bn"] = (next_path, next_layer)
                    index += 1
            units.append(unit)
        elif _is_bn(layer):
            units.append(ModelUnit("bn", path, {"bn": (path, layer)}))
        elif isinstance(layer, nn.Linear):
            units.append(ModelUnit("linear", path, {"linear": (path, layer)}))
        elif isinstance(layer, nn.LayerNorm):
            units.append(ModelUnit("ln", path, {"ln": (path, layer)}))
        elif all(int(p.size) == 1 for _, p in _own_params(layer)):
            units.append(ModelUnit("affine", path, {"affine": (path, layer)}))
        else:
            units.append(ModelUnit("other", path, {"other": (path, layer)}))
    return units
