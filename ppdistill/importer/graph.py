"""A tiny graph form shared by the ONNX and Paddle readers, and its weighted operations.

Both readers turn an export into a :class:`Graph`: nodes in execution order with ONNX-style op
names (``Conv``, ``BatchNormalization``, ``MatMul``, ``Add``, ``Mul``, ...) plus a table of
constant tensors (the weights). :func:`weighted_ops` then groups the nodes that carry weights
into :class:`ExportOp` records, in graph order:

=========  ==========================================================================
kind       what it covers
=========  ==========================================================================
conv       Conv (+ a per-channel Add: the bias) (+ BatchNormalization on its output)
convT      the same with ConvTranspose
bn         a BatchNormalization not fed by a convolution
linear     MatMul/Gemm with a constant 2-D weight (+ a constant Add: the bias)
affine     Mul by a constant followed by Add of a constant (LayerNorm's gamma/beta after a
           decomposed LayerNorm, or a learnable scale/bias pair)
ln         a LayerNormalization op (scale, bias)
=========  ==========================================================================
"""
from dataclasses import dataclass, field

import numpy as np

#: ops that only reshape or relabel a constant; folded when all their inputs are constants.
_FOLDABLE = ("Identity", "Reshape", "Unsqueeze", "Squeeze", "Cast", "Flatten")


@dataclass
class Node:
    op: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    name: str = ""


@dataclass
class ExportOp:
    """One weighted operation of an export (see the module docstring for ``kind``)."""
    kind: str
    name: str
    arrays: dict
    eps: float = 1e-5
    eps_known: bool = False  # eps read from the export (BatchNorm, LayerNorm)

    def describe(self):
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in self.arrays.items())
        return f"{self.kind} '{self.name}' ({shapes})"


class Graph:
    """Nodes in execution order and constant tensors by name."""

    def __init__(self, nodes, consts, source):
        self.source = source
        self.consts = dict(consts)
        self.nodes = []
        alias = {}
        for node in nodes:
            node.inputs = [alias.get(i, i) for i in node.inputs]
            if node.op in _FOLDABLE and node.inputs and all(
                    i in self.consts or i == "" for i in node.inputs):
                self.consts[node.outputs[0]] = _fold(node, self.consts)
                continue
            if node.op in _FOLDABLE and node.inputs and node.inputs[0] in self.consts:
                # a weight reshaped to a run-time shape (e.g. LayerNorm's gamma to the
                # input's last dim): keep the weight's values
                self.consts[node.outputs[0]] = self.consts[node.inputs[0]]
                continue
            if node.op == "Identity":
                alias[node.outputs[0]] = node.inputs[0]
                continue
            self.nodes.append(node)
        self.consumers, self.producer = {}, {}
        for index, node in enumerate(self.nodes):
            for name in node.inputs:
                self.consumers.setdefault(name, []).append(index)
            for name in node.outputs:
                self.producer[name] = node

    def const(self, name):
        return self.consts.get(name)

    def only_consumer(self, name):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 else None


def scale_nodes(x, out, scale, bias, bias_after_scale, consts, name):
    """A paddle ``scale`` op (``scale * x + bias``, or ``scale * (x + bias)``) as a Mul and an Add
    of constants (added to ``consts``): the form :func:`weighted_ops` reads as an affine op, e.g.
    the affine block after PPLCNetV3's hardswish in ppdistill's exports
    (``LearnableRepLayer.fold_affine``)."""
    scale = np.asarray(scale, "float32").reshape(-1)
    bias = np.asarray(bias, "float32").reshape(-1)
    if np.all(scale == 1) and np.all(bias == 0):  # e.g. paddle 2.x's scale op before each fetch
        return [Node("Identity", [x], [out], {}, name)]
    if not bias_after_scale:
        bias = bias * scale
    scale_name, bias_name, scaled = f"{out}@scale", f"{out}@bias", f"{out}@scaled"
    consts[scale_name], consts[bias_name] = scale, bias
    return [Node("Mul", [x, scale_name], [scaled], {}, name),
            Node("Add", [scaled, bias_name], [out], {}, name)]


def _fold(node, consts):
    value = consts[node.inputs[0]]
    if node.op in ("Identity", "Cast"):
        dtype = node.attrs.get("to_numpy")
        return value.astype(dtype) if dtype is not None else value
    if node.op == "Reshape":
        shape = [int(s) for s in consts[node.inputs[1]].reshape(-1)]
        shape = [value.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return value.reshape(shape)
    if node.op == "Flatten":
        axis = node.attrs.get("axis", 1)
        return value.reshape(int(np.prod(value.shape[:axis])), -1)
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = [int(a) for a in consts[node.inputs[1]].reshape(-1)]
    if node.op == "Unsqueeze":
        for axis in sorted(axes):
            value = np.expand_dims(value, axis)
        return value
    return np.squeeze(value, axis=tuple(axes) if axes else None)


def _const_operand(graph, node):
    """(constant array, other input name) for a binary node with exactly one constant input."""
    a, b = node.inputs[0], node.inputs[1]
    ca, cb = graph.const(a), graph.const(b)
    if (ca is None) == (cb is None):
        return None, None
    return (ca, b) if ca is not None else (cb, a)


def _per_channel(array, channels):
    """``array`` as a 1-D per-channel vector of length ``channels`` (None if it is not one)."""
    if array is None or array.size != channels:
        return None
    if array.ndim > 1 and sorted(array.shape)[:-1] != [1] * (array.ndim - 1):
        return None
    if channels == 1 and array.ndim not in (1, 4):
        return None
    return array.reshape(-1).astype("float32")


def _follow_add(graph, out, used, channels):
    """If ``out``'s only consumer adds a per-channel constant, return (bias, new output)."""
    index = graph.only_consumer(out)
    if index is None or index in used:
        return None, out
    node = graph.nodes[index]
    if node.op != "Add":
        return None, out
    array, other = _const_operand(graph, node)
    bias = _per_channel(array, channels)
    if bias is None or other != out:
        return None, out
    used.add(index)
    return bias, node.outputs[0]


def _bn_arrays(graph, node):
    names = ("scale", "bias", "mean", "var")
    arrays = {k: graph.const(n) for k, n in zip(names, node.inputs[1:5])}
    if any(v is None for v in arrays.values()):
        raise ValueError(f"{graph.source}: BatchNormalization '{node.name}' has non-constant "
                         "parameters")
    return {k: v.astype("float32").reshape(-1) for k, v in arrays.items()}


def _conv_op(graph, index, node, used):
    weight = graph.const(node.inputs[1]) if len(node.inputs) > 1 else None
    if weight is None:
        raise ValueError(f"{graph.source}: {node.op} '{node.name}' has a non-constant weight")
    channels = weight.shape[0] if node.op == "Conv" else \
        weight.shape[1] * node.attrs.get("group", 1)
    arrays = {"weight": weight.astype("float32")}
    if len(node.inputs) > 2 and node.inputs[2]:
        arrays["bias"] = graph.const(node.inputs[2]).astype("float32").reshape(-1)
    out = node.outputs[0]
    bias, out = _follow_add(graph, out, used, channels)
    if bias is not None:
        arrays["bias"] = arrays.get("bias", 0) + bias
    eps = 1e-5
    following = graph.only_consumer(out)
    if following is not None and graph.nodes[following].op == "BatchNormalization":
        bn = graph.nodes[following]
        arrays.update({f"bn_{k}": v for k, v in _bn_arrays(graph, bn).items()})
        eps = float(bn.attrs.get("epsilon", 1e-5))
        used.add(following)
    kind = "conv" if node.op == "Conv" else "convT"
    return ExportOp(kind, node.name or out, arrays, eps)


def _linear_op(graph, node, used):
    if node.op == "Gemm":
        weight = graph.const(node.inputs[1])
        if weight is None:
            return None
        weight = weight.T if node.attrs.get("transB", 0) else weight
        arrays = {"weight": weight.astype("float32")}
        if len(node.inputs) > 2 and graph.const(node.inputs[2]) is not None:
            arrays["bias"] = graph.const(node.inputs[2]).astype("float32").reshape(-1)
        return ExportOp("linear", node.name, arrays)
    weight = graph.const(node.inputs[1])
    if weight is None or weight.ndim != 2 or graph.const(node.inputs[0]) is not None:
        return None
    if node.attrs.get("trans_y"):
        weight = weight.T
    arrays = {"weight": weight.astype("float32")}
    bias, _ = _follow_add(graph, node.outputs[0], used, weight.shape[1])
    if bias is not None:
        arrays["bias"] = bias
    return ExportOp("linear", node.name or node.outputs[0], arrays)


def _affine_op(graph, node, used):
    scale, _ = _const_operand(graph, node)
    if scale is None:
        return None
    index = graph.only_consumer(node.outputs[0])
    if index is None or index in used or graph.nodes[index].op != "Add":
        return None
    add = graph.nodes[index]
    bias, other = _const_operand(graph, add)
    if bias is None or other != node.outputs[0] or bias.size != scale.size:
        return None
    used.add(index)
    op = ExportOp("affine", node.name or node.outputs[0],
                  {"scale": scale.astype("float32").reshape(-1),
                   "bias": bias.astype("float32").reshape(-1)})
    eps = _layernorm_eps(graph, node)
    if eps is not None:
        op.eps, op.eps_known = eps, True
    return op


def _layernorm_eps(graph, mul):
    """eps of a decomposed LayerNorm ``(x - mean) / sqrt(var + eps) * gamma`` ending in ``mul``."""
    for name in mul.inputs:
        div = graph.producer.get(name)
        if div is None or div.op != "Div":
            continue
        sqrt = graph.producer.get(div.inputs[1])
        add = graph.producer.get(sqrt.inputs[0]) if sqrt is not None and sqrt.op == "Sqrt" \
            else None
        if add is not None and add.op == "Add":
            value, _ = _const_operand(graph, add)
            if value is not None and value.size == 1:
                return float(value.reshape(-1)[0])
    return None


def weighted_ops(graph):
    """The export's weighted operations (:class:`ExportOp`) in graph order."""
    ops, used = [], set()
    for index, node in enumerate(graph.nodes):
        if index in used:
            continue
        op = None
        if node.op in ("Conv", "ConvTranspose"):
            op = _conv_op(graph, index, node, used)
        elif node.op == "BatchNormalization":
            op = ExportOp("bn", node.name or node.outputs[0],
                          {f"bn_{k}": v for k, v in _bn_arrays(graph, node).items()},
                          float(node.attrs.get("epsilon", 1e-5)))
        elif node.op in ("MatMul", "Gemm"):
            op = _linear_op(graph, node, used)
        elif node.op == "Mul":
            op = _affine_op(graph, node, used)
        elif node.op == "LayerNormalization":
            arrays = {"scale": graph.const(node.inputs[1]).astype("float32").reshape(-1)}
            if len(node.inputs) > 2 and graph.const(node.inputs[2]) is not None:
                arrays["bias"] = graph.const(node.inputs[2]).astype("float32").reshape(-1)
            op = ExportOp("ln", node.name or node.outputs[0], arrays,
                          float(node.attrs.get("epsilon", 1e-5)), eps_known=True)
        if op is not None:
            used.add(index)
            ops.append(op)
    return ops
