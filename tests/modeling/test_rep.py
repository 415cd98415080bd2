"""Model-level re-parameterisation (ppdistill.modeling.rep) and the fused export."""
import logging

import numpy as np
import paddle
from conftest import toy_model_config
from lcnetv3_helpers import randomize

from ppdistill.modeling.architectures import build_model
from ppdistill.modeling.rep import rep_layers, reparameterize, reparameterized_copy
from ppdistill.utils.export import export_model
from ppdistill.infer.predictor import InferenceModel

DET_STUDENT = {"model_type": "det", "algorithm": "DB",
               "Backbone": {"name": "PPLCNetV3", "scale": 0.75, "det": True},
               "Neck": {"name": "RSEFPN", "out_channels": 96, "shortcut": True},
               "Head": {"name": "DBHead", "k": 50}}


def distillation():
    return build_model({"name": "DistillationModel", "model_type": "det", "algorithm": "DB",
                        "Models": {"Teacher": dict(toy_model_config(4), freeze_params=True),
                                   "Student": dict(DET_STUDENT),
                                   "Student2": dict(DET_STUDENT)}})


def test_reparameterize_every_sub_model_once():
    model = distillation()
    assert len(rep_layers(model.Student)) == 28  # leaves only, not the PPLCNetV3 container
    assert rep_layers(model.Teacher) == []
    assert reparameterize(model) == 56
    assert reparameterize(model) == 0
    assert all(layer.is_repped for layer in model.Student2.backbone.sublayers()
               if hasattr(layer, "is_repped"))


def test_reparameterized_copy_keeps_the_original():
    model = distillation()
    model.eval()
    randomize(model.Student, seed=2)
    x = paddle.to_tensor(np.random.RandomState(0).rand(1, 3, 64, 64).astype("float32"))
    feats_before = model.Student.backbone(x)
    fused = reparameterized_copy(model.Student)
    assert fused is not model.Student
    assert len(rep_layers(model.Student)) == 28 and rep_layers(fused) == []
    for a, b in zip(fused.backbone(x), feats_before):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=0)
    teacher = model.Teacher
    assert reparameterized_copy(teacher) is teacher  # nothing to fuse: no copy


def test_rec_backbone_export_matches_eval(tmp_path, caplog):
    """A rec PPLCNetV3 (tuple strides, eval pooling) exported fused equals its eval output."""
    arch = {"model_type": "rec", "Backbone": {"name": "PPLCNetV3", "scale": 0.95}}
    model = randomize(build_model(arch), seed=3)
    model.eval()
    x = np.random.RandomState(1).rand(2, 3, 48, 80).astype("float32")
    reference = model(paddle.to_tensor(x)).numpy()
    logger = logging.getLogger("test_rep_export")
    with caplog.at_level(logging.INFO, logger="test_rep_export"):
        written = export_model({"Architecture": arch, "Global": {}}, model, str(tmp_path),
                               logger=logger)
    assert "28 re-parameterised layers fused" in caplog.text
    output = InferenceModel(written[""], use_gpu=False)(x)[0]
    assert output.shape == (2, 480, 1, 10)
    np.testing.assert_allclose(output, reference, atol=1e-5, rtol=0)


def test_fold_affine_keeps_the_eval_function():
    """rep() then fold_affine(): lab inside the conv, act.lab as constants of one scale op."""
    import pytest
    from ppdistill.modeling.backbones.rec_lcnetv3 import LearnableRepLayer
    from ppdistill.modeling.rep import deployment_copy, fold_affine_blocks
    x = paddle.to_tensor(np.random.RandomState(2).uniform(-1, 1, (2, 6, 9, 11)).astype("float32"))
    for stride in (1, 2, (2, 1)):
        paddle.seed(1)
        layer = randomize(LearnableRepLayer(6, 6, 3, stride=stride, groups=6,
                                            num_conv_branches=3), seed=4)
        layer.eval()
        reference = layer(x).numpy()
        with pytest.raises(RuntimeError, match="call rep"):
            layer.fold_affine()
        deployed = deployment_copy(layer)
        assert deployed is not layer and not layer.is_repped and not layer.affine_folded
        assert deployed.affine_folded and fold_affine_blocks(deployed) == 0  # idempotent
        np.testing.assert_allclose(deployed(x).numpy(), reference, atol=1e-5, rtol=0)
        assert deployed.act_affine == (float(layer.act.lab.scale.numpy()[0]),
                                       float(layer.act.lab.bias.numpy()[0]))
