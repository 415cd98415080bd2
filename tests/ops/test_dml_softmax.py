import numpy as np
import paddle
import pytest

from ppdistill.losses.basic_loss import DMLLoss
from ppdistill.ops import cpu_kernels, dml_softmax_sum, loader

needs_kernels = pytest.mark.skipif(cpu_kernels() is None,
                                   reason=f"CPU kernels unavailable: {loader.unavailable_reason()}")


def loss_and_grads(x, y):
    x = paddle.to_tensor(x, stop_gradient=False)
    y = paddle.to_tensor(y, stop_gradient=False)
    loss = DMLLoss(act="softmax", use_log=True)(x, y)
    grad_x, grad_y = paddle.grad(loss, [x, y])
    return loss, grad_x.numpy(), grad_y.numpy()


@needs_kernels
@pytest.mark.parametrize("shape,scale", [([3, 5, 7], 1.0), ([2, 6, 40], 4.0), ([4, 9], 0.1)])
def test_fused_dml_equals_paddle_ops(monkeypatch, shape, scale):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * scale).astype("float32")
    y = (rng.standard_normal(shape) * scale).astype("float32")
    fused, fused_gx, fused_gy = loss_and_grads(x, y)
    monkeypatch.setitem(loader._STATE, "module", None)  # paddle's ops from here on
    plain, plain_gx, plain_gy = loss_and_grads(x, y)
    assert fused.shape == plain.shape == []
    np.testing.assert_allclose(float(fused), float(plain), rtol=1e-5)
    np.testing.assert_allclose(fused_gx, plain_gx, rtol=1e-4, atol=1e-6 * np.abs(plain_gx).max())
    np.testing.assert_allclose(fused_gy, plain_gy, rtol=1e-4, atol=1e-6 * np.abs(plain_gy).max())


@needs_kernels
def test_identical_inputs_give_zero_loss_and_gradient():
    x = paddle.randn([2, 3, 11])
    x.stop_gradient = False
    loss = dml_softmax_sum(x, x.detach())
    assert abs(float(loss)) < 1e-5
    (grad,) = paddle.grad(loss, [x])
    assert float(grad.abs().max()) < 1e-5


def test_not_applicable_returns_none(monkeypatch):
    assert dml_softmax_sum(paddle.randn([2, 3]), paddle.randn([2, 4])) is None
    monkeypatch.setitem(loader._STATE, "tried", True)
    monkeypatch.setitem(loader._STATE, "module", None)
    assert dml_softmax_sum(paddle.randn([2, 3]), paddle.randn([2, 3])) is None
