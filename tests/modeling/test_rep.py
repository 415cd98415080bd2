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
    # one scale op per pointwise layer (14) and per depthwise layer before an SE (2); the other
    # 12 depthwise layers' affines went into the following 1x1 convs
    from ppdistill.importer.core import read_export
    from ppdistill.importer.graph import weighted_ops
    kinds = [op.kind for op in weighted_ops(read_export(written[""])[2])]
    assert kinds.count("affine") == 16 and kinds.count("conv") == 1 + 28 + 2 * 2  # stem, SEs


def test_paddleocr_form_export_keeps_every_affine_block(tmp_path, monkeypatch):
    """PPDISTILL_DEPLOY_FORM=0 (the benchmark's baseline): branches fused as PaddleOCR's export
    does, every affine block its own op (lab and act.lab of all 28 layers), same outputs."""
    from ppdistill.importer.core import read_export
    from ppdistill.importer.graph import weighted_ops
    monkeypatch.setenv("PPDISTILL_DEPLOY_FORM", "0")
    arch = {"model_type": "rec", "Backbone": {"name": "PPLCNetV3", "scale": 0.95}}
    model = randomize(build_model(arch), seed=4)
    model.eval()
    x = np.random.RandomState(2).rand(1, 3, 48, 64).astype("float32")
    reference = model(paddle.to_tensor(x)).numpy()
    written = export_model({"Architecture": arch, "Global": {}}, model, str(tmp_path))
    kinds = [op.kind for op in weighted_ops(read_export(written[""])[2])]
    assert kinds.count("affine") == 2 * 28 and kinds.count("conv") == 1 + 28 + 2 * 2
    output = InferenceModel(written[""], use_gpu=False)(x)[0]
    np.testing.assert_allclose(output, reference, atol=1e-5, rtol=0)


def test_depthwise_affine_moves_into_the_pointwise_conv():
    """A PPLCNetV3 block without SE exports dw -> hardswish -> pw: the depthwise layer's act.lab
    goes into the 1x1 conv (exact); with SE in between nothing moves."""
    import pytest
    from ppdistill.modeling.backbones.rec_lcnetv3 import (IDENTITY_AFFINE, LCNetV3Block,
                                                          LearnableRepLayer)
    from ppdistill.modeling.rep import deployment_copy
    x = paddle.to_tensor(np.random.RandomState(5).uniform(-1, 1, (2, 8, 7, 9)).astype("float32"))
    for use_se, stride in ((False, 1), (False, (2, 1)), (True, 1)):
        paddle.seed(3)
        block = randomize(LCNetV3Block(8, 16, stride, 5, use_se=use_se, conv_kxk_num=2), seed=6)
        block.eval()
        reference = block(x).numpy()
        deployed = deployment_copy(block)
        np.testing.assert_allclose(deployed(x).numpy(), reference, atol=1e-5, rtol=0)
        moved = deployed.dw_conv.act_affine == IDENTITY_AFFINE
        assert moved is not use_se
        assert deployed.pw_conv.act_affine != IDENTITY_AFFINE
        assert deployed.fold_affine_across_layers() is False  # nothing left to move
    paddle.seed(3)
    unfolded = LearnableRepLayer(8, 8, 1)
    with pytest.raises(RuntimeError, match="fold_affine"):
        unfolded.fold_output_affine_into(unfolded)
    layers = [deployment_copy(randomize(LearnableRepLayer(8, 8, k, groups=g), seed=k))
              for k, g in ((3, 8), (3, 1))]
    with pytest.raises(ValueError, match="1x1"):
        layers[0].fold_output_affine_into(layers[1])


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
