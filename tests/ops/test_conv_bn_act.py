import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddle import nn

from ppdistill.ops import conv_bn_act, cpu_kernels, fused_path_applies
from ppdistill.ops import loader

needs_kernels = pytest.mark.skipif(cpu_kernels() is None,
                                   reason=f"CPU kernels unavailable: {loader.unavailable_reason()}")


def layer_pair(in_channels, out_channels, kernel, stride, groups, seed):
    """Two identical conv + BN pairs (one for paddle's path, one for the fused path)."""
    pairs = []
    for _ in range(2):
        paddle.seed(seed)
        conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                         groups=groups, bias_attr=False)
        bn = nn.BatchNorm2D(out_channels)
        bn.weight.set_value(paddle.rand([out_channels]) + 0.5)
        bn.bias.set_value(paddle.randn([out_channels]) * 0.3)
        pairs.append((conv, bn))
    return pairs


def reference(x, conv, bn, act):
    y = bn(conv(x))
    return {None: y, "relu": F.relu(y), "hardswish": F.hardswish(y)}[act]


CASES = [  # in, out, kernel, stride, groups, act
    (4, 4, 3, 1, 4, "hardswish"), (3, 3, 5, 2, 3, "relu"), (5, 5, 3, (2, 1), 5, None),
    (6, 6, 5, (1, 2), 6, "hardswish"), (4, 7, 1, 1, 1, "hardswish"), (5, 3, 1, 1, 1, "relu")]


@needs_kernels
@pytest.mark.parametrize("in_channels,out_channels,kernel,stride,groups,act", CASES)
def test_fused_matches_paddle_forward_backward_and_running_stats(
        in_channels, out_channels, kernel, stride, groups, act):
    (conv_a, bn_a), (conv_b, bn_b) = layer_pair(in_channels, out_channels, kernel, stride,
                                                groups, seed=3)
    paddle.seed(4)
    x = paddle.randn([3, in_channels, 9, 11]) * 2 + 0.5
    x.stop_gradient = False
    assert fused_path_applies(x, conv_b, bn_b)
    expected = reference(x, conv_a, bn_a, act)
    got = conv_bn_act(x, conv_b, bn_b, act)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    grad_out = paddle.randn(expected.shape)
    expected_grads = paddle.grad(expected, [x, conv_a.weight, bn_a.weight, bn_a.bias], grad_out)
    got_grads = paddle.grad(got, [x, conv_b.weight, bn_b.weight, bn_b.bias], grad_out)
    for name, want, have in zip(["x", "conv weight", "bn weight", "bn bias"], expected_grads,
                                got_grads):
        np.testing.assert_allclose(have.numpy(), want.numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=name)
    np.testing.assert_allclose(bn_b._mean.numpy(), bn_a._mean.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bn_b._variance.numpy(), bn_a._variance.numpy(), rtol=1e-6,
                               atol=1e-7)


@needs_kernels
def test_input_without_gradient_and_training_through_the_layer():
    (conv_a, bn_a), (conv_b, bn_b) = layer_pair(3, 3, 3, 1, 3, seed=5)
    x = paddle.randn([2, 3, 6, 6])  # stop_gradient=True, like an image batch
    loss_a = reference(x, conv_a, bn_a, "hardswish").square().mean()
    loss_b = conv_bn_act(x, conv_b, bn_b, "hardswish").square().mean()
    loss_a.backward()
    loss_b.backward()
    np.testing.assert_allclose(conv_b.weight.grad.numpy(), conv_a.weight.grad.numpy(),
                               rtol=1e-4, atol=1e-6)
    assert x.grad is None


def test_paddle_path_for_eval_mode_other_convs_and_no_kernels(monkeypatch):
    (conv, bn), _ = layer_pair(3, 8, 3, 2, 1, seed=6)  # dense 3x3: not fused
    x = paddle.randn([2, 3, 8, 8])
    assert not fused_path_applies(x, conv, bn)
    np.testing.assert_allclose(conv_bn_act(x, conv, bn, "relu").numpy(),
                               reference(x, conv, bn, "relu").numpy(), rtol=1e-6)
    (dw_conv, dw_bn), _ = layer_pair(3, 3, 3, 1, 3, seed=7)
    dw_bn.eval()
    assert not fused_path_applies(x, dw_conv, dw_bn)
    monkeypatch.setitem(loader._STATE, "tried", True)
    monkeypatch.setitem(loader._STATE, "module", None)
    dw_bn.train()
    assert not fused_path_applies(x, dw_conv, dw_bn)
    np.testing.assert_allclose(conv_bn_act(x, dw_conv, dw_bn, None).numpy(),
                               dw_bn(dw_conv(x)).numpy(), rtol=1e-6)


def test_unknown_activation_is_rejected():
    (conv, bn), _ = layer_pair(2, 2, 3, 1, 2, seed=8)
    with pytest.raises(ValueError, match="act must be"):
        conv_bn_act(paddle.randn([1, 2, 4, 4]), conv, bn, "gelu")


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("PPDISTILL_CPU_KERNELS", "0")
    monkeypatch.setitem(loader._STATE, "tried", False)
    monkeypatch.setitem(loader._STATE, "module", None)
    monkeypatch.setitem(loader._STATE, "reason", None)
    assert loader.cpu_kernels() is None
    assert loader.unavailable_reason() == "PPDISTILL_CPU_KERNELS=0"


def test_kernels_build_where_a_compiler_exists():
    import shutil
    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("no C++ compiler on this machine")
    assert cpu_kernels() is not None, loader.unavailable_reason()


@needs_kernels
@pytest.mark.parametrize("kernel,groups,act", [(3, 4, "relu"), (1, 1, "hardswish"), (5, 4, None)])
def test_legacy_batch_norm_layer_is_fused_too(kernel, groups, act):
    """nn.BatchNorm (the MobileNetV3 detection backbone's) takes the same fused path."""
    layers = []
    for _ in range(2):
        paddle.seed(9)
        conv = nn.Conv2D(4, 4, kernel, padding=kernel // 2, groups=groups, bias_attr=False)
        bn = nn.BatchNorm(num_channels=4, act=None)
        layers.append((conv, bn))
    (conv_a, bn_a), (conv_b, bn_b) = layers
    x = paddle.randn([2, 4, 7, 7])
    x.stop_gradient = False
    assert fused_path_applies(x, conv_b, bn_b)
    expected = reference(x, conv_a, bn_a, act)
    got = conv_bn_act(x, conv_b, bn_b, act)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    # every input: paddle.grad over a subset fails through any PyLayer (a paddle limitation)
    grads_a = paddle.grad(expected.sum(), [x, conv_a.weight, bn_a.weight, bn_a.bias])
    grads_b = paddle.grad(got.sum(), [x, conv_b.weight, bn_b.weight, bn_b.bias])
    for want, have in zip(grads_a, grads_b):
        np.testing.assert_allclose(have.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn_b._variance.numpy(), bn_a._variance.numpy(), rtol=1e-6)
    bn_b.eval()
    assert not fused_path_applies(x, conv_b, bn_b)
