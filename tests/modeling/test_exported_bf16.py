"""``precision`` on a teacher given as an exported model: bfloat16 through paddle.inference +
oneDNN on a CPU with AVX512_BF16/AMX-BF16 (training-mode forward only), otherwise one warning
and float32, never a crash.

Stated tolerance: the tiny teachers' probabilities (softmax rows / sigmoid maps in [0, 1]) in
bfloat16 are within 2e-2 of float32 (8-bit mantissa: a relative error of 2^-8 per rounding)."""
import logging

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from exported_teachers import TinyDetNet, TinyRecNet, det_onnx, save_paddle
from paddle import nn

from ppdistill.modeling import onednn_runner
from ppdistill.modeling import precision as prec
from ppdistill.modeling.architectures import build_model
from ppdistill.modeling.architectures.exported_model import ExportedModel, build_exported_model
from ppdistill.registry import ConfigError

HAS_BF16 = onednn_runner.cpu_has_bf16() and onednn_runner.onednn_available()
TOL = 2e-2
PATH = "Architecture.Models.Teacher"
REC_SHAPE, DET_SHAPE = [3, 16, 32], [3, 16, 16]


class TinyUpNet(nn.Layer):
    """A det-like map with a nearest x2 upsampling by ``scale_factor`` (as DB necks have), the
    attribute paddle 3.3's oneDNN executor cannot run from a PIR (.json) program."""

    def __init__(self):
        super().__init__()
        paddle.seed(1)
        self.conv = nn.Conv2D(3, 4, 3, padding=1)

    def forward(self, x):
        up = F.interpolate(self.conv(x), scale_factor=2, mode="nearest")
        return F.sigmoid(F.avg_pool2d(up, 2).mean(axis=1, keepdim=True))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16_teachers")
    files = {}
    for name, net in (("rec", TinyRecNet(7)), ("det", TinyDetNet()), ("up", TinyUpNet())):
        (root / name).mkdir()
        files[name] = save_paddle(net, root / name)
    files["det_net"] = TinyDetNet()
    return files


def teacher(exports, kind, precision="bf16"):
    model_type = "rec" if kind == "rec" else "det"
    shape = REC_SHAPE if kind == "rec" else DET_SHAPE
    return ExportedModel(exports[kind], model_type, input={"shape": shape},
                         precision=precision, path=PATH)


def batch(kind, seed=3):
    shape = [4] + (REC_SHAPE if kind == "rec" else DET_SHAPE)
    return paddle.to_tensor(np.random.RandomState(seed).uniform(-1, 1, shape).astype("float32"))


def probabilities(model, x, training):
    """The teacher's output as probabilities in training or eval mode."""
    model.train() if training else model.eval()
    out = model(x)
    if isinstance(out, dict):
        return out["maps"].numpy()
    return np.exp(out.numpy()) if training else out.numpy()  # rec trains on log p


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
def cpu_supports_bf16(monkeypatch):
    """Pretend the capability check passes (the runner itself may still be unable to run)."""
    monkeypatch.setattr(prec, "_cpu_bf16_reason", lambda: None)


@pytest.mark.skipif(not HAS_BF16, reason="needs a CPU with AVX512_BF16/AMX-BF16 and oneDNN")
@pytest.mark.parametrize("kind", ["rec", "det"])
def test_bf16_export_runs_within_tolerance_in_training_only(exports, kind, caplog):
    with caplog.at_level(logging.INFO, logger="ppdistill"):
        model = teacher(exports, kind)
    if kind == "det" and paddle.__version__.startswith("2."):
        # paddle 2.6 accepts every op set on this export but runs it in float32: one warning
        assert model.low_runner is None
        assert any("bfloat16 had no effect" in w for w in warnings_of(caplog)), caplog.text
        return
    assert model.low_runner is not None, caplog.text
    assert (f"{PATH}.precision: bf16 training forward through paddle.inference + oneDNN "
            f"(") in caplog.text and "probe batch vs float32, |diff| per output: max" in caplog.text
    assert not warnings_of(caplog)
    x = batch(kind)
    low = probabilities(model, x, training=True)
    full = probabilities(model, x, training=False)  # eval mode: the float32 predictor
    reference = np.asarray(model.runner(model.adapter(x).numpy())[0])
    np.testing.assert_array_equal(full, reference)
    diff = np.abs(low - full).max()
    assert low.dtype == np.float32 and 0 < diff <= TOL, diff  # bf16 rounding shows, bounded
    again = probabilities(model, x, training=True)  # the predictor is reused, deterministic
    np.testing.assert_array_equal(again, low)


def test_without_cpu_support_one_warning_and_float32(exports, monkeypatch, caplog):
    monkeypatch.setattr(prec, "_cpu_bf16_reason",
                        lambda: "this CPU has no AVX512_BF16 / AMX-BF16")
    built = []
    monkeypatch.setattr(onednn_runner.Bf16ExportRunner, "__init__",
                        lambda *a, **k: built.append(1))
    with caplog.at_level(logging.INFO, logger="ppdistill"):
        model = teacher(exports, "det")
    assert warnings_of(caplog) == [f"{PATH}.precision: bf16 requested; this CPU has no "
                                   f"AVX512_BF16 / AMX-BF16: float32 is used"]
    assert model.low_runner is None and built == []
    x = batch("det")
    np.testing.assert_array_equal(probabilities(model, x, True), probabilities(model, x, False))


def test_a_paddle_without_bf16_inference_falls_back(exports, cpu_supports_bf16, monkeypatch,
                                                    caplog):
    """e.g. a paddle whose inference Config lacks the bfloat16 switch: every op set is tried,
    then one warning, float32."""
    calls = []

    def no_bf16(self, model_dir, threads=1, bf16_ops=None):
        calls.append(bf16_ops)
        raise AttributeError("'Config' object has no attribute 'enable_mkldnn_bfloat16'")

    monkeypatch.setattr(onednn_runner.Bf16ExportRunner, "__init__", no_bf16)
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        model = teacher(exports, "rec")
    assert calls == list(onednn_runner.BF16_OP_SETS)
    assert warnings_of(caplog) == [
        f"{PATH}.precision: bf16 requested; oneDNN bfloat16 cannot run this export: "
        f"AttributeError: 'Config' object has no attribute 'enable_mkldnn_bfloat16': "
        f"float32 is used"]
    assert model.low_runner is None
    x = batch("rec")
    np.testing.assert_allclose(probabilities(model, x, True), probabilities(model, x, False),
                               rtol=1e-6, atol=1e-7)


def test_pir_attribute_error_stops_at_once(exports, cpu_supports_bf16, monkeypatch, caplog):
    calls = []

    def pir_error(self, images):
        calls.append(self.bf16_ops)
        raise NotImplementedError("(Unimplemented) ConvertPirAttribute2RuntimeAttribute not "
                                  "support [pir::ArrayAttribute<pir::DoubleAttribute>]")

    monkeypatch.setattr(onednn_runner.Bf16ExportRunner, "__call__", pir_error)
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        model = teacher(exports, "det")
    assert calls == [None] and model.low_runner is None
    (message,) = warnings_of(caplog)
    assert message.startswith(f"{PATH}.precision: bf16 requested; paddle ")
    assert "oneDNN executor cannot run this PIR (.json) program" in message
    assert message.endswith(": float32 is used")


def test_broken_bf16_outputs_are_rejected(exports, cpu_supports_bf16, monkeypatch, caplog):
    """A program that runs but gives non-finite (or far-off) outputs is not used."""
    monkeypatch.setattr(onednn_runner.Bf16ExportRunner, "__init__",
                        lambda self, *a, **k: setattr(self, "bf16_ops", None))
    monkeypatch.setattr(onednn_runner.Bf16ExportRunner, "__call__",
                        lambda self, images: [np.full([2, 1, 16, 16], np.nan, "float32")])
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        model = teacher(exports, "det")
    assert model.low_runner is None
    assert warnings_of(caplog) == [f"{PATH}.precision: bf16 requested; oneDNN bfloat16 cannot "
                                   f"run this export: non-finite outputs: float32 is used"]
    assert onednn_runner._check_outputs([np.ones([2, 3]) * 0.9], [np.zeros([2, 3])]) == \
        "outputs 0.9 away from float32"
    assert onednn_runner._check_outputs([np.ones([2, 3])], [np.ones([2, 2])]) == \
        "output shape [2, 3] instead of [2, 2]"


def test_bf16_failure_during_training_falls_back_once(exports, caplog):
    model = teacher(exports, "det", precision="fp32")
    x = batch("det")
    reference = probabilities(model, x, training=False)
    calls = []

    def broken(images):
        calls.append(1)
        raise RuntimeError("oneDNN primitive creation failed\n[operator < conv2d > error]")

    model.low_runner = broken
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        first = probabilities(model, x, training=True)
        second = probabilities(model, x, training=True)
    assert calls == [1] and model.low_runner is None
    assert warnings_of(caplog) == [
        f"{PATH}.precision: the bfloat16 program failed on a batch of shape [4, 3, 16, 16] "
        f"(RuntimeError: oneDNN primitive creation failed ... [operator < conv2d > error]); "
        f"float32 is used from now on"]
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(second, reference)


def test_onnx_teacher_says_why_and_runs_float32(exports, tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = det_onnx(exports["det_net"], tmp_path / "det.onnx")
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        model = ExportedModel(path, "det", input={"shape": DET_SHAPE}, precision="bf16",
                              path=PATH)
    assert warnings_of(caplog) == [
        f"{PATH}.precision: bf16 requested; an .onnx teacher runs under onnxruntime, whose CPU "
        f"execution provider has no general bf16 path: float32 is used"]
    x = batch("det")
    np.testing.assert_array_equal(probabilities(model, x, True), probabilities(model, x, False))


def test_fp16_on_the_cpu_falls_back(exports, caplog):
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        model = teacher(exports, "det", precision="fp16")
    assert model.low_runner is None
    assert warnings_of(caplog) == [f"{PATH}.precision: fp16 requested; paddle.inference has no "
                                   f"fp16 path on the CPU: float32 is used"]


def test_precision_key_in_the_config(exports):
    config = {"model_type": "det", "inference_model": exports["det"], "precision": "bf61",
              "input": {"shape": DET_SHAPE}}
    with pytest.raises(ConfigError, match=r"^Architecture\.Models\.Teacher\.precision: unknown "
                                          r"precision 'bf61'; did you mean 'bf16'\?"):
        build_exported_model(config, path=PATH)
    assert config["precision"] == "bf61"  # the caller's config is not changed
    student = {"model_type": "det", "algorithm": "DB",
               "Backbone": {"name": "MobileNetV3", "scale": 0.35, "model_name": "small"},
               "Neck": {"name": "DBFPN", "out_channels": 8}, "Head": {"name": "DBHead", "k": 50}}
    model = build_model({"name": "DistillationModel", "model_type": "det",
                         "algorithm": "Distillation", "Models": {
                             "Teacher": dict(config, precision="fp32"), "Student": student}})
    assert model.Teacher.precision == "fp32" and model.Teacher.low_runner is None
    assert "Teacher" in model.frozen_names and "Teacher" not in model.precisions


@pytest.mark.skipif(not HAS_BF16, reason="needs a CPU with AVX512_BF16/AMX-BF16 and oneDNN")
def test_scale_factor_upsampling_export_never_crashes(exports, caplog):
    """paddle 3.3 writes a .json (PIR) program whose interpolate keeps its scale_factor: its
    oneDNN executor cannot run it, so one warning and float32; where it runs, the tolerance."""
    with caplog.at_level(logging.INFO, logger="ppdistill"):
        model = teacher(exports, "up")
    x = batch("up")
    low, full = probabilities(model, x, True), probabilities(model, x, False)
    if model.low_runner is None:
        (message,) = warnings_of(caplog)
        assert message.startswith(f"{PATH}.precision: bf16 requested; ")
        assert message.endswith("float32 is used")
        np.testing.assert_array_equal(low, full)
    else:
        assert not warnings_of(caplog) and np.abs(low - full).max() <= TOL
