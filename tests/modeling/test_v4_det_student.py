"""PP-OCRv4 det student (and PP-OCRv5 mobile det): PaddleOCR's keys, conformance, export."""
import json
import os

import numpy as np
import paddle
import pytest
from lcnetv3_helpers import randomize

from ppdistill.engine.export import export
from ppdistill.modeling.architectures import build_model
from ppdistill.modeling.heads.det_db_head import DBHead
from ppdistill.modeling.rep import rep_layers
from ppdistill.utils.config import load_with_overrides
from ppdistill.infer.predictor import InferenceModel
from ppdistill.utils.logging import get_logger

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
V4 = os.path.join(REPO, "configs", "det", "ch_PP-OCRv4_det_student.yml")
V5 = os.path.join(REPO, "configs", "det", "PP-OCRv5_mobile_det.yml")


def expected_keys():
    with open(os.path.join(FIXTURES, "v4_det_student_keys.json")) as handle:
        return [(e["name"], e["shape"]) for e in json.load(handle)["state_dict"]]


@pytest.mark.parametrize("path", [V4, V5], ids=["v4_student", "v5_mobile"])
def test_config_builds_paddleocr_keys_and_shapes_in_order(path):
    model = build_model(load_with_overrides(path)["Architecture"])
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    want = expected_keys()
    assert len(want) == 905
    assert got == want


def test_conformance_with_paddleocr_outputs():
    """PaddleOCR's eval output for seeded float16-exact weights with random BN statistics."""
    data = np.load(os.path.join(FIXTURES, "v4_det_student.npz"))
    model = build_model(load_with_overrides(V4)["Architecture"])
    weights = {k[2:]: data[k].astype("float32") for k in data.files if k.startswith("w/")}
    assert sorted(weights) == sorted(model.state_dict())
    model.set_state_dict(weights)
    model.eval()
    maps = model(paddle.to_tensor(data["input/x"].astype("float32")))["maps"].numpy()
    assert maps.shape == (1, 1, 160, 192)
    np.testing.assert_allclose(maps, data["output/maps"], atol=1e-4, rtol=0)
    # the repped model reproduces it too (these weights drive the map to 0/1 in most pixels)
    model.backbone.rep()
    maps = model(paddle.to_tensor(data["input/x"].astype("float32")))["maps"].numpy()
    np.testing.assert_allclose(maps, data["output/maps"], atol=1e-4, rtol=0)


def well_scaled_model(config):
    """Random BN statistics/LABs, and a head scaled so that the sigmoid map is not saturated."""
    model = randomize(build_model(config["Architecture"]), seed=7)
    for branch in (model.head.binarize, model.head.thresh):
        branch.conv3.weight.set_value(branch.conv3.weight.numpy() * 0.2)
    return model


def test_tools_export_fuses_and_matches_training_form(tmp_path):
    """tools/export_model.py path: load weights, export the re-parameterised model, run it with
    paddle.inference; the output equals the training-form eval output."""
    overrides = ["Global.use_gpu=false", f"Global.pretrained_model={tmp_path}/weights",
                 f"Global.save_inference_dir={tmp_path}/inference"]
    config = load_with_overrides(V4, overrides)
    model = well_scaled_model(config)
    paddle.save(model.state_dict(), str(tmp_path / "weights.pdparams"))
    model.eval()
    x = np.random.RandomState(0).rand(1, 3, 96, 128).astype("float32")
    reference = model(paddle.to_tensor(x))["maps"].numpy()
    assert reference.std() > 0.02 and 0.05 < reference.mean() < 0.95  # not saturated

    written = export(config, get_logger())
    runner = InferenceModel(written[""], use_gpu=False)
    output = runner(x)[0]
    assert output.shape == (1, 1, 96, 128)
    np.testing.assert_allclose(output, reference, atol=1e-5, rtol=0)
    # the fused program keeps only the BNs of conv1 and the head (5 layers); the training form
    # would add ~150 branch BNs. Counted as ops of the program (paddle 3's .json or paddle 2's
    # .pdmodel, whose variable names also contain "batch_norm")
    from ppdistill.importer.core import read_export
    _, _, graph, _ = read_export(written[""])
    assert 1 <= [node.op for node in graph.nodes].count("BatchNormalization") <= 5


def test_export_leaves_the_callers_model_in_training_form(tmp_path):
    from ppdistill.utils.export import export_model
    config = load_with_overrides(V4)
    model = well_scaled_model(config)
    assert len(rep_layers(model)) == 28
    export_model(config, model, str(tmp_path))
    assert len(rep_layers(model)) == 28  # a fused copy was exported
    assert not any("reparam_conv" in k for k in model.state_dict())


class InjectNaN(paddle.nn.Layer):
    """Stands in for a BatchNorm+relu that produced a NaN (paddle's CPU relu maps NaN to 0, so a
    NaN input alone does not reach the point fix_nan guards)."""

    def forward(self, x):
        mask = paddle.zeros_like(x)
        mask[:, :, 0, 0] = 1.0
        return paddle.where(mask > 0, paddle.full_like(x, float("nan")), x)


def test_fix_nan_zeroes_nans_in_training_only():
    heads = {}
    for fix_nan in (True, False):
        paddle.seed(0)
        heads[fix_nan] = head = DBHead(16, k=50, fix_nan=fix_nan)
        for branch in (head.binarize, head.thresh):
            branch.conv_bn2 = paddle.nn.Sequential(branch.conv_bn2, InjectNaN())
    x = paddle.to_tensor(np.random.RandomState(0).rand(2, 16, 4, 4).astype("float32"))
    for head in heads.values():
        head.train()
    fixed = heads[True](x)["maps"].numpy()
    assert fixed.shape == (2, 3, 16, 16) and np.isfinite(fixed).all()
    assert np.isnan(heads[False](x)["maps"].numpy()).any()
    for head in heads.values():
        head.eval()
    assert np.isnan(heads[True](x)["maps"].numpy()).any()  # eval: fix_nan does nothing
