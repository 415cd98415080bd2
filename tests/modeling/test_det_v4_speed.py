"""A frozen DB teacher head's two 7x7 branch convs run as one shifted GEMM (fast_conv)."""
import copy

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddle import nn

from ppdistill.modeling import fast_conv
from ppdistill.modeling.fast_conv import enable_fast_frozen_convs, shared_input_convs
from ppdistill.modeling.heads.det_db_head import DBHead


@pytest.fixture
def gemm_calls(monkeypatch):
    """Counts calls of the shifted GEMM conv (the real one still runs)."""
    calls = []
    real = fast_conv.shifted_gemm_conv2d

    def counted(x, weight, bias=None, max_buffer_bytes=None):
        calls.append(list(weight.shape))
        return real(x, weight, bias, max_buffer_bytes)

    monkeypatch.setattr(fast_conv, "shifted_gemm_conv2d", counted)
    return calls


def _two_convs(first_bias, second_bias):
    paddle.seed(3)
    return [nn.Conv2D(6, 4, 7, padding=3, bias_attr=None if first_bias else False),
            nn.Conv2D(6, 3, 7, padding=3, bias_attr=None if second_bias else False)]


@pytest.mark.parametrize("first_bias,second_bias", [(False, False), (True, False), (True, True)])
def test_switched_convs_share_one_gemm_and_match_paddle(gemm_calls, first_bias, second_bias):
    convs = _two_convs(first_bias, second_bias)
    for conv in convs:
        if conv.bias is not None:  # non-zero biases, so a misplaced one shows
            conv.bias.set_value(paddle.randn(conv.bias.shape))
    x = paddle.randn([2, 6, 10, 9])
    expected = [F.conv2d(x, conv.weight, conv.bias, padding=3).numpy() for conv in convs]
    assert sum(enable_fast_frozen_convs(conv) for conv in convs) == 2
    with paddle.no_grad():
        got = shared_input_convs(x, convs)
    assert gemm_calls == [[7, 6, 7, 7]]  # one GEMM over both weights stacked
    assert [list(t.shape) for t in got] == [[2, 4, 10, 9], [2, 3, 10, 9]]
    for one, ref in zip(got, expected):
        np.testing.assert_allclose(one.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_unswitched_or_gradient_runs_each_conv(gemm_calls):
    convs = _two_convs(False, True)
    x = paddle.randn([1, 6, 8, 8])
    expected = [conv(x).numpy() for conv in convs]
    with paddle.no_grad():  # not switched: each conv's own (paddle) forward
        got = shared_input_convs(x, convs)
    assert gemm_calls == []
    for one, ref in zip(got, expected):
        np.testing.assert_array_equal(one.numpy(), ref)
    enable_fast_frozen_convs(convs[0])
    with paddle.no_grad():  # only one switched: no merge, the switched one alone is fast
        shared_input_convs(x, convs)
    assert gemm_calls == [[4, 6, 7, 7]]
    enable_fast_frozen_convs(convs[1])
    x.stop_gradient = False
    got = shared_input_convs(x, convs)  # gradient enabled: paddle's kernels, and it trains
    assert gemm_calls == [[4, 6, 7, 7]]
    sum(t.sum() for t in got).backward()
    assert x.grad is not None and convs[1].weight.grad is not None


def run(layer, x, train):
    """``layer(x)`` in train or eval mode (paddle 2.6's ``train()``/``eval()`` return None)."""
    if train:
        layer.train()
    else:
        layer.eval()
    return layer(x)


def test_frozen_db_head_training_maps_match_the_plain_head(gemm_calls):
    paddle.seed(5)
    head = DBHead(in_channels=16, k=50, kernel_list=[7, 2, 2])
    x = paddle.randn([2, 16, 6, 5])
    with paddle.no_grad():  # running statistics = this batch's, so eval mode is well scaled
        for layer in head.sublayers():
            if isinstance(layer, nn.BatchNorm):
                layer._momentum = 0.0
        run(head, x, train=True)
    plain = copy.deepcopy(head)
    with paddle.no_grad():
        expected = run(plain, x, train=True)["maps"].numpy()
        expected_shrink = run(plain, x, train=False)["maps"].numpy()
        assert enable_fast_frozen_convs(head) == 2
        got = run(head, x, train=True)["maps"].numpy()
        assert gemm_calls == [[8, 16, 7, 7]]  # both branches' conv1 in one GEMM
        shrink = run(head, x, train=False)["maps"].numpy()  # eval: the shrink branch alone
    assert gemm_calls == [[8, 16, 7, 7], [4, 16, 7, 7]]
    assert got.shape == (2, 3, 24, 20) and shrink.shape == (2, 1, 24, 20)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shrink, expected_shrink, rtol=1e-5, atol=1e-5)
    # the merged GEMM is not a no-op: the maps depend on the threshold branch's own weights
    head.thresh.conv1.weight.set_value(paddle.randn(head.thresh.conv1.weight.shape))
    with paddle.no_grad():
        changed = run(head, x, train=True)["maps"].numpy()
    assert np.abs(changed[:, 1] - got[:, 1]).max() > 1e-3
    np.testing.assert_allclose(changed[:, 0], got[:, 0], rtol=1e-5, atol=1e-5)
