"""predict_rec on a model exported with a fixed input size (e.g. the SVTRNet teacher, 48x320):
the declared input shape is read from the program and every batch gets exactly that size."""
import numpy as np
import paddle
import pytest

from ppdistill.infer.text_recognizer import TextRecognizer
from ppdistill.infer.predictor import InferenceModel, program_input_shape

H, W = 8, 32


class FixedWidthNet(paddle.nn.Layer):
    """[N, 3, H, W] -> [N, W, 3] softmax; a width-sized parameter (like SVTRNet's positional
    embedding) makes any other width fail."""

    def __init__(self):
        super().__init__()
        self.pos = self.create_parameter(
            [W], default_initializer=paddle.nn.initializer.Constant(0.1))
        self.fc = paddle.nn.Linear(1, 3)

    def forward(self, x):
        column = x.mean(axis=[1, 2]) + self.pos
        return paddle.nn.functional.softmax(self.fc(column.unsqueeze(-1)), axis=-1)


def export(tmp_path, shape):
    paddle.seed(0)
    net = FixedWidthNet()
    net.eval()
    spec = [paddle.static.InputSpec(shape=shape, dtype="float32", name="x")]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True),
                    str(tmp_path / "inference"))
    return str(tmp_path)


def test_program_input_shape_reads_the_declared_size(tmp_path):
    fixed = InferenceModel(export(tmp_path / "fixed", [None, 3, H, W]), cpu_threads=1)
    assert fixed.input_shape == [-1, 3, H, W]
    assert program_input_shape(str(tmp_path / "missing.json")) is None


def test_wide_crop_is_fitted_to_a_fixed_input(tmp_path):
    dict_file = tmp_path / "dict.txt"
    dict_file.write_text("a\nb\n")
    model_dir = export(tmp_path / "model", [None, 3, H, W])
    recognizer = TextRecognizer(model_dir, str(dict_file), use_space_char=False,
                                rec_image_shape=(3, 48, 320), rec_batch_num=2)
    assert recognizer.image_shape == [3, H, W]
    rng = np.random.RandomState(0)
    crops = [rng.randint(0, 255, (16, 200, 3)).astype("uint8"),   # ratio 12.5 > W / H
             rng.randint(0, 255, (16, 20, 3)).astype("uint8")]
    results, _ = recognizer(crops)
    assert len(results) == 2 and all(isinstance(text, str) for text, _ in results)
    with pytest.raises(Exception):  # the model itself rejects any other width
        recognizer.model(np.zeros((1, 3, H, 2 * W), dtype="float32"))
