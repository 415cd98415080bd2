"""Recomputed segments (ppdistill.modeling.recompute) give the plain path's numbers."""
import numpy as np
import paddle
import pytest
from paddle import nn

from ppdistill.modeling import recompute
from ppdistill.modeling.architectures.base_model import BaseModel
from ppdistill.modeling.architectures.distillation_model import DistillationModel
from ppdistill.modeling.recompute import det_segments, enable_recompute, recompute_call

V3_STUDENT = {"model_type": "det", "algorithm": "DB",
              "Backbone": {"name": "MobileNetV3", "scale": 0.35, "model_name": "large",
                           "disable_se": True},
              "Neck": {"name": "RSEFPN", "out_channels": 32, "shortcut": True},
              "Head": {"name": "DBHead", "k": 50}}
V4_STUDENT = {"model_type": "det", "algorithm": "DB",
              "Backbone": {"name": "PPLCNetV3", "scale": 0.5, "det": True},
              "Neck": {"name": "RSEFPN", "out_channels": 32, "shortcut": True},
              "Head": {"name": "DBHead", "k": 50}}


@pytest.fixture
def count_recomputes(monkeypatch):
    """How many recomputed nodes were built (calls of the PyLayer)."""
    calls = []
    original = recompute._RecomputeFunction.apply

    def counting(*args):
        calls.append(args[1])
        return original(*args)
    monkeypatch.setattr(recompute._RecomputeFunction, "apply", counting)
    return calls


def _weighted_sum(maps):
    weights = paddle.arange(maps.size, dtype="float32").reshape(maps.shape) / maps.size
    return (maps * weights).sum()


def _train_twice(model, x):
    """Two forward+backward passes (gradients accumulate); the last maps."""
    model.train()
    for _ in range(2):
        maps = model(x)["maps"]
        _weighted_sum(maps).backward()
    return maps


@pytest.mark.parametrize("config", [V3_STUDENT, V4_STUDENT], ids=["mobilenetv3", "pplcnetv3"])
def test_det_student_outputs_grads_and_bn_statistics_equal_plain(config, count_recomputes):
    paddle.seed(3)
    plain = BaseModel(config)
    recomputed = BaseModel(config)
    recomputed.set_state_dict(plain.state_dict())
    keys = list(recomputed.state_dict())
    expected_segments = len(det_segments(recomputed))
    assert enable_recompute(det_segments(recomputed)) == expected_segments >= 6
    assert list(recomputed.state_dict()) == keys
    x = paddle.randn([2, 3, 64, 64])

    maps_plain = _train_twice(plain, x)
    assert count_recomputes == []
    maps_recomputed = _train_twice(recomputed, x)
    assert len(count_recomputes) == 2 * expected_segments

    np.testing.assert_allclose(maps_recomputed.numpy(), maps_plain.numpy(), rtol=1e-6, atol=1e-6)
    plain_state, state = plain.state_dict(), recomputed.state_dict()
    for key in plain_state:  # running mean / variance updated once per forward, as in plain
        np.testing.assert_allclose(state[key].numpy(), plain_state[key].numpy(), rtol=1e-6,
                                   atol=1e-7, err_msg=key)
    plain_grads = {n: p.grad for n, p in plain.named_parameters() if p.grad is not None}
    grads = {n: p.grad for n, p in recomputed.named_parameters() if p.grad is not None}
    assert sorted(grads) == sorted(plain_grads) and grads
    for name, grad in plain_grads.items():
        scale = float(grad.abs().max()) + 1e-12
        assert float((grads[name] - grad).abs().max()) / scale < 1e-5, name


def test_batch_norm_running_statistics_known_values():
    """conv(1x1, weight 2) -> BN(momentum 0.9): one training step moves the running mean to
    0.9 * 0 + 0.1 * mean(2x) = 0.7 and the running variance to 0.9 * 1 + 0.1 * var(2x) = 3.0,
    once, although the backward re-runs the forward."""
    segment = nn.Sequential(
        nn.Conv2D(1, 1, 1, bias_attr=False,
                  weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(2.0))),
        nn.BatchNorm2D(1, momentum=0.9))
    enable_recompute([segment])
    values = np.arange(8, dtype="float32").reshape([2, 1, 2, 2])
    x = paddle.to_tensor(values, stop_gradient=False)
    segment.train()
    out = segment(x)
    (out * out).sum().backward()
    doubled = 2 * values
    bn = segment[1]
    np.testing.assert_allclose(bn._mean.numpy()[0], 0.1 * doubled.mean(), rtol=1e-6)
    # paddle's running variance uses the biased batch variance; a second update would give
    # mean 0.9 * 0.7 + 1.4 = 2.03 and variance 0.9 * 3.0 + 2.1 = 4.8
    np.testing.assert_allclose(bn._variance.numpy()[0], 0.9 + 0.1 * doubled.var(), rtol=1e-6)
    # BN output in training mode: batch statistics; sum of squares of a normalised batch = N
    np.testing.assert_allclose(float((out * out).sum()), 8 * doubled.var() /
                               (doubled.var() + 1e-5), rtol=1e-5)
    assert x.grad is not None and segment[0].weight.grad is not None


class _Pyramid(nn.Layer):
    """Takes a list of maps and keyword tensors, returns a dict (like a neck / head)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2D(2)

    def forward(self, feats, scale=None, tag="x"):
        fine, coarse = feats
        merged = self.bn(self.conv(fine + nn.functional.interpolate(coarse, scale_factor=2)))
        return {"maps": merged * scale, "coarse": coarse * 3.0, "tag": tag}


def test_nested_inputs_outputs_and_input_gradients(count_recomputes):
    paddle.seed(5)
    plain, segment = _Pyramid(), _Pyramid()
    segment.set_state_dict(plain.state_dict())
    enable_recompute([segment])
    fine_values, coarse_values = paddle.randn([2, 2, 8, 8]), paddle.randn([2, 2, 4, 4])
    grads = []
    for layer in (plain, segment):
        fine, coarse = fine_values.clone(), coarse_values.clone()
        scale = paddle.to_tensor(1.5)  # needs no gradient
        fine.stop_gradient = coarse.stop_gradient = False
        out = layer([fine, coarse], scale=scale, tag="t")
        assert out["tag"] == "t" and sorted(out) == ["coarse", "maps", "tag"]
        (_weighted_sum(out["maps"]) + out["coarse"].sum()).backward()
        grads.append([fine.grad.numpy(), coarse.grad.numpy(), layer.conv.weight.grad.numpy(),
                      out["maps"].numpy()])
    assert len(count_recomputes) == 1
    for got, expected in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_plain_forward_where_it_does_not_apply(count_recomputes):
    segment = nn.Sequential(nn.Conv2D(2, 2, 1), nn.BatchNorm2D(2))
    enable_recompute([segment])
    x = paddle.randn([1, 2, 4, 4])
    x.stop_gradient = False
    segment.eval()
    segment(x)                        # eval mode
    segment.train()
    with paddle.no_grad():
        segment(x)                    # no gradient graph
    segment(paddle.randn([1, 2, 4, 4]))  # no input needs a gradient
    with_dropout = nn.Sequential(nn.Conv2D(2, 2, 1), nn.Dropout(0.5))
    enable_recompute([with_dropout])
    with_dropout.train()
    with_dropout(x)                   # random: never recomputed
    assert count_recomputes == []
    segment(x)
    assert len(count_recomputes) == 1


def test_recompute_call_passes_non_tensor_results_through():
    layer = nn.Linear(3, 3)
    layer.train()
    x = paddle.randn([2, 3])
    x.stop_gradient = False
    out, name = recompute_call(layer, lambda t: (layer(t), "name"), x)
    assert name == "name"
    out.sum().backward()
    np.testing.assert_allclose(layer.weight.grad.numpy(),
                               np.repeat(x.numpy().sum(0)[:, None], 3, axis=1), rtol=1e-6)


@pytest.mark.parametrize("variable", ["PPDISTILL_RECOMPUTE", "PPDISTILL_CPU_KERNELS"])
def test_environment_switches_it_off(monkeypatch, variable):
    monkeypatch.setenv(variable, "0")
    assert enable_recompute([nn.Sequential(nn.Conv2D(2, 2, 1))]) == 0


def test_distillation_model_recomputes_trained_det_models_only():
    config = {"name": "DistillationModel", "model_type": "det", "algorithm": "Distillation",
              "Models": {"Student": dict(V3_STUDENT),
                         "Teacher": dict(V3_STUDENT, freeze_params=True)}}
    model = DistillationModel(config)
    flagged = {name for name, layer in model.named_sublayers()
               if getattr(layer, "_ppdistill_recompute", False)}
    assert flagged == {"Student.backbone.stage0", "Student.backbone.stage1",
                       "Student.backbone.stage2", "Student.backbone.stage3", "Student.neck",
                       "Student.head"}


class _DetachingHead(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(2, 2, 1)

    def forward(self, x):
        return self.conv(x.detach())


def test_a_segment_that_detaches_its_input_falls_back_to_the_plain_forward(count_recomputes,
                                                                          caplog):
    before, head = nn.Conv2D(2, 2, 1), _DetachingHead()
    enable_recompute([head])
    head.train()
    x = paddle.randn([1, 2, 3, 3])
    head(before(x)).sum().backward()  # recomputed once: the detached input is noticed
    assert len(count_recomputes) == 1
    assert head._ppdistill_recompute_unsafe
    assert "does not pass a gradient to one of its inputs" in caplog.text
    fresh = nn.Conv2D(2, 2, 1)
    head(fresh(x)).sum().backward()  # plain from now on: nothing reaches the layer before
    assert len(count_recomputes) == 1
    assert fresh.weight.grad is None and head.conv.weight.grad is not None


def test_only_known_det_components_are_segments():
    toy = BaseModel({"model_type": "det", "algorithm": "DB", "Backbone": {"name": "ToyBackbone"},
                     "Head": {"name": "ToyHead"}})
    assert det_segments(toy) == []
    student = BaseModel(V3_STUDENT)
    assert det_segments(student) == [student.backbone.stage0, student.backbone.stage1,
                                     student.backbone.stage2, student.backbone.stage3,
                                     student.neck, student.head]
