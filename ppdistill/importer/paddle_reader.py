"""Read a Paddle inference model into a :class:`~ppdistill.importer.graph.Graph`.

Two program formats exist: ``inference.pdmodel`` (a ``ProgramDesc`` protobuf, paddle 2.x
exports) and ``inference.json`` (the PIR program of paddle 3.x exports). Both keep their
weights in ``inference.pdiparams``, a concatenation of serialized tensors. Op types are mapped
onto the ONNX names :mod:`ppdistill.importer.graph` understands.
"""
import struct

import numpy as np

from ppdistill.importer.graph import Graph, Node, scale_nodes

# VarType.Type codes of the tensor element types (framework.proto)
_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32",
           6: "float64", 20: "uint8", 21: "int8", 22: "bfloat16"}

#: Paddle op type -> (ONNX op, [(paddle input slot, position)], {paddle attr: onnx attr})
_OPS = {
    "conv2d": ("Conv", ("Input", "Filter", "Bias"), {"groups": "group"}),
    "depthwise_conv2d": ("Conv", ("Input", "Filter", "Bias"), {"groups": "group"}),
    "conv2d_transpose": ("ConvTranspose", ("Input", "Filter", "Bias"), {"groups": "group"}),
    "depthwise_conv2d_transpose": ("ConvTranspose", ("Input", "Filter", "Bias"),
                                   {"groups": "group"}),
    "batch_norm": ("BatchNormalization", ("X", "Scale", "Bias", "Mean", "Variance"),
                   {"epsilon": "epsilon"}),
    "elementwise_add": ("Add", ("X", "Y"), {}),
    "elementwise_mul": ("Mul", ("X", "Y"), {}),
    "matmul_v2": ("MatMul", ("X", "Y"), {"trans_y": "trans_y"}),
    "matmul": ("MatMul", ("X", "Y"), {"transpose_Y": "trans_y"}),
    "mul": ("MatMul", ("X", "Y"), {}),
    "layer_norm": ("LayerNormalization", ("X", "Scale", "Bias"), {"epsilon": "epsilon"}),
}


def read_tensors(params_path, count):
    """Yield ``count`` arrays from a combined ``.pdiparams`` file, in file order."""
    with open(params_path, "rb") as handle:
        data = handle.read()
    offset, arrays = 0, []

    def take(size):
        nonlocal offset
        if offset + size > len(data):
            raise ValueError(f"{params_path}: truncated parameter file")
        chunk = data[offset:offset + size]
        offset += size
        return chunk

    from paddle.base.proto import framework_pb2
    for _ in range(count):
        struct.unpack("<I", take(4))  # LoD tensor version
        (lod_levels,) = struct.unpack("<Q", take(8))
        for _ in range(lod_levels):
            (size,) = struct.unpack("<Q", take(8))
            take(size)
        struct.unpack("<I", take(4))  # tensor version
        (desc_size,) = struct.unpack("<i", take(4))
        desc = framework_pb2.VarType.TensorDesc.FromString(take(desc_size))
        dtype = np.dtype(_DTYPES[desc.data_type])
        shape = [int(d) for d in desc.dims]
        numel = int(np.prod(shape)) if shape else 1
        arrays.append(np.frombuffer(take(numel * dtype.itemsize), dtype).reshape(shape).copy())
    if offset != len(data):
        raise ValueError(f"{params_path}: {len(data) - offset} bytes left after {count} tensors; "
                         "the parameter file does not belong to this program")
    return arrays


def _attr(attr):
    """The value of an ``OpDesc.Attr`` (scalars and lists of the common types)."""
    for field in ("i", "f", "b", "s", "l", "float64"):
        if attr.HasField(field):
            return getattr(attr, field)
    for field in ("ints", "floats", "bools", "longs", "strings"):
        values = list(getattr(attr, field, []))
        if values:
            return values
    return None


def _read_pdmodel(program_path, params_path):
    from paddle.base.proto import framework_pb2
    with open(program_path, "rb") as handle:
        program = framework_pb2.ProgramDesc.FromString(handle.read())
    block = program.blocks[0]
    field = "dense_tensor" if "dense_tensor" in \
        [f.name for f in framework_pb2.VarType.DESCRIPTOR.fields] else "lod_tensor"
    shapes = {v.name: list(getattr(v.type, field).tensor.dims) for v in block.vars
              if v.persistable}
    names = sorted(n for n in shapes if n not in ("feed", "fetch"))
    arrays = read_tensors(params_path, len(names))
    consts = {}
    for name, array in zip(names, arrays):
        if list(array.shape) != shapes[name]:
            raise ValueError(f"{params_path}: tensor '{name}' has shape {list(array.shape)}, the "
                             f"program says {shapes[name]}")
        consts[name] = array
    nodes = []
    for op in block.ops:
        slots = {v.parameter: list(v.arguments) for v in op.inputs}
        outs = [a for v in op.outputs for a in v.arguments
                if v.parameter in ("Out", "Output", "Y")]
        attrs = {a.name: _attr(a) for a in op.attrs}
        if op.type in ("reshape2", "reshape") and not (slots.get("Shape") or
                                                        slots.get("ShapeTensor")):
            # the target shape is an attribute here (paddle 2.x puts a conv's bias through
            # reshape2 to [1, C, 1, 1]): give it to Reshape as a constant input
            shape_name = f"{outs[0] if outs else len(nodes)}@shape"
            consts[shape_name] = np.asarray(attrs.get("shape") or [], "int64")
            nodes.append(Node("Reshape", [(slots.get("X") or [""])[0], shape_name],
                              outs[:1] or [f"{op.type}_{len(nodes)}"], {},
                              f"{op.type}:{outs[0] if outs else len(nodes)}"))
            continue
        if op.type == "scale" and outs and not slots.get("ScaleTensor"):
            nodes += scale_nodes((slots.get("X") or [""])[0], outs[0], attrs.get("scale", 1.0),
                                 attrs.get("bias", 0.0), attrs.get("bias_after_scale", True),
                                 consts, f"scale:{outs[0]}")
            continue
        onnx_op, order, attr_map = _OPS.get(op.type, (op.type, tuple(slots), {}))
        inputs = [(slots.get(slot) or [""])[0] for slot in order]
        while inputs and inputs[-1] == "":
            inputs.pop()
        mapped = {attr_map[k]: v for k, v in attrs.items() if k in attr_map}
        nodes.append(Node(onnx_op, inputs, outs[:1] or [f"{op.type}_{len(nodes)}"], mapped,
                          f"{op.type}:{outs[0] if outs else len(nodes)}"))
    return Graph(nodes, consts, program_path)


def read_paddle(program_path, params_path):
    """Return the :class:`Graph` of a Paddle inference model (``.pdmodel`` or ``.json``)."""
    if program_path.endswith(".json"):
        from ppdistill.importer.pir_reader import read_pir
        return read_pir(program_path, params_path)
    return _read_pdmodel(program_path, params_path)
