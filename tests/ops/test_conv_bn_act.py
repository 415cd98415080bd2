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


@needs_kernels
@pytest.mark.parametrize("kernel,stride,plane", [
    (3, 1, (21, 37)), (5, 1, (19, 33)), (3, 1, (4, 16)), (5, 2, (19, 33)), (3, (1, 2), (9, 20))])
def test_depthwise_kernels_match_float64_conv(kernel, stride, plane):
    """ppdistill_depthwise_conv2d forward / backward against paddle's float64 conv: stride-1
    layers take dw_stride1.h's blocks (several 16-column blocks with a partial last one, more
    than one 8-row chunk of the weight gradient), others the per-tap loops."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal([2, 3, *plane]) * 2 + 0.5
    w = rng.standard_normal([3, 1, kernel, kernel])
    strides = (stride, stride) if isinstance(stride, int) else stride
    x64, w64 = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(w, stop_gradient=False)
    want = F.conv2d(x64, w64, stride=strides, padding=kernel // 2, groups=3)
    grad = rng.standard_normal(want.shape)
    want_gx, want_gw = paddle.grad(want, [x64, w64], paddle.to_tensor(grad))
    ops = cpu_kernels()
    args = (strides[0], strides[1], kernel // 2, kernel // 2)
    x32, w32 = paddle.to_tensor(x, "float32"), paddle.to_tensor(w, "float32")
    got = ops.ppdistill_depthwise_conv2d_forward(x32, w32, *args, 2)
    got_gx, got_gw = ops.ppdistill_depthwise_conv2d_backward(
        x32, w32, paddle.to_tensor(grad, "float32"), *args, 2)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(got_gx.numpy(), want_gx.numpy(), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(got_gw.numpy(), want_gw.numpy(), rtol=1e-5, atol=1e-4)
