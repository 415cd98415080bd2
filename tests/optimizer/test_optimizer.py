"""build_optimizer: optimizers, LR schedules (warmup + schedule values), regularizers, clipping."""
import copy
import math

import numpy as np
import paddle
import pytest
from conftest import toy_model_config
from paddle import nn

from ppdistill.modeling.architectures import build_model
from ppdistill.optimizer import build_lr_scheduler, build_optimizer
from ppdistill.registry import LR_SCHEDULERS, OPTIMIZERS, ConfigError


def lr_at(schedule, step):
    """The rate the optimizer uses at iteration ``step`` (after ``step`` scheduler steps)."""
    if isinstance(schedule, float):
        return schedule
    for _ in range(step - schedule.last_epoch):
        schedule.step()
    return schedule()


def linear_model():
    return nn.Linear(3, 2)


def test_registered_names():
    assert {"Adam", "AdamW", "SGD", "Momentum"} <= set(OPTIMIZERS.names())
    assert {"Const", "Linear", "Cosine", "Piecewise"} <= set(LR_SCHEDULERS.names())


@pytest.mark.parametrize("name, extra, cls", [
    ("Adam", {"beta1": 0.9, "beta2": 0.999}, paddle.optimizer.Adam),
    ("AdamW", {"weight_decay": 0.05, "no_weight_decay_name": "bias"}, paddle.optimizer.AdamW),
    ("SGD", {}, paddle.optimizer.SGD),
    ("Momentum", {"momentum": 0.9}, paddle.optimizer.Momentum),
])
def test_each_optimizer_builds_and_steps(name, extra, cls):
    model = linear_model()
    config = {"name": name, "lr": {"name": "Const", "learning_rate": 0.1}, **extra}
    before = copy.deepcopy(config)
    optimizer, schedule = build_optimizer(config, epochs=2, step_each_epoch=3, model=model)
    assert config == before  # the caller's config is not modified
    assert isinstance(optimizer, cls) and schedule == 0.1
    weight = model.weight.numpy().copy()
    model(paddle.ones([4, 3])).sum().backward()
    optimizer.step()
    assert not np.allclose(model.weight.numpy(), weight)


def test_cosine_with_warmup_values():
    # 4 epochs x 5 steps, warmup 1 epoch = 5 steps from 0.0; then cos over T = 20 from step 0
    schedule = build_lr_scheduler({"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 1},
                                  epochs=4, step_each_epoch=5)
    assert isinstance(schedule, paddle.optimizer.lr.LinearWarmup)
    expected = {0: 0.0, 2: 0.04, 5: 0.1, 15: 0.1 * (1 + math.cos(math.pi * 10 / 20)) / 2,
                20: 0.1 * (1 + math.cos(math.pi * 15 / 20)) / 2}
    for step, value in expected.items():
        assert lr_at(schedule, step) == pytest.approx(value, abs=1e-9), step


def test_cosine_without_warmup_and_fractional_warmup():
    schedule = build_lr_scheduler({"name": "Cosine", "learning_rate": 0.2}, 2, 4)
    assert isinstance(schedule, paddle.optimizer.lr.CosineAnnealingDecay)
    assert lr_at(schedule, 0) == pytest.approx(0.2)
    assert lr_at(schedule, 4) == pytest.approx(0.1)  # half of T = 8
    assert lr_at(schedule, 8) == pytest.approx(0.0, abs=1e-12)
    # warmup_epoch 0.5 of 3 steps rounds to 2 steps
    schedule = build_lr_scheduler({"name": "Cosine", "learning_rate": 0.2, "warmup_epoch": 0.5},
                                  2, 3)
    assert schedule.warmup_steps == 2
    assert lr_at(schedule, 1) == pytest.approx(0.1)


def test_piecewise_boundaries_and_warmup():
    config = {"name": "Piecewise", "decay_epochs": [2, 4], "values": [0.1, 0.01, 0.001]}
    schedule = build_lr_scheduler(config, epochs=6, step_each_epoch=3)
    for step, value in {0: 0.1, 5: 0.1, 6: 0.01, 11: 0.01, 12: 0.001, 17: 0.001}.items():
        assert lr_at(schedule, step) == pytest.approx(value), step
    schedule = build_lr_scheduler(dict(config, warmup_epoch=1), epochs=6, step_each_epoch=3)
    # the warmup rises to values[0]; the inner schedule then counts from 0 after 3 steps
    for step, value in {0: 0.0, 1: 0.1 / 3, 3: 0.1, 8: 0.1, 9: 0.01}.items():
        assert lr_at(schedule, step) == pytest.approx(value), step


def test_piecewise_as_many_values_as_boundaries():
    """PaddleOCR's PP-OCRv2 rec configs: decay_epochs [700, 800], values [0.001, 0.0001]."""
    config = {"name": "Piecewise", "decay_epochs": [2, 4], "values": [0.1, 0.01]}
    schedule = build_lr_scheduler(config, epochs=6, step_each_epoch=3)
    for step, value in {0: 0.1, 6: 0.01, 12: 0.01, 17: 0.01}.items():
        assert lr_at(schedule, step) == pytest.approx(value), step


def test_linear_const_and_step():
    schedule = build_lr_scheduler({"name": "Linear", "learning_rate": 0.1, "end_lr": 0.0,
                                   "power": 1.0}, epochs=2, step_each_epoch=5)
    assert lr_at(schedule, 4) == pytest.approx(0.06)
    assert lr_at(schedule, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(schedule, 12) == pytest.approx(0.0, abs=1e-12)
    assert build_lr_scheduler({"name": "Const", "learning_rate": 0.01}, 3, 4) == 0.01
    assert build_lr_scheduler({"learning_rate": 0.01}, 3, 4) == 0.01  # name defaults to Const
    schedule = build_lr_scheduler({"name": "Const", "learning_rate": 0.01, "warmup_epoch": 0.5},
                                  3, 4)
    for step, value in {0: 0.0, 1: 0.005, 2: 0.01, 10: 0.01}.items():
        assert lr_at(schedule, step) == pytest.approx(value), step
    schedule = build_lr_scheduler({"name": "Step", "learning_rate": 0.1, "step_size": 1,
                                   "gamma": 0.5}, 3, 4)
    assert lr_at(schedule, 3) == pytest.approx(0.1) and lr_at(schedule, 4) == pytest.approx(0.05)


def test_the_optimizer_follows_the_schedule():
    model = linear_model()
    optimizer, schedule = build_optimizer(
        {"name": "Adam", "lr": {"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 1}},
        epochs=2, step_each_epoch=2, model=model)
    assert optimizer.get_lr() == 0.0
    schedule.step()
    assert optimizer.get_lr() == pytest.approx(0.05)


@pytest.mark.parametrize("config, message", [
    ({"name": "Adam", "lr": {"name": "Cosin", "learning_rate": 0.1}},
     "Optimizer.lr.name: unknown learning-rate schedule 'Cosin'; did you mean 'Cosine'?"),
    ({"name": "Adma", "lr": {"name": "Cosine", "learning_rate": 0.1}},
     "Optimizer.name: unknown optimizer 'Adma'; did you mean 'Adam'?"),
    ({"name": "Adam", "lr": {"name": "Cosine", "learning_rate": 0.1, "warmup_epochs": 2}},
     "Optimizer.lr: unexpected key 'warmup_epochs' for Cosine; did you mean 'warmup_epoch'?"),
    ({"name": "Adam", "beta_1": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.1}},
     "Optimizer: unexpected key 'beta_1' for Adam; did you mean 'beta1'?"),
    ({"name": "Adam", "lr": {"name": "Cosine", "learning_rate": 0.1},
      "regularizer": {"name": "L2Decy", "factor": 1e-4}},
     "Optimizer.regularizer.name: unknown regularizer 'L2Decy'; did you mean 'L2Decay'?"),
    ({"name": "Adam", "lr": {"name": "Cosine", "learning_rate": 0.1},
      "regularizer": {"name": "L2", "factr": 1e-4}},
     "Optimizer.regularizer: unexpected key 'factr' for L2Decay; did you mean 'factor'?"),
    ({"name": "Adam", "learning_rate": 0.1, "lr": {"name": "Cosine", "learning_rate": 0.1}},
     "Optimizer: unexpected key 'learning_rate': set the rate in the 'lr' section"),
    ({"name": "Adam"}, "Optimizer: missing 'lr' section"),
    ({"name": "Adam", "clip_norm": 1, "clip_norm_global": 1, "lr": {"learning_rate": 0.1}},
     "Optimizer: set only one of clip_norm and clip_norm_global"),
    ({"name": "Adam", "clip_norm": -1, "lr": {"learning_rate": 0.1}},
     "Optimizer.clip_norm: expected a number > 0, got -1"),
    ({"name": "Momentum", "lr": {"learning_rate": 0.1}},
     "Optimizer: cannot build Momentum: .*momentum"),
    ({"name": "Adam", "lr": {"name": "Piecewise", "decay_epochs": [1, 2], "values": [0.1]}},
     "Optimizer.lr: cannot build Piecewise: values needs one entry more than decay_epochs"),
    ({"name": "Adam", "lr": {"name": "Cosine", "learning_rate": -0.1}},
     "Optimizer.lr: cannot build Cosine: learning_rate must be a number > 0"),
    ({"name": "Adam", "lr": {"name": "Cosine", "learning_rate": 0.1, "epochs": 7}},
     r"Optimizer.lr.epochs: the schedule always spans Global.epoch_num \(2\) epochs"),
    ({"name": "AdamW", "lr": {"learning_rate": 0.1}, "regularizer": {"name": "L2", "factor": 1}},
     "Optimizer: cannot build AdamW: AdamW decays weights itself"),
    ({"name": "SGD", "weight_decay": 0.1, "lr": {"learning_rate": 0.1},
      "regularizer": {"name": "L2", "factor": 1}},
     "Optimizer: set either 'regularizer' or 'weight_decay', not both"),
])
def test_config_errors_name_the_path(config, message):
    with pytest.raises(ConfigError, match="^" + message.replace("?", r"\?").replace("'", "'")):
        build_optimizer(config, epochs=2, step_each_epoch=3, model=linear_model())


def test_lr_epochs_equal_to_global_is_accepted():
    schedule = build_lr_scheduler({"name": "Linear", "learning_rate": 0.1, "epochs": 2}, 2, 5)
    assert lr_at(schedule, 5) == pytest.approx(0.05)


def distill_model():
    return build_model({"name": "DistillationModel", "model_type": "det", "Models": {
        "Teacher": dict(toy_model_config(6), freeze_params=True),
        "Student": toy_model_config(4)}})


def test_frozen_parameters_are_not_optimized():
    model = distill_model()
    optimizer, _ = build_optimizer({"name": "Adam", "lr": {"learning_rate": 0.1},
                                    "regularizer": {"name": "L2", "factor": 0.1}},
                                   epochs=1, step_each_epoch=1, model=model)
    # BatchNorm running statistics are parameters with stop_gradient too: not optimized
    student = {id(p) for p in model.Student.parameters() if not p.stop_gradient}
    assert len(student) == 6
    assert {id(p) for p in optimizer._parameter_list} == student
    teacher = {k: v.numpy().copy() for k, v in model.Teacher.state_dict().items()}
    out = model(paddle.rand([2, 3, 8, 8]))
    (out["Student"]["maps"].mean() + out["Teacher"]["maps"].mean()).backward()
    optimizer.step()
    for key, value in model.Teacher.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), teacher[key], err_msg=key)
    for param in model.Teacher.parameters():
        param.stop_gradient = True
    for param in model.Student.parameters():
        param.stop_gradient = True
    with pytest.raises(ConfigError, match="no trainable parameter"):
        build_optimizer({"name": "SGD", "lr": {"learning_rate": 0.1}}, 1, 1, model)


@pytest.mark.parametrize("name, decay", [
    ("L2", lambda w, f: w * f), ("L2Decay", lambda w, f: w * f),
    ("L1", lambda w, f: np.sign(w) * f),
])
def test_regularizer_is_applied(name, decay):
    model = linear_model()
    optimizer, _ = build_optimizer({"name": "SGD", "lr": {"learning_rate": 0.1},
                                    "regularizer": {"name": name, "factor": 0.5}},
                                   epochs=1, step_each_epoch=1, model=model)
    weight = model.weight.numpy().copy()
    (model(paddle.ones([1, 3])) * 0.0).sum().backward()  # zero loss gradient: decay only
    optimizer.step()
    np.testing.assert_allclose(model.weight.numpy(), weight - 0.1 * decay(weight, 0.5),
                               rtol=1e-6)


def test_no_regularizer_means_no_decay():
    model = linear_model()
    optimizer, _ = build_optimizer({"name": "SGD", "lr": {"learning_rate": 0.1}}, 1, 1, model)
    weight = model.weight.numpy().copy()
    (model(paddle.ones([1, 3])) * 0.0).sum().backward()
    optimizer.step()
    np.testing.assert_array_equal(model.weight.numpy(), weight)


class Tiny(nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.norm = nn.LayerNorm(2)

    def forward(self, x):
        return self.norm(self.fc(x))


def test_adamw_decay_and_exclusions():
    def run(**extra):
        model = Tiny()
        config = {"name": "AdamW", "weight_decay": 0.5, "lr": {"learning_rate": 0.1}, **extra}
        optimizer, _ = build_optimizer(config, 1, 1, model)
        for param in model.parameters():
            param.set_value(np.full(param.shape, 0.5, dtype="float32"))
        before = {k: v.numpy().copy() for k, v in model.named_parameters()}
        (model(paddle.ones([1, 2])) * 0.0).sum().backward()  # Adam part is 0; decay only
        optimizer.step()
        return {k: np.allclose(v.numpy(), before[k] * (1 - 0.1 * 0.5), rtol=1e-6)
                for k, v in model.named_parameters()}
    assert all(run().values())
    decayed = run(no_weight_decay_name="norm")
    assert decayed == {"fc.weight": True, "fc.bias": True, "norm.weight": False,
                       "norm.bias": False}
    decayed = run(one_dim_param_no_weight_decay=True)
    assert decayed == {"fc.weight": True, "fc.bias": False, "norm.weight": False,
                       "norm.bias": False}


class TwoParams(nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = self.create_parameter([2], default_initializer=nn.initializer.Constant(0.0))
        self.b = self.create_parameter([2], default_initializer=nn.initializer.Constant(0.0))


@pytest.mark.parametrize("key, expected_a, expected_b", [
    # gradients a = [3, 0] (norm 3), b = [0, 4] (norm 4), threshold 3.5
    ("clip_norm", [3.0, 0.0], [0.0, 3.5]),           # each tensor clipped on its own
    ("clip_norm_global", [2.1, 0.0], [0.0, 2.8]),    # both scaled by 3.5 / 5
    (None, [3.0, 0.0], [0.0, 4.0]),
])
def test_gradient_clipping(key, expected_a, expected_b):
    model = TwoParams()
    config = {"name": "SGD", "lr": {"learning_rate": 1.0}}
    if key:
        config[key] = 3.5
    optimizer, _ = build_optimizer(config, 1, 1, model)
    loss = -(model.a * paddle.to_tensor([3.0, 0.0])).sum() \
        - (model.b * paddle.to_tensor([0.0, 4.0])).sum()
    loss.backward()
    optimizer.step()
    np.testing.assert_allclose(model.a.numpy(), expected_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.b.numpy(), expected_b, rtol=1e-5, atol=1e-6)
