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


@pytest.mark.parametrize("max_buffer_bytes", [1, 12000, 30000, 40000, 10**9])
def test_groups_of_images_and_bands_of_rows_match_paddle_conv(max_buffer_bytes):
    """Limits giving bands of 5 or 7 rows (uneven last band), 1, 2 (uneven last group) or 3
    images per GEMM (15.6 KB of taps per image)."""
    paddle.seed(4)
    x = paddle.randn([3, 4, 11, 9])
    weight = paddle.randn([5, 4, 5, 5])
    bias = paddle.randn([5])
    expected = F.conv2d(x, weight, bias, padding=2).numpy()
    got = shifted_gemm_conv2d(x, weight, bias, max_buffer_bytes=max_buffer_bytes).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_chunking_keeps_the_tap_buffer_under_the_limit():
    from ppdistill.modeling.fast_conv import MAX_BUFFER_BYTES, _chunking
    # LKPAN's 9x9 over 256 channels, batch 4 at 80x80 (Wp = 88): 811 KB of taps per padded
    # row, so bands of 33 output rows (41 padded rows, 31.7 MiB) instead of one 285 MB buffer
    assert _chunking(4, 80, 88, 256, 9, MAX_BUFFER_BYTES) == (1, 33)
    assert 41 * 88 * 9 * 256 * 4 <= MAX_BUFFER_BYTES < 42 * 88 * 9 * 256 * 4
    # small inputs: whole images, as many as fit (8x8, k 5, Wp 12: 11.5 KB of taps per image)
    assert _chunking(4, 8, 12, 4, 5, 25000) == (2, 8)
    assert _chunking(4, 8, 12, 4, 5, 10**9) == (4, 8)
    # never fewer than k rows per band, however small the limit
    assert _chunking(1, 50, 54, 8, 5, 1) == (1, 5)
