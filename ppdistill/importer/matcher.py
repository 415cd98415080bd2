"""Match an export's weighted ops to a training-form model's units and convert the weights.

The export lost the training names, so the match is structural: the i-th weighted op of the
export (graph order) must fit the i-th unit of the model (eval-forward order), by kind and shape.
Fused forms are put back so the eval function is unchanged:

- a convolution whose BatchNorm was fused into it (weight W, bias b): the conv gets W, the BN
  becomes the identity carrying the bias (weight 1, bias b, mean 0, variance 1 - eps, so that
  sqrt(variance + eps) is exactly 1);
- a conv bias the training conv has no room for goes into the BN mean (mean - b);
- a BatchNorm with a different epsilon is compensated in its variance;
- a re-parameterised layer (``rep`` unit) gets the fused kernel in its first kxk branch (with an
  identity BN carrying the bias) and every other branch zeroed;
- its affine block ``lab`` folded into that kernel (ppdistill's exports,
  ``LearnableRepLayer.fold_affine``: one scalar affine op after the conv instead of one per
  affine block of the layer) becomes the identity (scale 1, bias 0);
- its ``act.lab`` with no scalar affine op left for it (ppdistill's exports fold a depthwise
  layer's ``act.lab`` into the following 1x1 conv, ``LearnableRepLayer.fold_output_affine_into``;
  an identity one is not written at all) becomes the identity too: that conv carries it.
"""
import numpy as np


class StructureMismatch(ValueError):
    """The export does not fit the model; the message names the first layer that does not fit."""


def _key(path, name):
    return f"{path}.{name}" if path else name


def _shape(param):
    return tuple(int(s) for s in param.shape)


def _bn_identity(path, bn, bias, updates, scale=1.0):
    channels = _shape(bn.weight)[0]
    eps = float(getattr(bn, "_epsilon", 1e-5))
    updates[_key(path, "weight")] = np.full(channels, scale, "float32")
    updates[_key(path, "bias")] = np.asarray(bias, "float32").reshape(channels)
    updates[_key(path, "_mean")] = np.zeros(channels, "float32")
    updates[_key(path, "_variance")] = np.full(channels, np.float32(1.0) - np.float32(eps),
                                               "float32")


def _bn_from_export(path, bn, op, updates, conv_bias=None):
    eps = float(getattr(bn, "_epsilon", 1e-5))
    mean = op.arrays["bn_mean"] - (conv_bias if conv_bias is not None else 0.0)
    var = op.arrays["bn_var"] + np.float32(op.eps) - np.float32(eps)
    updates[_key(path, "weight")] = op.arrays["bn_scale"]
    updates[_key(path, "bias")] = op.arrays["bn_bias"]
    updates[_key(path, "_mean")] = mean.astype("float32")
    updates[_key(path, "_variance")] = var.astype("float32")


def _fused_bn(op):
    """(weight, bias) of ``op``'s convolution with its BatchNorm folded in."""
    t = op.arrays["bn_scale"] / np.sqrt(op.arrays["bn_var"] + np.float32(op.eps))
    shape = (-1, 1, 1, 1) if op.kind == "conv" else (1, -1, 1, 1)
    weight = op.arrays["weight"] * t.reshape(shape)
    bias = (op.arrays.get("bias", 0.0) - op.arrays["bn_mean"]) * t + op.arrays["bn_bias"]
    return weight.astype("float32"), bias.astype("float32")


def _fail(unit, op, why):
    raise StructureMismatch(f"layer '{unit.path}' ({unit.describe()}) does not fit the export's "
                            f"{op.describe()}: {why}")


def _match_conv(unit, op, updates):
    conv_path, conv = unit.layers["conv"]
    if op.kind != unit.kind:
        _fail(unit, op, f"expected a {unit.kind}")
    if _shape(conv.weight) != tuple(op.arrays["weight"].shape):
        _fail(unit, op, "weight shapes differ")
    has_bias = getattr(conv, "bias", None) is not None
    bn_entry = unit.layers.get("bn")
    export_bias = op.arrays.get("bias")
    if bn_entry is None:
        weight, bias = _fused_bn(op) if "bn_scale" in op.arrays else (op.arrays["weight"],
                                                                        export_bias)
        if bias is not None and not has_bias:
            if np.any(bias != 0):
                _fail(unit, op, "the export has a bias but the model's conv has none")
        updates[_key(conv_path, "weight")] = weight
        if has_bias:
            channels = _shape(conv.bias)[0]
            updates[_key(conv_path, "bias")] = np.zeros(channels, "float32") if bias is None \
                else np.asarray(bias, "float32").reshape(channels)
        return
    bn_path, bn = bn_entry
    updates[_key(conv_path, "weight")] = op.arrays["weight"]
    channels = _shape(bn.weight)[0]
    if "bn_scale" in op.arrays:
        if has_bias:
            updates[_key(conv_path, "bias")] = np.zeros(channels, "float32") \
                if export_bias is None else export_bias
            _bn_from_export(bn_path, bn, op, updates)
        else:
            _bn_from_export(bn_path, bn, op, updates, conv_bias=export_bias)
        return
    bias = np.zeros(channels, "float32") if export_bias is None else export_bias
    if has_bias:
        updates[_key(conv_path, "bias")] = bias
        bias = np.zeros(channels, "float32")
    _bn_identity(bn_path, bn, bias, updates)


def _zero_convbn(path, layer, updates):
    """Zero a ConvBN branch (conv weight 0, BN weight/bias/mean 0, variance 1)."""
    for name, param in layer.named_parameters():
        updates[_key(path, name)] = np.zeros(_shape(param), "float32")
    for name, buf in layer.named_buffers():
        if name.endswith("_variance"):
            updates[_key(path, name)] = np.ones(_shape(buf), "float32")
        elif name.endswith("_mean"):
            updates[_key(path, name)] = np.zeros(_shape(buf), "float32")


def _rep_helper(layer):
    """``load_fused_into_training_form`` of the layer's module, when it has one."""
    import sys
    module = sys.modules.get(type(layer).__module__)
    return getattr(module, "load_fused_into_training_form", None)


def _match_rep(unit, op, updates):
    path, layer = unit.layers["rep"]
    if op.kind != "conv":
        _fail(unit, op, "expected a (fused) convolution")
    branches = getattr(layer, "conv_kxk", None)
    if not branches:
        _fail(unit, op, "the re-parameterisable layer has no conv_kxk branches")
    main = branches[0]
    if _shape(main.conv.weight) != tuple(op.arrays["weight"].shape):
        _fail(unit, op, "weight shapes differ")
    if "bn_scale" in op.arrays:
        weight, bias = _fused_bn(op)
    else:
        weight = op.arrays["weight"]
        bias = op.arrays.get("bias", np.zeros(op.arrays["weight"].shape[0], "float32"))
    helper = _rep_helper(layer)
    if helper is not None:
        # the backbone's own inverse of rep(); read back every branch tensor it wrote
        helper(layer, weight, np.asarray(bias, "float32").reshape(-1))
        for name, tensor in layer.state_dict().items():
            if not name.startswith(("lab.", "act.", "reparam_conv.")):
                updates[_key(path, name)] = tensor.numpy()
        return
    updates[_key(path, "conv_kxk.0.conv.weight")] = weight
    _bn_identity(_key(path, "conv_kxk.0.bn"), main.bn, bias, updates)
    for index in range(1, len(branches)):
        _zero_convbn(_key(path, f"conv_kxk.{index}"), branches[index], updates)
    if getattr(layer, "conv_1x1", None) is not None:
        _zero_convbn(_key(path, "conv_1x1"), layer.conv_1x1, updates)
    if getattr(layer, "identity", None) is not None:
        _zero_convbn(_key(path, "identity"), layer.identity, updates)


def _match_linear(unit, op, updates):
    path, layer = unit.layers["linear"]
    if op.kind != "linear":
        _fail(unit, op, "expected a linear layer (MatMul/Gemm)")
    if _shape(layer.weight) != tuple(op.arrays["weight"].shape):
        _fail(unit, op, "weight shapes differ")
    updates[_key(path, "weight")] = op.arrays["weight"]
    bias = op.arrays.get("bias")
    if getattr(layer, "bias", None) is not None:
        updates[_key(path, "bias")] = np.zeros(_shape(layer.bias), "float32") if bias is None \
            else bias
    elif bias is not None and np.any(bias != 0):
        _fail(unit, op, "the export has a bias but the model's Linear has none")


def _match_affine(unit, op, updates, role):
    path, layer = unit.layers[role]
    if op.kind not in ("affine", "ln"):
        _fail(unit, op, "expected a scale and bias")
    params = dict(layer.named_parameters(include_sublayers=False))
    names = ("weight", "bias") if role == "ln" else ("scale", "bias")
    eps = float(getattr(layer, "_epsilon", op.eps))
    if role == "ln" and op.eps_known and abs(eps - op.eps) > 1e-3 * max(eps, op.eps):
        _fail(unit, op, f"LayerNorm epsilon {eps:g} but the export uses {op.eps:g}")
    for name, source in zip(names, ("scale", "bias")):
        if name not in params:
            _fail(unit, op, f"the model layer has no parameter '{name}'")
        shape = _shape(params[name])
        value = op.arrays.get(source)
        if value is None or value.size != int(np.prod(shape)):
            _fail(unit, op, f"{name} sizes differ")
        updates[_key(path, name)] = value.reshape(shape).astype("float32")


def _match_bn(unit, op, updates):
    path, layer = unit.layers["bn"]
    if op.kind != "bn":
        _fail(unit, op, "expected a BatchNorm")
    if _shape(layer.weight)[0] != op.arrays["bn_scale"].size:
        _fail(unit, op, "channel counts differ")
    _bn_from_export(path, layer, op, updates)


def _is_scalar_affine(op):
    return op.kind == "affine" and op.arrays["scale"].size == 1


def _scalar_affines_from(ops, index):
    count = 0
    while index + count < len(ops) and _is_scalar_affine(ops[index + count]):
        count += 1
    return count


def _lab_folded_into_conv(units, position, ops, index):
    """Whether ``units[position]`` is an affine block of the re-parameterised layer matched
    just before that the export folded into a conv, so no scalar affine op is left for it:

    - its ``lab`` when fewer scalar affine ops follow the conv (from ``ops[index]``) than the
      layer has affine blocks (``lab``, ``act.lab``);
    - its ``act.lab`` when no scalar affine op follows at all (its ``lab`` went into the
      layer's conv, its ``act.lab`` into the next one)."""
    unit = units[position]
    if unit.kind != "affine" or position == 0:
        return False
    if unit.path.endswith(".act.lab"):
        root = unit.path[:-len(".act.lab")]
        lab = units[position - 1]
        return (lab.kind == "affine" and lab.path == root + ".lab" and position >= 2
                and units[position - 2].kind == "rep" and units[position - 2].path == root
                and _scalar_affines_from(ops, index) == 0)
    if not unit.path.endswith(".lab"):
        return False
    root = unit.path[:-len(".lab")]
    previous = units[position - 1]
    if previous.kind != "rep" or previous.path != root:
        return False
    following_unit = units[position + 1] if position + 1 < len(units) else None
    has_act_lab = (following_unit is not None and following_unit.kind == "affine"
                   and following_unit.path == root + ".act.lab")
    blocks = 2 if has_act_lab else 1
    return _scalar_affines_from(ops, index) < blocks


def _set_identity_affine(unit, updates):
    path, layer = unit.layers["affine"]
    for name, param in layer.named_parameters(include_sublayers=False):
        updates[_key(path, name)] = np.full(_shape(param), 1.0 if name == "scale" else 0.0,
                                            "float32")


def match(units, ops):
    """Return ``{state_dict key: array}`` for every unit, or raise :class:`StructureMismatch`."""
    updates = {}
    ops = list(ops)
    index = 0
    for position, unit in enumerate(units):
        if _lab_folded_into_conv(units, position, ops, index):
            _set_identity_affine(unit, updates)
            continue
        # a scalar multiply-add that no learnable layer accounts for is a fixed op (e.g. the
        # attention scale q * d**-0.5 exported as Mul + Add): not a weight
        while index < len(ops) and unit.kind != "affine" and _is_scalar_affine(ops[index]):
            del ops[index]
        if index >= len(ops):
            raise StructureMismatch(
                f"layer '{unit.path}' ({unit.describe()}) has no counterpart: the export has only "
                f"{len(ops)} weighted ops for the model's {len(units)} weighted layers")
        op = ops[index]
        index += 1
        if unit.kind in ("conv", "convT"):
            _match_conv(unit, op, updates)
        elif unit.kind == "rep":
            _match_rep(unit, op, updates)
        elif unit.kind == "linear":
            _match_linear(unit, op, updates)
        elif unit.kind in ("ln", "affine"):
            _match_affine(unit, op, updates, unit.kind)
        elif unit.kind == "bn":
            _match_bn(unit, op, updates)
        else:
            _fail(unit, op, "the importer cannot map this layer type")
    ops = ops[:index] + [op for op in ops[index:] if not _is_scalar_affine(op)]
    if len(ops) > len(units):
        raise StructureMismatch(
            f"the export has {len(ops)} weighted ops but the model only {len(units)} weighted "
            f"layers; the first extra one is {ops[len(units)].describe()}")
    return updates
