"""The fused ``lab`` / hardswish / ``act.lab`` tail of PP-LCNetV3 layers (ppdistill.ops.lab_act)."""
import numpy as np
import paddle
import pytest
from paddle import nn

from ppdistill.modeling.backbones.rec_lcnetv3 import Act, LearnableAffineBlock
from ppdistill.ops import cpu_kernels, loader, rep_layer
from ppdistill.ops.lab_act import lab_act

needs_kernels = pytest.mark.skipif(cpu_kernels() is None,
                                   reason=f"CPU kernels unavailable: {loader.unavailable_reason()}")


def blocks(with_act, values=(1.3, -0.4, 0.8, 0.25)):
    lab = LearnableAffineBlock(scale_value=values[0], bias_value=values[1])
    act = None
    if with_act:
        act = Act()
        act.lab.scale.set_value(np.array([values[2]], "float32"))
        act.lab.bias.set_value(np.array([values[3]], "float32"))
    return lab, act


def reference(s, grad_y, values, with_act):
    """float64 forward, input gradient and the four scalar gradients."""
    ls, lb, a_s, a_b = (float(v) for v in values)
    s = s.astype("float64")
    g = grad_y.astype("float64")
    u = ls * s + lb
    if not with_act:
        return u, g * ls, [(g * s).sum(), g.sum()]
    relu6 = np.clip(u + 3.0, 0.0, 6.0)
    h = u * relu6 / 6.0
    dh = np.where(u + 3.0 <= 0.0, 0.0, np.where(u + 3.0 >= 6.0, 1.0, (2.0 * u + 3.0) / 6.0))
    gu = g * a_s * dh
    return a_s * h + a_b, gu * ls, [(gu * s).sum(), gu.sum(), (g * h).sum(), g.sum()]


@needs_kernels
@pytest.mark.parametrize("with_act", [True, False])
def test_known_values_against_float64(with_act):
    rng = np.random.default_rng(0)
    # exactly on both kinks of hardswish (u = 2 s - 1 = -3 and 3) and between them
    s_np = rng.normal(0.0, 2.0, [2, 3, 5, 7]).astype("float32")
    s_np[0, 0, 0, :3] = [-1.0, 2.0, 0.0]
    g_np = rng.normal(0.0, 1.0, s_np.shape).astype("float32")
    values = [2.0, -1.0, 0.8, 0.25]
    lab, act = blocks(with_act, values)
    s = paddle.to_tensor(s_np, stop_gradient=False)
    y = lab_act(s, lab, act)
    assert y is not None
    y.backward(paddle.to_tensor(g_np))
    want_y, want_gs, want_scalars = reference(s_np, g_np, values, with_act)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s.grad.numpy(), want_gs, rtol=1e-6, atol=1e-6)
    params = [lab.scale, lab.bias] + ([act.lab.scale, act.lab.bias] if act else [])
    for param, want in zip(params, want_scalars):
        np.testing.assert_allclose(param.grad.numpy()[0], want, rtol=1e-5, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("with_act", [True, False])
def test_equals_paddle_ops(with_act):
    rng = np.random.default_rng(1)
    s_np = rng.normal(0.0, 2.0, [4, 16, 9, 9]).astype("float32")
    g_np = rng.normal(0.0, 1.0, s_np.shape).astype("float32")
    got, want = [], []
    for out in (got, want):
        lab, act = blocks(with_act)
        s = paddle.to_tensor(s_np, stop_gradient=False)
        y = lab_act(s, lab, act) if out is got else (act(lab(s)) if act else lab(s))
        y.backward(paddle.to_tensor(g_np))
        params = [lab.scale, lab.bias] + ([act.lab.scale, act.lab.bias] if act else [])
        out += [y.numpy(), s.grad.numpy()] + [p.grad.numpy() for p in params]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@needs_kernels
def test_frozen_scalars_get_no_gradient_and_input_only_grad():
    lab, act = blocks(True)
    for p in (lab.scale, lab.bias, act.lab.scale, act.lab.bias):
        p.stop_gradient = True
    s = paddle.to_tensor(np.linspace(-5, 5, 24, dtype="float32").reshape([1, 2, 3, 4]),
                         stop_gradient=False)
    lab_act(s, lab, act).sum().backward()
    assert s.grad is not None and lab.scale.grad is None and act.lab.bias.grad is None


def test_not_applicable_returns_none():
    lab, _ = blocks(False)
    relu_act = Act()
    relu_act.act = nn.ReLU()
    s = paddle.ones([1, 2, 3, 3])
    assert lab_act(s, lab, relu_act) is None             # another activation: paddle's ops
    assert lab_act(s.astype("float64"), lab, None) is None  # not float32
    assert lab_act(s, nn.Identity(), None) is None       # not an affine block


@needs_kernels
def test_rep_layer_with_and_without_fused_tail(monkeypatch):
    from ppdistill.modeling.backbones.rec_lcnetv3 import LearnableRepLayer
    paddle.seed(3)
    layer = LearnableRepLayer(24, 24, 1, stride=1, num_conv_branches=4)
    layer.train()
    layer.lab.scale.set_value(np.array([1.2], "float32"))
    layer.act.lab.bias.set_value(np.array([0.3], "float32"))
    # 288 rows for 24 channels: enough for the Gram node (rep_layer.GRAM_MIN_ROWS_PER_CHANNEL)
    x_np = np.random.default_rng(3).normal(0.0, 1.0, [2, 24, 12, 12]).astype("float32")
    assert rep_layer.rep_layer_plan(paddle.to_tensor(x_np), layer) is not None
    results = {}
    for fused in (True, False):
        monkeypatch.setattr(rep_layer, "FUSED_TAIL", fused)
        for p in layer.parameters():
            p.clear_gradient()
        x = paddle.to_tensor(x_np, stop_gradient=False)
        y = layer(x)
        (y * y).sum().backward()
        results[fused] = [y.numpy(), x.grad.numpy()] + [
            p.grad.numpy() for p in (layer.lab.scale, layer.lab.bias, layer.act.lab.scale,
                                     layer.act.lab.bias)]
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-4)
