"""``Architecture.Models.<name>.precision``: validation, per-device resolution, wiring into the
frozen sub-model's forward, float32 outputs, no gradient graph for the teacher."""
import logging

import numpy as np
import paddle
import pytest
from conftest import toy_model_config
from paddle import nn

from ppdistill.engine import setup
from ppdistill.modeling import onednn_runner
from ppdistill.modeling import precision as prec
from ppdistill.modeling.architectures import build_model
from ppdistill.modeling.architectures import distillation_model as dm
from ppdistill.registry import HEADS, ConfigError

HAS_GPU = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def distill_config(teacher_precision=None, student_precision=None):
    teacher = dict(toy_model_config(6), freeze_params=True)
    student = toy_model_config(4)
    if teacher_precision is not None:
        teacher["precision"] = teacher_precision
    if student_precision is not None:
        student["precision"] = student_precision
    return {"name": "DistillationModel", "model_type": "det", "algorithm": "Distillation",
            "Models": {"Teacher": teacher, "Student": student}}


def test_parse_precision_values_and_errors():
    assert prec.parse_precision(None, "p", frozen=True) == "fp32"
    assert prec.parse_precision("BF16", "p", frozen=True) == "bf16"
    assert prec.parse_precision("fp32", "p", frozen=False) == "fp32"
    with pytest.raises(ConfigError, match=r"^A\.precision: unknown precision 'bf61'; did you "
                                          r"mean 'bf16'\?"):
        prec.parse_precision("bf61", "A.precision", frozen=True)
    with pytest.raises(ConfigError, match="applies only to a frozen sub-model"):
        prec.parse_precision("fp16", "A.precision", frozen=False)


def test_model_config_key_is_checked_with_its_path():
    model = build_model(distill_config("bf16"))
    assert model.precisions == {"Teacher": "bf16"} and model.run_dtypes == {}
    with pytest.raises(ConfigError, match=r"Architecture\.Models\.Student\.precision: precision "
                                          r"bf16 applies only to a frozen sub-model"):
        build_model(distill_config(student_precision="bf16"))
    with pytest.raises(ConfigError, match=r"Architecture\.Models\.Teacher\.precision: unknown"):
        build_model(distill_config("half"))


def test_resolution_per_device(monkeypatch):
    assert prec.resolve_precision("fp32", "cpu") == (None, "fp32")
    assert prec.resolve_precision("fp16", "gpu:0")[0] == "float16"
    monkeypatch.setattr(paddle.amp, "is_bfloat16_supported", lambda *a: True, raising=False)
    assert prec.resolve_precision("bf16", "gpu:0")[0] == "bfloat16"
    monkeypatch.setattr(paddle.amp, "is_bfloat16_supported", lambda *a: False, raising=False)
    dtype, note = prec.resolve_precision("bf16", "gpu:0")
    assert dtype is None and "does not support bfloat16" in note


def test_cpu_resolution(monkeypatch):
    """bf16 on the CPU: oneDNN when the CPU and paddle have it, else float32 with the reason;
    fp16 on the CPU: float32 (paddle's CPU build ignores auto_cast / has no fp16 conv2d)."""
    monkeypatch.setattr(prec, "_cpu_bf16_reason", lambda: None)
    dtype, note = prec.resolve_precision("bf16", "cpu")
    assert dtype == "bfloat16" and "oneDNN" in note
    monkeypatch.setattr(prec, "_cpu_bf16_reason", lambda: "this CPU has no AVX512_BF16 / AMX-BF16")
    assert prec.resolve_precision("bf16", "cpu") == (
        None, "this CPU has no AVX512_BF16 / AMX-BF16: float32 is used")
    dtype, note = prec.resolve_precision("fp16", "cpu")
    assert dtype is None and note.endswith("float32 is used")
    assert "float16 conv2d" in note or "ignores auto_cast" in note


def test_cpu_bf16_needs_the_cpu_flag(monkeypatch):
    from ppdistill.modeling import onednn_runner
    assert onednn_runner.cpu_has_bf16({"avx2", "avx512_bf16"})
    assert onednn_runner.cpu_has_bf16({"amx_tile", "amx_bf16"})
    assert not onednn_runner.cpu_has_bf16({"avx2", "avx512f"})


def test_to_float32_casts_floating_tensors_only():
    half = paddle.to_tensor([1.5, -2.25]).astype("bfloat16")
    ids = paddle.to_tensor([1, 2], dtype="int64")
    out = prec.to_float32({"maps": half, "ids": ids, "pair": (half, 3), "name": "x"})
    assert out["maps"].dtype == paddle.float32 and out["pair"][0].dtype == paddle.float32
    np.testing.assert_array_equal(out["maps"].numpy(), [1.5, -2.25])
    assert out["ids"].dtype == paddle.int64 and out["pair"][1] == 3 and out["name"] == "x"
    assert isinstance(out["pair"], tuple)


def test_setup_falls_back_to_float32_with_a_warning(caplog, monkeypatch):
    monkeypatch.setattr(prec, "_cpu_bf16_reason", lambda: "this CPU has no AVX512_BF16 / AMX-BF16")
    model = build_model(distill_config("bf16"))
    x = paddle.randn([2, 3, 8, 8])
    before = model(x)
    logger = logging.getLogger("ppdistill.test_precision")
    with caplog.at_level(logging.INFO, logger="ppdistill.test_precision"):
        setup.prepare_for_training(model, None, {"Global": {}}, logger)
    assert model.run_dtypes == {"Teacher": None}
    assert ("Architecture.Models.Teacher.precision: bf16 requested; this CPU has no "
            "AVX512_BF16 / AMX-BF16: float32 is used") in caplog.text
    after = model(x)
    for name in ("Teacher", "Student"):
        np.testing.assert_array_equal(after[name]["maps"].numpy(), before[name]["maps"].numpy())


HAS_BF16 = onednn_runner.cpu_has_bf16() and onednn_runner.onednn_available()


@pytest.mark.skipif(not HAS_BF16, reason="needs a CPU with AVX512_BF16/AMX-BF16 and oneDNN")
def test_cpu_bf16_teacher_close_to_float32_student_untouched(caplog):
    """Stated tolerance: the bf16 teacher's maps (sigmoids in [0, 1]) within 2e-2 of float32;
    the student runs and trains in float32, the teacher builds no gradients; eval is float32."""
    model = build_model(distill_config("bf16"))
    model.train()
    x = paddle.randn([2, 3, 16, 16])
    reference = {k: v["maps"].numpy() for k, v in model(x).items()}
    with caplog.at_level(logging.INFO, logger="ppdistill"):
        setup.prepare_for_training(model, None, {"Global": {}}, logging.getLogger("ppdistill"))
        out = model(x)
    assert model.run_dtypes == {"Teacher": "bfloat16"}
    assert "Teacher: forward in bfloat16 through paddle.inference + oneDNN" in caplog.text
    teacher, student = out["Teacher"]["maps"], out["Student"]["maps"]
    assert teacher.dtype == paddle.float32 and teacher.stop_gradient
    diff = np.abs(teacher.numpy() - reference["Teacher"]).max()
    assert 0 < diff <= 2e-2, diff  # bf16 rounding shows, within the tolerance
    np.testing.assert_array_equal(student.numpy(), reference["Student"])
    (student - teacher).square().mean().backward()
    assert all(p.grad is None for p in model.Teacher.parameters())
    assert all(p.grad is not None for p in model.Student.parameters() if not p.stop_gradient)
    assert all(p.dtype == paddle.float32 for p in model.parameters())
    again = model(x)["Teacher"]["maps"].numpy()  # the built program is reused
    np.testing.assert_array_equal(again, teacher.numpy())
    model.eval()
    np.testing.assert_array_equal(model(x)["Teacher"]["maps"].numpy(),
                                  model.Teacher(x)["maps"].numpy())


@HEADS.register("ToyLabelHead")
class ToyLabelHead(nn.Layer):
    """Like a rec MultiHead in training: needs the labels (``targets[0]``, one value per
    image) and fails without them (for tests only)."""

    def __init__(self, in_channels, out_channels=3):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, 1)

    def forward(self, x, targets=None):
        if self.training and targets is None:
            raise ValueError("ToyLabelHead: training needs targets")
        shift = targets[0].reshape([-1, 1, 1, 1]) if self.training else 0.0
        return {"maps": nn.functional.sigmoid(self.conv(x) + shift)}


@pytest.mark.skipif(not HAS_BF16, reason="needs a CPU with AVX512_BF16/AMX-BF16 and oneDNN")
def test_cpu_bf16_teacher_that_reads_the_labels():
    config = distill_config("bf16")
    config["Models"]["Teacher"]["Head"] = {"name": "ToyLabelHead"}
    model = build_model(config)
    model.train()
    setup.prepare_for_training(model, None, {"Global": {}}, logging.getLogger("ppdistill"))
    x = paddle.randn([2, 3, 16, 16])
    for shift in ([0.0, 3.0], [-2.0, 1.0]):  # the labels are fed, not frozen into the program
        data = [paddle.to_tensor(shift), paddle.zeros([2, 5], dtype="int64")]
        out = model(x, data)["Teacher"]["maps"].numpy()
        with paddle.no_grad():
            reference = model.Teacher(x, data)["maps"].numpy()
        assert out.dtype == np.float32 and 0 < np.abs(out - reference).max() <= 2e-2
    assert model.Teacher._ppdistill_bf16_runner.failed is None


def test_runner_failure_falls_back_to_float32_once(caplog, monkeypatch):
    model = build_model(distill_config("bf16"))
    model.train()
    x = paddle.randn([2, 3, 8, 8])
    reference = model(x)["Teacher"]["maps"].numpy()
    calls = []

    def broken(self, x, data):
        calls.append(1)
        raise RuntimeError("no oneDNN here\nsecond line")

    monkeypatch.setattr(onednn_runner.OneDNNBf16Runner, "_build", broken)
    monkeypatch.setattr(prec, "_cpu_bf16_reason", lambda: None)
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        setup.prepare_for_training(model, None, {"Global": {}}, logging.getLogger("ppdistill"))
        first = model(x)["Teacher"]["maps"].numpy()
        second = model(x)["Teacher"]["maps"].numpy()
    assert calls == [1]
    assert ("Architecture.Models.Teacher: bfloat16 forward through paddle.inference + oneDNN "
            "unavailable (RuntimeError: no oneDNN here ... second line); it runs in "
            "float32") in caplog.text
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(second, reference)


def test_frozen_forward_runs_in_the_chosen_dtype_without_gradients(monkeypatch):
    """The dtype chosen at setup reaches the frozen sub-model's forward, under no_grad; the
    student runs as before and trains in float32."""
    seen = []

    def spy(model, x, data=None, dtype=None):
        seen.append((dtype, paddle.is_grad_enabled()))
        return prec.to_float32(model(x.astype("float32"), data))

    monkeypatch.setattr(dm, "low_precision_forward", spy)
    model = build_model(distill_config("bf16"))
    model.run_dtypes["Teacher"] = "bfloat16"
    x = paddle.randn([2, 3, 8, 8])
    out = model(x)
    assert seen == [("bfloat16", False)]
    assert out["Teacher"]["maps"].stop_gradient and out["Teacher"]["maps"].dtype == paddle.float32
    student = out["Student"]["maps"]
    assert not student.stop_gradient and student.dtype == paddle.float32
    (student - out["Teacher"]["maps"]).square().mean().backward()
    assert all(p.grad is None for p in model.Teacher.parameters())
    assert all(p.grad is not None for p in model.Student.parameters() if not p.stop_gradient)
    assert all(p.dtype == paddle.float32 for p in model.parameters())


@pytest.mark.skipif(not HAS_GPU, reason="low precision runs on a GPU only (paddle's CPU build "
                                        "has no bf16/fp16 kernels)")
@pytest.mark.parametrize("name, rtol", [("fp16", 2e-3), ("bf16", 2e-2)])
def test_low_precision_teacher_close_to_float32_on_gpu(name, rtol):
    """Stated tolerance: max |diff| of the teacher's maps <= rtol (maps are sigmoids in [0, 1]);
    the students' parameters and outputs stay float32."""
    paddle.set_device("gpu")
    try:
        model = build_model(distill_config(name))
        x = paddle.randn([2, 3, 16, 16])
        reference = model(x)["Teacher"]["maps"].numpy()
        dtype, _ = prec.resolve_precision(name, "gpu:0")
        if dtype is None:
            pytest.skip(f"{name} not supported on this GPU")
        model.run_dtypes["Teacher"] = dtype
        out = model(x)
        assert out["Teacher"]["maps"].dtype == paddle.float32
        assert np.abs(out["Teacher"]["maps"].numpy() - reference).max() <= rtol
        assert out["Student"]["maps"].dtype == paddle.float32
    finally:
        paddle.set_device("cpu")
