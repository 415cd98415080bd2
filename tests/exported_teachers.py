"""Tiny native teachers and their exports (Paddle inference files, ONNX graphs) for the tests of
``ppdistill.modeling.architectures.exported_model``. Nothing is downloaded.

TinyRecNet: mean over the height, 4-pixel columns -> one step, a linear layer, softmax:
``[N, 3, H, W] -> [N, W / 4, C]``. TinyDetNet: a 3x3 convolution and a sigmoid:
``[N, 3, H, W] -> [N, 1, H, W]``. ``*_onnx`` writes the same computation, with the native
model's weights, as an ONNX graph (the "export" of the native model).
"""
import numpy as np
import paddle
from paddle import nn

STEP = 4  # pixels of width per CTC step


class TinyRecNet(nn.Layer):
    def __init__(self, num_classes, seed=0, step=STEP):
        super().__init__()
        paddle.seed(seed)
        self.step = step
        self.fc = nn.Linear(3 * step, num_classes)

    def forward(self, x):
        x = x.mean(axis=2)                                        # [N, 3, W]
        x = x.reshape([0, 3, -1, self.step]).transpose([0, 2, 1, 3])  # [N, T, 3, step]
        x = x.reshape([0, 0, 3 * self.step])
        return nn.functional.softmax(self.fc(x), axis=-1)


class TinyDetNet(nn.Layer):
    def __init__(self, seed=0):
        super().__init__()
        paddle.seed(seed)
        self.conv = nn.Conv2D(3, 1, 3, padding=1)

    def forward(self, x):
        return nn.functional.sigmoid(self.conv(x))


def save_paddle(model, directory, height=None):
    """``paddle.jit.save`` ``model`` as ``directory/inference.*``; returns ``directory``."""
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, height or -1, -1], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True),
                    str(directory / "inference"))
    return str(directory)


def _save_onnx(nodes, inits, path, output_shape):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        nodes, "teacher",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        [numpy_helper.from_array(np.asarray(v), name=k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def rec_onnx(model, path, logits=False):
    """``model`` (a TinyRecNet) as an ONNX graph; ``logits`` leaves out the softmax."""
    from onnx import helper
    weight = model.fc.weight.numpy().astype("float32")
    bias = model.fc.bias.numpy().astype("float32")
    last = "logits" if not logits else "y"
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2], keepdims=0),
             helper.make_node("Reshape", ["m", "s1"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["t", "s2"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], [last])]
    if not logits:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=-1))
    step = model.step
    inits = {"s1": np.array([0, 3, -1, step], "int64"), "s2": np.array([0, 0, 3 * step], "int64"),
             "w": weight, "b": bias}
    return _save_onnx(nodes, inits, path, ["N", "T", weight.shape[1]])


def det_onnx(model, path):
    """``model`` (a TinyDetNet) as an ONNX graph."""
    from onnx import helper
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["y"])]
    inits = {"w": model.conv.weight.numpy().astype("float32"),
             "b": model.conv.bias.numpy().astype("float32")}
    return _save_onnx(nodes, inits, path, ["N", 1, "H", "W"])


def write_dict(path, characters):
    path.write_text("".join(c + "\n" for c in characters), encoding="utf-8")
    return str(path)


def block_teacher():
    """A TinyRecNet over classes ``blank, a, b, c, d`` that reads each 4-pixel column block by
    its mean value v in [-1, 1]: black (v = -1) -> ``a`` (p = e^5 / (1 + e^5 + e^-15) ≈ 0.9933),
    white (v = 1) -> ``b`` (same p), mid-grey (v ≈ 0) -> blank; ``c``/``d`` never."""
    net = TinyRecNet(5)
    weight = np.zeros([3 * STEP, 5], "float32")
    weight[:, 1], weight[:, 2] = -10.0 / (3 * STEP), 10.0 / (3 * STEP)
    bias = np.array([0.0, -5.0, -5.0, -100.0, -100.0], "float32")
    net.fc.weight.set_value(weight)
    net.fc.bias.set_value(bias)
    return net


BLOCK_VALUES = {"a": 0, "b": 255, "-": 128}  # pixel value of a 4-pixel block


def block_image(pattern, height=16):
    """A BGR image of 4-pixel blocks, e.g. ``"aa-b-a--"`` (32 px wide), that block_teacher
    reads as ``aba``."""
    row = np.concatenate([np.full([STEP], BLOCK_VALUES[c], "uint8") for c in pattern])
    return np.repeat(np.repeat(row[None, :, None], height, axis=0), 3, axis=2)
