import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddle import nn

from ppdistill.modeling.fast_conv import enable_fast_frozen_convs, shifted_gemm_conv2d


@pytest.mark.parametrize("batch,channels,height,width,out_channels,k", [
    (2, 5, 9, 11, 3, 5), (1, 4, 7, 6, 6, 7), (3, 2, 12, 12, 4, 9), (2, 3, 4, 5, 2, 3)])
def test_matches_paddle_conv(batch, channels, height, width, out_channels, k):
    paddle.seed(1)
    x = paddle.randn([batch, channels, height, width])
    weight = paddle.randn([out_channels, channels, k, k])
    bias = paddle.randn([out_channels])
    expected = F.conv2d(x, weight, bias, padding=k // 2).numpy()
    got = shifted_gemm_conv2d(x, weight, bias).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    got_no_bias = shifted_gemm_conv2d(x, weight).numpy()
    np.testing.assert_allclose(got_no_bias, F.conv2d(x, weight, padding=k // 2).numpy(),
                               rtol=1e-5, atol=1e-4)


def test_rejects_even_or_mismatched_kernels():
    with pytest.raises(ValueError, match="odd square kernel"):
        shifted_gemm_conv2d(paddle.randn([1, 2, 6, 6]), paddle.randn([3, 2, 4, 4]))
    with pytest.raises(ValueError, match="over 2 channels"):
        shifted_gemm_conv2d(paddle.randn([1, 2, 6, 6]), paddle.randn([3, 5, 5, 5]))


def test_only_qualifying_convs_are_switched_and_outputs_agree():
    paddle.seed(2)
    model = nn.Sequential(
        nn.Conv2D(3, 4, 9, padding=4),               # switched
        nn.Conv2D(4, 4, 7, padding=3, bias_attr=False),  # switched
        nn.Conv2D(4, 4, 3, padding=1),               # too small a kernel
        nn.Conv2D(4, 4, 5, padding=2, stride=2),     # strided
        nn.Conv2D(4, 4, 5, padding=1),               # not "same"
        nn.Conv2D(4, 4, 5, padding=2, groups=2),     # grouped
    )
    keys = list(model.state_dict().keys())
    x = paddle.randn([2, 3, 16, 16])
    reference = model(x).numpy()   # gradient enabled: paddle's kernel everywhere
    assert enable_fast_frozen_convs(model) == 2
    assert list(model.state_dict().keys()) == keys
    with paddle.no_grad():
        fast = model(x).numpy()
    np.testing.assert_allclose(fast, reference, rtol=1e-4, atol=1e-4)
    # With gradient enabled the switched convs still take paddle's kernel (and train).
    x.stop_gradient = False
    model(x).sum().backward()
    assert x.grad is not None


def test_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("PPDISTILL_FAST_CONV", "0")
    assert enable_fast_frozen_convs(nn.Conv2D(3, 4, 9, padding=4)) == 0
