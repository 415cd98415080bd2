"""The ``.pdmodel`` (ProgramDesc) reader on a hand-written program, so it is tested under every
paddle (paddle 3 exports ``.json``; only paddle 2.x writes ``.pdmodel`` itself)."""
import struct

import numpy as np
from paddle.base.proto import framework_pb2 as fpb

from ppdistill.importer.graph import weighted_ops
from ppdistill.importer.paddle_reader import read_paddle

# paddle 3 renamed LoDTensor to DenseTensor in the proto (field and enum value)
TENSOR_FIELD = "dense_tensor" if "dense_tensor" in \
    [f.name for f in fpb.VarType.DESCRIPTOR.fields] else "lod_tensor"
TENSOR_TYPE = fpb.VarType.Type.Value(TENSOR_FIELD.upper())


def _var(block, name, shape=None):
    var = block.vars.add(name=name, persistable=shape is not None)
    var.type.type = TENSOR_TYPE
    getattr(var.type, TENSOR_FIELD).tensor.data_type = fpb.VarType.FP32
    getattr(var.type, TENSOR_FIELD).tensor.dims.extend(shape or [-1, 1, 4, 4])


def _op(block, op_type, inputs, outputs, **attrs):
    op = block.ops.add(type=op_type)
    for slot, names in inputs.items():
        op.inputs.add(parameter=slot, arguments=names)
    for slot, names in outputs.items():
        op.outputs.add(parameter=slot, arguments=names)
    for name, value in attrs.items():
        attr = op.attrs.add(name=name)
        if isinstance(value, list):
            attr.type, attr.ints[:] = fpb.AttrType.INTS, value
        elif isinstance(value, int):
            attr.type, attr.i = fpb.AttrType.INT, value
        else:
            attr.type, attr.f = fpb.AttrType.FLOAT, value


def _write_params(path, tensors):
    """``.pdiparams``: the tensors in sorted name order, each serialized as paddle does."""
    with open(path, "wb") as handle:
        for name in sorted(tensors):
            array = tensors[name]
            desc = fpb.VarType.TensorDesc(data_type=fpb.VarType.FP32, dims=list(array.shape))
            blob = desc.SerializeToString()
            handle.write(struct.pack("<IQIi", 0, 0, 0, len(blob)) + blob + array.tobytes())


def test_conv_bias_reshaped_by_reshape2_and_bn_fold_into_one_conv(tmp_path):
    """paddle 2.6's jit.save adds a conv's bias through ``reshape2`` (target shape an attribute)
    to [1, C, 1, 1]: the bias and the following BN belong to the conv."""
    tensors = {"conv.w": np.array([2.0, -3.0], "float32").reshape(2, 1, 1, 1),
               "conv.b": np.array([0.5, -0.25], "float32"),
               "bn.scale": np.array([1.5, 0.75], "float32"),
               "bn.bias": np.array([0.1, 0.2], "float32"),
               "bn.mean": np.array([-1.0, 1.0], "float32"),
               "bn.var": np.array([4.0, 9.0], "float32")}
    program = fpb.ProgramDesc()
    block = program.blocks.add(idx=0, parent_idx=-1)
    for name in ("x", "c", "rb", "cb", "y"):
        _var(block, name)
    for name, array in tensors.items():
        _var(block, name, list(array.shape))
    _op(block, "conv2d", {"Input": ["x"], "Filter": ["conv.w"]}, {"Output": ["c"]},
        groups=1)
    _op(block, "reshape2", {"X": ["conv.b"]}, {"Out": ["rb"], "XShape": ["rb.xshape"]},
        shape=[1, 2, 1, 1])
    _op(block, "elementwise_add", {"X": ["c"], "Y": ["rb"]}, {"Out": ["cb"]})
    _op(block, "batch_norm", {"X": ["cb"], "Scale": ["bn.scale"], "Bias": ["bn.bias"],
                              "Mean": ["bn.mean"], "Variance": ["bn.var"]},
        {"Y": ["y"], "MeanOut": ["bn.mean"]}, epsilon=1e-3)
    (tmp_path / "inference.pdmodel").write_bytes(program.SerializeToString())
    _write_params(tmp_path / "inference.pdiparams", tensors)

    graph = read_paddle(str(tmp_path / "inference.pdmodel"), str(tmp_path / "inference.pdiparams"))
    ops = weighted_ops(graph)
    assert [op.kind for op in ops] == ["conv"]
    arrays = ops[0].arrays
    np.testing.assert_array_equal(arrays["weight"], tensors["conv.w"])
    np.testing.assert_array_equal(arrays["bias"], [0.5, -0.25])
    np.testing.assert_array_equal(arrays["bn_var"], [4.0, 9.0])
    np.testing.assert_array_equal(arrays["bn_scale"], [1.5, 0.75])
    assert abs(ops[0].eps - 1e-3) < 1e-9
