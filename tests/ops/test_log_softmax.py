"""ppdistill.ops.log_softmax: the logsumexp form equals paddle's log_softmax."""
import numpy as np
import paddle
import paddle.nn.functional as F

from ppdistill.ops import log_softmax as module
from ppdistill.ops.log_softmax import log_softmax


def float64_log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def test_known_values():
    x = paddle.to_tensor([[0.0, 0.0], [1.0, 1.0 + np.log(3.0)]], "float32")
    np.testing.assert_allclose(log_softmax(x, axis=1).numpy(),
                               np.log([[0.5, 0.5], [0.25, 0.75]]), rtol=0, atol=1e-6)


def test_values_and_gradients_match_paddle_and_float64():
    rng = np.random.default_rng(0)
    data = (rng.standard_normal([3, 5, 40]) * 4).astype("float32")
    data[0, 0, 7] -= 1000.0  # DKD's "- 1000 * one-hot" rows: a class with zero mass
    upstream = rng.standard_normal(data.shape).astype("float32")
    for axis in (-1, 1):
        ours_x = paddle.to_tensor(data, stop_gradient=False)
        paddle_x = paddle.to_tensor(data, stop_gradient=False)
        ours, theirs = log_softmax(ours_x, axis=axis), F.log_softmax(paddle_x, axis=axis)
        want = float64_log_softmax(data.astype("float64"), axis)
        assert np.abs(ours.numpy() - want).max() <= 2 * np.abs(theirs.numpy() - want).max() + 1e-5
        (ours * paddle.to_tensor(upstream)).sum().backward()
        (theirs * paddle.to_tensor(upstream)).sum().backward()
        np.testing.assert_allclose(ours_x.grad.numpy(), paddle_x.grad.numpy(), rtol=1e-5,
                                   atol=1e-5)


def test_paddle_kernel_with_the_optimisations_off(monkeypatch):
    calls = []
    monkeypatch.setattr(module.F, "log_softmax",
                        lambda x, axis: calls.append(axis) or paddle.zeros_like(x))
    x = paddle.rand([2, 3])
    log_softmax(x)
    assert calls == []
    monkeypatch.setenv("PPDISTILL_CPU_KERNELS", "0")
    assert float(log_softmax(x, axis=1).abs().sum()) == 0.0
    assert calls == [1]
