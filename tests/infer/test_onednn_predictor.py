"""oneDNN for exported models: ppdistill's det exports run with it (no scale-factor interpolate for
paddle 3.3's oneDNN executor to fail on), a program oneDNN cannot run falls back to paddle's plain
CPU kernels with one warning, ``PPDISTILL_ONEDNN=0`` switches the default off."""
import os
import warnings

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from ppdistill.infer import onednn
from ppdistill.infer.predictor import InferenceModel, find_model_files
from ppdistill.modeling.architectures import build_model
from ppdistill.utils.export import export_model

pytestmark = pytest.mark.skipif(not onednn.onednn_available(), reason="paddle without oneDNN")


def det_config():
    """A small real det model whose neck upsamples by 2, 4 and 8 (DBFPN)."""
    return {"Architecture": {
        "model_type": "det", "algorithm": "DB",
        "Backbone": {"name": "MobileNetV3", "scale": 0.35, "model_name": "small"},
        "Neck": {"name": "DBFPN", "out_channels": 16},
        "Head": {"name": "DBHead", "k": 50}}}


def new_det_model():
    paddle.seed(3)
    model = build_model(det_config()["Architecture"])
    model.eval()
    return model


@pytest.fixture(scope="module")
def det_model():
    return new_det_model()


@pytest.fixture
def image():
    return np.random.RandomState(0).rand(1, 3, 64, 96).astype("float32")


def paddleocr_style_export(model, model_dir):
    """``paddle.jit.save`` of the model as it is: interpolate ops with a ``scale_factor``."""
    spec = [paddle.static.InputSpec([None, 3, -1, -1], "float32", name="x")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True),
                    os.path.join(model_dir, "inference"))
    return model_dir


def program_ops(model_dir):
    model_file, _ = find_model_files(model_dir)
    if not model_file.endswith(".json"):
        return None
    with open(model_file) as handle:
        text = handle.read()
    return {op for op in ("nearest_interp", "repeat_interleave") if op in text}


def test_upsampling_rewrite_gives_paddles_values_and_restores_interpolate():
    x = paddle.to_tensor(np.random.RandomState(1).rand(2, 3, 5, 7).astype("float32"))
    original = F.interpolate
    with onednn.onednn_runnable_upsampling():
        assert F.interpolate is not original
        for scale in (2, 3):
            ours = F.interpolate(x, scale_factor=scale, mode="nearest")
            np.testing.assert_array_equal(ours.numpy(),
                                          original(x, scale_factor=scale, mode="nearest").numpy())
        layer = paddle.nn.Upsample(scale_factor=2, mode="nearest")
        np.testing.assert_array_equal(layer(x).numpy(),
                                      original(x, scale_factor=2, mode="nearest").numpy())
        # anything else goes to paddle's interpolate unchanged
        bilinear = F.interpolate(x, size=[10, 14], mode="bilinear", align_corners=False)
        np.testing.assert_array_equal(
            bilinear.numpy(),
            original(x, size=[10, 14], mode="bilinear", align_corners=False).numpy())
    assert F.interpolate is original


def test_ppdistill_det_export_runs_with_onednn(tmp_path, det_model, image, monkeypatch):
    monkeypatch.delenv(onednn.ONEDNN_ENV, raising=False)
    model_dir = export_model(det_config(), det_model, str(tmp_path))[""]
    if program_ops(model_dir) is not None:  # paddle 3 .json: no scale-factor interpolate left
        assert program_ops(model_dir) == {"repeat_interleave"}
    runner = InferenceModel(model_dir, use_gpu=False, cpu_threads=1)
    assert runner.onednn
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        out = runner(image)[0]
    assert runner.onednn
    ref = det_model(paddle.to_tensor(image))["maps"].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # a second input size reuses the predictor
    other = np.random.RandomState(2).rand(1, 3, 96, 64).astype("float32")
    np.testing.assert_allclose(runner(other)[0],
                               det_model(paddle.to_tensor(other))["maps"].numpy(), atol=1e-5)


def test_paddleocr_form_export_keeps_paddles_interpolate(tmp_path, det_model, image,
                                                        monkeypatch):
    """PPDISTILL_DEPLOY_FORM=0 exports as PaddleOCR does (the benchmark's baseline): the
    neck's upsampling stays paddle's interpolate; the values are the same."""
    monkeypatch.setenv("PPDISTILL_DEPLOY_FORM", "0")
    monkeypatch.setenv(onednn.ONEDNN_ENV, "0")
    model_dir = export_model(det_config(), det_model, str(tmp_path))[""]
    if program_ops(model_dir) is not None:
        assert program_ops(model_dir) == {"nearest_interp"}
    out = InferenceModel(model_dir, use_gpu=False, cpu_threads=1)(image)[0]
    np.testing.assert_allclose(out, det_model(paddle.to_tensor(image))["maps"].numpy(), atol=1e-5)


def test_program_onednn_cannot_run_falls_back_with_one_warning(tmp_path, image, monkeypatch):
    monkeypatch.delenv(onednn.ONEDNN_ENV, raising=False)
    det_model = new_det_model()  # its own: paddle 2.6's to_static converts a layer in place
    model_dir = paddleocr_style_export(det_model, str(tmp_path))
    runner = InferenceModel(model_dir, use_gpu=False, cpu_threads=1)
    ref = det_model(paddle.to_tensor(image))["maps"].numpy()
    if program_ops(model_dir) is None:  # paddle 2.x .pdmodel: oneDNN runs interpolate
        np.testing.assert_allclose(runner(image)[0], ref, atol=1e-5)
        assert runner.onednn
        return
    assert "nearest_interp" in program_ops(model_dir)
    with pytest.warns(UserWarning, match="oneDNN cannot run this program.*plain CPU kernels"):
        out = runner(image)[0]
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert not runner.onednn
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        np.testing.assert_allclose(runner(image)[0], ref, atol=1e-5)


def test_environment_switches_the_default_off(tmp_path, det_model, image, monkeypatch):
    model_dir = export_model(det_config(), det_model, str(tmp_path))[""]
    monkeypatch.setenv(onednn.ONEDNN_ENV, "0")
    assert not onednn.onednn_default()
    runner = InferenceModel(model_dir, use_gpu=False, cpu_threads=1)
    assert not runner.onednn
    np.testing.assert_allclose(runner(image)[0],
                               det_model(paddle.to_tensor(image))["maps"].numpy(), atol=1e-5)
    # asked for explicitly, oneDNN is used whatever the environment says
    assert InferenceModel(model_dir, use_gpu=False, cpu_threads=1, enable_mkldnn=True).onednn


def test_bad_input_is_raised_and_onednn_kept(tmp_path, det_model, monkeypatch):
    monkeypatch.delenv(onednn.ONEDNN_ENV, raising=False)
    model_dir = export_model(det_config(), det_model, str(tmp_path))[""]
    runner = InferenceModel(model_dir, use_gpu=False, cpu_threads=1)
    with pytest.raises(Exception):
        runner(np.zeros((1, 5, 32, 32), dtype="float32"))  # 5 channels for a 3-channel conv
    assert runner.onednn
    good = np.random.RandomState(4).rand(1, 3, 32, 32).astype("float32")
    assert runner(good)[0].shape == (1, 1, 32, 32)
    assert runner.onednn
