"""Read an ``.onnx`` file into a :class:`~ppdistill.importer.graph.Graph` (needs ``onnx``)."""
from ppdistill.importer.graph import Graph, Node

MISSING = ("the 'onnx' and 'onnxruntime' packages are needed to import .onnx models: "
           "pip install 'ppdistill[onnx]' (or pip install onnx onnxruntime)")


def require_onnx():
    """Import ``onnx``; raise ImportError with an install hint when it is missing."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError(MISSING) from None
    return onnx, numpy_helper


def _attrs(onnx, node, numpy_helper):
    attrs = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if attr.type == onnx.AttributeProto.TENSOR:
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        attrs[attr.name] = value
    if node.op_type == "Cast" and "to" in attrs:
        attrs["to_numpy"] = onnx.helper.tensor_dtype_to_np_dtype(attrs["to"])
    return attrs


def read_onnx(path):
    """Return ``(graph, metadata)`` for the ONNX model at ``path``."""
    onnx, numpy_helper = require_onnx()
    try:
        model = onnx.load(path)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX model ({exc})") from None
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attrs = _attrs(onnx, node, numpy_helper)
        if node.op_type == "Constant":
            if "value" in attrs:
                consts[node.output[0]] = attrs["value"]
                continue
        nodes.append(Node(node.op_type, list(node.input), list(node.output), attrs,
                          node.name))
    metadata = {p.key: p.value for p in model.metadata_props}
    return Graph(nodes, consts, path), metadata
