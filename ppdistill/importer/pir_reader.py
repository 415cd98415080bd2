"""Read a paddle 3.x PIR inference program (``inference.json``) into a Graph.

The JSON lists ops in execution order. Parameter ops (``"#": "p"``) name a weight and give it a
value id; the other ops (``"1.conv2d"``, ``"1.batch_norm_"``, ...) refer to value ids in
``"I"`` and define new ones in ``"O"``. ``inference.pdiparams`` stores the parameters in sorted
name order, in the same serialized form as the older format.
"""
import json

import numpy as np

from ppdistill.importer.graph import Graph, Node, scale_nodes
from ppdistill.importer.paddle_reader import read_tensors

#: PIR op -> (ONNX op, input positions in ONNX order, {pir attr: onnx attr})
_OPS = {
    "conv2d": ("Conv", (0, 1), {"groups": "group"}),
    "depthwise_conv2d": ("Conv", (0, 1), {"groups": "group"}),
    "conv2d_transpose": ("ConvTranspose", (0, 1), {"groups": "group"}),
    "depthwise_conv2d_transpose": ("ConvTranspose", (0, 1), {"groups": "group"}),
    # PIR batch_norm inputs: x, mean, variance, scale, bias
    "batch_norm": ("BatchNormalization", (0, 3, 4, 1, 2), {"epsilon": "epsilon"}),
    "batch_norm_": ("BatchNormalization", (0, 3, 4, 1, 2), {"epsilon": "epsilon"}),
    "add": ("Add", (0, 1), {}),
    "multiply": ("Mul", (0, 1), {}),
    "matmul": ("MatMul", (0, 1), {"transpose_y": "trans_y"}),
    "layer_norm": ("LayerNormalization", (0, 1, 2), {"epsilon": "epsilon"}),
    "reshape": ("Reshape", (0, 1), {}),
}


def _value(attr):
    data = attr.get("D") if isinstance(attr, dict) else attr
    if isinstance(data, list):
        return [_value(item) if isinstance(item, dict) else item for item in data]
    return data


def _outputs(op):
    out = op.get("O") or []
    out = out if isinstance(out, list) else [out]
    return [str(o["%"]) if isinstance(o, dict) and "%" in o else "" for o in out]


def read_pir(program_path, params_path):
    """Return the :class:`Graph` of a PIR ``inference.json`` + ``inference.pdiparams``."""
    with open(program_path, "r", encoding="utf-8") as handle:
        program = json.load(handle)
    try:
        ops = program["program"]["regions"][0]["blocks"][0]["ops"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{program_path}: not a PIR program (no program.regions[0].blocks[0])") \
            from None
    params = {}
    for op in ops:
        if op.get("#") == "p":
            params[str(op["O"]["%"])] = (op["A"][-1], op["O"]["TT"]["D"][1])
    names = sorted(name for name, _ in params.values())
    arrays = dict(zip(names, read_tensors(params_path, len(names))))
    consts = {}
    for value_id, (name, shape) in params.items():
        if list(arrays[name].shape) != list(shape):
            raise ValueError(f"{params_path}: tensor '{name}' has shape "
                             f"{list(arrays[name].shape)}, the program says {shape}")
        consts[value_id] = arrays[name]
    nodes = []
    for op in ops:
        kind = op.get("#", "")
        if kind == "p":
            continue
        op_type = kind.split(".", 1)[-1]
        attrs = {a["N"]: _value(a["AT"]) for a in op.get("A") or [] if isinstance(a, dict)}
        outputs = _outputs(op)
        if op_type in ("full_int_array", "full") and outputs:
            value = np.asarray(attrs.get("value"))
            if op_type == "full" and attrs.get("shape") is not None:
                value = np.full(attrs["shape"], value, "float32")
            consts[outputs[0]] = value
            continue
        inputs = [str(i["%"]) if isinstance(i, dict) and "%" in i else ""
                  for i in op.get("I") or []]
        if op_type == "scale" and outputs and len(inputs) > 1 and inputs[1] in consts:
            nodes += scale_nodes(inputs[0], outputs[0], consts[inputs[1]], attrs.get("bias", 0.0),
                                 attrs.get("bias_after_scale", True), consts,
                                 f"scale:{outputs[0]}")
            continue
        onnx_op, order, attr_map = _OPS.get(op_type, (op_type, tuple(range(len(inputs))), {}))
        inputs = [inputs[i] if i < len(inputs) else "" for i in order]
        mapped = {attr_map[k]: v for k, v in attrs.items() if k in attr_map}
        nodes.append(Node(onnx_op, inputs, outputs[:1] or [f"{op_type}_{len(nodes)}"], mapped,
                          f"{op_type}:{outputs[0] if outputs else len(nodes)}"))
    return Graph(nodes, consts, program_path)
