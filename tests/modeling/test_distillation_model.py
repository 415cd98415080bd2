import copy

import numpy as np
import paddle
import pytest
from conftest import toy_model_config

from ppdistill.modeling.architectures import BaseModel, DistillationModel, build_model
from ppdistill.registry import ConfigError


def distill_config(freeze_teacher=True):
    teacher = dict(toy_model_config(6), freeze_params=freeze_teacher, return_all_feats=False)
    return {"name": "DistillationModel", "model_type": "det", "algorithm": "Distillation",
            "Models": {"Teacher": teacher, "Student": toy_model_config(4),
                       "Student2": toy_model_config(4)}}


def test_names_order_and_output():
    cfg = distill_config()
    original = copy.deepcopy(cfg)
    model = build_model(cfg)
    assert cfg == original
    assert model.model_name_list == ["Teacher", "Student", "Student2"]
    keys = list(model.state_dict().keys())
    assert keys[0] == "Teacher.backbone.conv.weight"
    assert "Student.backbone.bn._mean" in keys and "Student2.head.conv.bias" in keys
    out = model(paddle.randn([2, 3, 8, 8]))
    assert list(out) == ["Teacher", "Student", "Student2"]
    assert out["Student"]["maps"].shape == [2, 3, 4, 4]


def test_frozen_sub_models_run_first_outputs_stay_in_config_order():
    cfg = distill_config()
    cfg["Models"] = {"Student": cfg["Models"]["Student"], "Teacher": cfg["Models"]["Teacher"],
                     "Student2": cfg["Models"]["Student2"]}
    model = build_model(cfg)
    model.train()
    ran = []
    for name in model.model_name_list:
        getattr(model, name).register_forward_pre_hook(
            lambda layer, inputs, name=name: ran.append(name))
    out = model(paddle.randn([2, 3, 8, 8]))
    assert ran == ["Teacher", "Student", "Student2"]
    assert list(out) == ["Student", "Teacher", "Student2"]


def test_frozen_teacher_weights_and_bn_stats_unchanged():
    model = build_model(distill_config())
    model.train()
    teacher_before = {k: v.numpy().copy() for k, v in model.Teacher.state_dict().items()}
    student_before = {k: v.numpy().copy() for k, v in model.Student.state_dict().items()}
    params = [p for p in model.parameters() if not p.stop_gradient]
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=params)
    for _ in range(2):
        out = model(paddle.randn([2, 3, 8, 8]))
        assert out["Teacher"]["maps"].stop_gradient  # no graph built for the frozen model
        loss = out["Student"]["maps"].mean() + out["Student2"]["maps"].mean()
        loss = loss + (out["Teacher"]["maps"] * out["Student"]["maps"]).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
    for k, v in model.Teacher.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), teacher_before[k], err_msg=k)
    changed = [k for k, v in model.Student.state_dict().items()
               if not np.array_equal(v.numpy(), student_before[k])]
    assert "backbone.conv.weight" in changed and "backbone.bn._mean" in changed
    assert not model.Teacher.backbone.bn.training and model.Student.backbone.bn.training


def test_frozen_bn_stays_eval_after_train_call():
    model = build_model(distill_config())
    model.eval()
    model.train()
    assert not model.Teacher.backbone.bn.training
    assert model.Teacher.training  # the head still follows the wrapper's mode


def test_unfrozen_teacher_is_trained():
    model = build_model(distill_config(freeze_teacher=False))
    assert all(not p.stop_gradient for p in model.Teacher.parameters() if p.trainable)
    assert len([p for p in model.Teacher.parameters() if p.trainable]) == 6


def test_return_all_feats():
    cfg = dict(toy_model_config(), return_all_feats=True)
    model = BaseModel(cfg)
    model.train()
    out = model(paddle.randn([1, 3, 8, 8]))
    assert set(out) == {"backbone_out", "maps"}
    model.eval()
    assert set(model(paddle.randn([1, 3, 8, 8]))) == {"maps"}


def test_config_errors():
    cfg = distill_config()
    cfg["Models"]["Student"]["Backbone"]["name"] = "ToyBackbon"
    with pytest.raises(ConfigError, match=r"Architecture.Models.Student.Backbone.name: unknown "
                                          r"backbone 'ToyBackbon'; did you mean 'ToyBackbone'"):
        build_model(cfg)
    cfg = distill_config()
    cfg["Models"]["Student"]["Neckk"] = None
    with pytest.raises(ConfigError, match="did you mean 'Neck'"):
        build_model(cfg)
    with pytest.raises(ConfigError, match="unknown architecture 'Distillation'"):
        build_model({"name": "Distillation", "Models": {}})


def test_frozen_teacher_unchanged_when_a_wrapper_sets_training_directly():
    # paddle.DataParallel.train() sets ``training`` on every sub-layer without calling the
    # DistillationModel's train(): the frozen teacher's BN must still not move
    model = build_model(distill_config())
    for layer in model.sublayers():
        layer.training = True
    before = {k: v.numpy().copy() for k, v in model.Teacher.state_dict().items()}
    x = paddle.randn([2, 3, 8, 8])
    out = model(x)
    for k, v in model.Teacher.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
    assert model.Teacher.pinned_layer_names == ["backbone.bn"]
    # the teacher normalised with its running statistics, as in eval mode
    model.eval()
    np.testing.assert_array_equal(out["Teacher"]["maps"].numpy(),
                                  model(x)["Teacher"]["maps"].numpy())


def test_unpin_layers_lets_a_batch_norm_follow_training_mode_again():
    model = build_model(distill_config())
    teacher = model.Teacher
    assert teacher.pinned_layer_names == ["backbone.bn"]
    teacher.unpin_layers(["backbone.bn", "not.a.layer"])
    assert teacher.pinned_layer_names == []
    model.train()
    bn = dict(teacher.named_sublayers())["backbone.bn"]
    mean_before = bn._mean.numpy().copy()
    teacher(paddle.randn([2, 3, 8, 8]) + 3.0)
    assert not np.allclose(bn._mean.numpy(), mean_before)  # batch statistics updated it again
