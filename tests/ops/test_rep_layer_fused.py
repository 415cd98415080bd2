"""PP-LCNetV3's LearnableRepLayer through the fused CPU node equals paddle's ops."""
import numpy as np
import paddle
import pytest

from ppdistill.modeling.backbones.rec_lcnetv3 import LearnableRepLayer, PPLCNetV3
from ppdistill.ops import cpu_kernels, loader, rep_layer

needs_kernels = pytest.mark.skipif(cpu_kernels() is None,
                                   reason=f"CPU kernels unavailable: {loader.unavailable_reason()}")


@pytest.fixture(autouse=True)
def gram_path_on_small_inputs():
    """These tests' inputs are tiny: let the pointwise Gram path take them (the shape rule that
    sends few-row layers to paddle's ops has its own test). Not ``monkeypatch``: tests here call
    ``monkeypatch.undo()`` midway."""
    saved = rep_layer.GRAM_MIN_ROWS_PER_CHANNEL
    rep_layer.GRAM_MIN_ROWS_PER_CHANNEL = 0
    yield
    rep_layer.GRAM_MIN_ROWS_PER_CHANNEL = saved


def build_layer(in_channels, out_channels, kernel, stride, branches, seed):
    """A LearnableRepLayer with non-trivial BN parameters, running statistics and affines."""
    paddle.seed(seed)
    rng = np.random.default_rng(seed)
    groups = in_channels if kernel > 1 else 1
    layer = LearnableRepLayer(in_channels, out_channels, kernel, stride=stride, groups=groups,
                              num_conv_branches=branches)
    for name, value in layer.state_dict().items():
        shape = list(value.shape)
        if name.endswith("_variance"):
            value.set_value(rng.uniform(0.5, 2.0, shape).astype("float32"))
        elif name.endswith("_mean"):
            value.set_value(rng.normal(0.0, 0.3, shape).astype("float32"))
        elif name.endswith(("bn.weight", "identity.weight")):
            value.set_value(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif name.endswith(("bn.bias", "identity.bias")):
            value.set_value(rng.normal(0.0, 0.3, shape).astype("float32"))
        elif name.endswith("lab.scale"):
            value.set_value(rng.uniform(0.7, 1.3, shape).astype("float32"))
        elif name.endswith("lab.bias"):
            value.set_value(rng.normal(0.0, 0.5, shape).astype("float32"))
    layer.train()
    return layer


def run(layer, x, grad_out, use_kernels, monkeypatch):
    """Output, input gradient, parameter gradients and buffers after one forward/backward."""
    if not use_kernels:
        monkeypatch.setitem(loader._STATE, "module", None)
    x = paddle.to_tensor(x, stop_gradient=False)
    out = layer(x)
    (out * paddle.to_tensor(grad_out)).sum().backward()
    monkeypatch.undo()
    grads = {name: p.grad.numpy() for name, p in layer.named_parameters() if p.grad is not None}
    buffers = {name: b.numpy() for name, b in layer.named_buffers()}
    return out.numpy(), x.grad.numpy(), grads, buffers


CASES = [  # in, out, kernel, stride, branches
    (4, 4, 3, 1, 4), (5, 5, 5, 1, 4), (4, 4, 3, (2, 1), 4), (6, 6, 3, (1, 2), 2),
    (4, 4, 5, (2, 1), 3), (3, 3, 3, 2, 4), (4, 4, 5, 2, 1), (4, 6, 1, 1, 4), (5, 5, 1, 1, 4),
    (5, 5, 1, 1, 1)]


@needs_kernels
@pytest.mark.parametrize("in_channels,out_channels,kernel,stride,branches", CASES)
def test_fused_rep_layer_matches_paddle(monkeypatch, in_channels, out_channels, kernel, stride,
                                        branches):
    compare_with_paddle(monkeypatch, in_channels, out_channels, kernel, stride, branches, (9, 11))


@needs_kernels
@pytest.mark.parametrize("kernel,branches,plane", [
    (3, 4, (21, 37)), (5, 5, (19, 33)), (5, 6, (10, 16)), (3, 1, (17, 20))])
def test_stride1_depthwise_blocks_match_paddle(monkeypatch, kernel, branches, plane):
    """The stride-1 depthwise loops (dw_stride1.h): several 16-column blocks with a partial
    last one, more than one 8-row chunk of the weight gradient, 1 to 6 k x k branches (kernel
    groups of 4 + 1, 4 + 2)."""
    compare_with_paddle(monkeypatch, 3, 3, kernel, 1, branches, plane, against_float64=True)


def compare_with_paddle(monkeypatch, in_channels, out_channels, kernel, stride, branches, plane,
                        against_float64=False):
    """A LearnableRepLayer's output, gradients and running statistics through the fused node
    against paddle's ops on a [3, in_channels, *plane] input. ``against_float64``: parameter
    gradients are sums over the whole batch with cancelling terms (BN's backward), so on larger
    planes both float32 paths are compared with paddle's float64 result instead: the fused one
    must be as close as paddle's own float32."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal([3, in_channels, *plane]) * 1.5 + 0.3).astype("float32")
    fused_layer = build_layer(in_channels, out_channels, kernel, stride, branches, seed=2)
    plain_layer = build_layer(in_channels, out_channels, kernel, stride, branches, seed=2)
    assert rep_layer.rep_layer_plan(paddle.to_tensor(x), fused_layer) is not None
    with paddle.no_grad():
        expected_shape = build_layer(in_channels, out_channels, kernel, stride, branches,
                                     seed=2)(paddle.to_tensor(x)).shape
    grad_out = rng.standard_normal(expected_shape).astype("float32")
    fused = run(fused_layer, x, grad_out, True, monkeypatch)
    plain = run(plain_layer, x, grad_out, False, monkeypatch)
    np.testing.assert_allclose(fused[0], plain[0], rtol=1e-5, atol=1e-5, err_msg="output")
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-4, atol=1e-4, err_msg="x grad")
    # every trainable parameter has a gradient on both paths (act.lab only with the act)
    assert fused[2].keys() == plain[2].keys()
    assert ("act.lab.scale" in plain[2]) == fused_layer.apply_act
    assert {"lab.scale", "lab.bias"} <= plain[2].keys()
    exact = None
    if against_float64:
        exact_layer = build_layer(in_channels, out_channels, kernel, stride, branches, seed=2)
        exact_layer.to(dtype="float64")
        exact = run(exact_layer, x.astype("float64"), grad_out.astype("float64"), False,
                    monkeypatch)[2]
    for name in plain[2]:
        if exact is None:
            np.testing.assert_allclose(fused[2][name], plain[2][name], rtol=1e-4, atol=1e-4,
                                       err_msg=name)
            continue
        fused_error = np.abs(fused[2][name] - exact[name]).max()
        plain_error = np.abs(plain[2][name] - exact[name]).max()
        assert fused_error <= 2 * plain_error + 1e-5 * (1 + np.abs(exact[name]).max()), name
    assert fused[3].keys() == plain[3].keys()
    for name in plain[3]:
        np.testing.assert_allclose(fused[3][name], plain[3][name], rtol=1e-6, atol=1e-6,
                                   err_msg=name)


@needs_kernels
def test_known_values_of_a_one_branch_pointwise_layer():
    """y = as * hardswish(ls * (BN(w * x) + BN_id(x)) + lb) + ab on a 1-channel layer."""
    layer = LearnableRepLayer(1, 1, 1, num_conv_branches=1)
    layer.conv_kxk[0].conv.weight.set_value(paddle.to_tensor([[[[2.0]]]]))
    layer.lab.scale.set_value(paddle.to_tensor([0.5]))
    layer.lab.bias.set_value(paddle.to_tensor([1.0]))
    layer.act.lab.scale.set_value(paddle.to_tensor([3.0]))
    layer.act.lab.bias.set_value(paddle.to_tensor([-1.0]))
    x = paddle.to_tensor([[[[1.0, 3.0]]]], stop_gradient=False)
    # a BN over two values {a, b} gives -+ (b - a) / 2 / sqrt((b - a)^2 / 4 + eps): the
    # identity sees {1, 3}, the conv branch {2, 6}
    out = layer(x)
    t = np.float32(1.0 / np.sqrt(1.0 + 1e-5) + 2.0 / np.sqrt(4.0 + 1e-5))
    u = 0.5 * np.array([-t, t], "float32") + 1.0
    hardswish = u * np.clip(u + 3, 0, 6) / 6
    np.testing.assert_allclose(out.numpy().ravel(), 3.0 * hardswish - 1.0, rtol=1e-5)
    np.testing.assert_allclose(layer.identity._mean.numpy(), [0.2], rtol=1e-6)  # 0.9*0 + 0.1*2
    np.testing.assert_allclose(layer.conv_kxk[0].bn._mean.numpy(), [0.4], rtol=1e-6)
    # running variance: momentum 0.9 with the biased batch variance (1 and 4), as paddle
    np.testing.assert_allclose(layer.identity._variance.numpy(), [0.9 + 0.1 * 1.0], rtol=1e-6)
    np.testing.assert_allclose(layer.conv_kxk[0].bn._variance.numpy(), [0.9 + 0.1 * 4.0],
                               rtol=1e-6)
    out.sum().backward()
    # d/d(act.lab.bias) = number of outputs; d/d(act.lab.scale) = sum of hardswish(u)
    np.testing.assert_allclose(layer.act.lab.bias.grad.numpy(), [2.0], rtol=1e-6)
    np.testing.assert_allclose(layer.act.lab.scale.grad.numpy(), [hardswish.sum()], rtol=1e-5)
    # BN output is invariant to a per-channel shift of its input: x's gradient sums to 0
    assert abs(float(x.grad.sum())) < 1e-5


@needs_kernels
@pytest.mark.parametrize("kernel", [3, 1])
def test_input_without_gradient_and_frozen_affine(monkeypatch, kernel):
    layers = [build_layer(4, 4, kernel, 1, 2, seed=5) for _ in range(2)]
    for layer in layers:
        layer.lab.scale.stop_gradient = True
        layer.conv_kxk[0].bn.weight.stop_gradient = True  # a frozen BN (paddle's BN gives
        layer.conv_kxk[0].bn.bias.stop_gradient = True  # no bias grad with a frozen weight)
    x = paddle.to_tensor(np.random.default_rng(3).standard_normal([2, 4, 6, 6]).astype("float32"))
    losses = []
    for layer, use in zip(layers, (True, False)):
        if not use:
            monkeypatch.setitem(loader._STATE, "module", None)
        loss = layer(x).square().mean()
        loss.backward()
        monkeypatch.undo()
        losses.append(float(loss))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    assert x.grad is None and layers[0].lab.scale.grad is None
    assert layers[0].conv_kxk[0].bn.weight.grad is None
    assert layers[0].conv_kxk[0].bn.bias.grad is None
    np.testing.assert_allclose(layers[0].conv_kxk[1].bn.weight.grad.numpy(),
                               layers[1].conv_kxk[1].bn.weight.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layers[0].conv_kxk[1].conv.weight.grad.numpy(),
                               layers[1].conv_kxk[1].conv.weight.grad.numpy(), rtol=1e-4,
                               atol=1e-5)


@needs_kernels
def test_pointwise_layer_that_keeps_its_branch_outputs(monkeypatch):
    """RECOMPUTE_POINTWISE=False keeps Z instead of recomputing it: same numbers."""
    x = np.random.default_rng(4).standard_normal([2, 5, 4, 7]).astype("float32")
    grad_out = np.random.default_rng(5).standard_normal([2, 5, 4, 7]).astype("float32")
    monkeypatch.setattr(rep_layer, "POINTWISE_MODE", "stacked")
    recomputed = run(build_layer(5, 5, 1, 1, 3, seed=6), x, grad_out, True, monkeypatch)
    monkeypatch.setattr(rep_layer, "POINTWISE_MODE", "stacked")
    monkeypatch.setattr(rep_layer, "RECOMPUTE_POINTWISE", False)
    kept = run(build_layer(5, 5, 1, 1, 3, seed=6), x, grad_out, True, monkeypatch)
    np.testing.assert_array_equal(kept[0], recomputed[0])
    np.testing.assert_allclose(kept[1], recomputed[1], rtol=1e-6, atol=1e-6)
    for name in recomputed[2]:
        np.testing.assert_allclose(kept[2][name], recomputed[2][name], rtol=1e-6, atol=1e-6)


@needs_kernels
@pytest.mark.parametrize("mode", ["gram", "stacked"])
@pytest.mark.parametrize("in_channels,out_channels,branches,offset", [
    (6, 6, 4, 0.0), (6, 6, 4, 3.0), (4, 7, 3, 2.0), (8, 8, 1, -1.5)])
def test_pointwise_modes_match_paddle_on_uncentred_inputs(monkeypatch, mode, in_channels,
                                                           out_channels, branches, offset):
    """Both pointwise paths (covariance-folded and stacked GEMM) equal paddle's ops, also on
    inputs far from zero mean (hardswish outputs are), which a raw E[x^2] - E[x]^2 would not."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal([3, in_channels, 5, 6]) * rng.uniform(0.2, 2.0, [1, in_channels, 1, 1])
         + offset).astype("float32")
    grad_out = rng.standard_normal([3, out_channels, 5, 6]).astype("float32")
    plain = run(build_layer(in_channels, out_channels, 1, 1, branches, seed=12), x, grad_out,
                False, monkeypatch)
    monkeypatch.setattr(rep_layer, "POINTWISE_MODE", mode)
    layer = build_layer(in_channels, out_channels, 1, 1, branches, seed=12)
    calls = []
    node = rep_layer._RepPointwiseSumFunction
    monkeypatch.setattr(node, "apply",
                        lambda *args, original=node.apply: calls.append(1) or original(*args))
    fused = run(layer, x, grad_out, True, monkeypatch)
    assert len(calls) == (1 if mode == "gram" else 0)
    np.testing.assert_allclose(fused[0], plain[0], rtol=1e-5, atol=1e-5, err_msg="output")
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-4, atol=1e-4, err_msg="x grad")
    # conv + BN weight + BN bias per branch, the identity BN, lab and act.lab
    assert fused[2].keys() == plain[2].keys()
    assert len(plain[2]) == 3 * branches + 2 * int(in_channels == out_channels) + 4
    for name in plain[2]:
        np.testing.assert_allclose(fused[2][name], plain[2][name], rtol=1e-4, atol=1e-4,
                                   err_msg=name)
    for name in plain[3]:
        np.testing.assert_allclose(fused[3][name], plain[3][name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_paddle_path_in_eval_after_rep_and_without_kernels(monkeypatch):
    layer = build_layer(4, 4, 3, 1, 2, seed=7)
    x = paddle.randn([2, 4, 6, 6])
    layer.eval()
    assert rep_layer.rep_layer_plan(x, layer) is None
    expected = layer(x).numpy()
    layer.rep()
    layer.train()
    assert rep_layer.rep_layer_plan(x, layer) is None  # repped: reparam_conv in every mode
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    fresh = build_layer(4, 4, 3, 1, 2, seed=7)
    assert rep_layer.rep_layer_plan(x.astype("float64"), fresh) is None
    fresh.identity._momentum = 0.5  # BNs of one layer with different momenta: paddle's ops
    assert rep_layer.rep_layer_plan(x, fresh) is None
    monkeypatch.setitem(loader._STATE, "tried", True)
    monkeypatch.setitem(loader._STATE, "module", None)
    assert rep_layer.rep_layer_plan(x, build_layer(4, 4, 3, 1, 2, seed=7)) is None


def _train_step(build, x, use_kernels, monkeypatch, dtype="float32"):
    if not use_kernels:
        monkeypatch.setitem(loader._STATE, "module", None)
    paddle.seed(0)
    model = build()
    if dtype != "float32":
        model = model.to(dtype=dtype)
    model.train()
    out = model(x.astype(dtype))
    out = out[-1] if isinstance(out, list) else out
    (out * out).mean().backward()
    monkeypatch.undo()
    grads = {name: p.grad.numpy().astype("float64") for name, p in model.named_parameters()
             if p.grad is not None}
    means = {name: b.numpy() for name, b in model.named_buffers() if name.endswith("_mean")}
    keys = list(model.state_dict())
    return out.numpy(), grads, means, keys


@needs_kernels
@pytest.mark.parametrize("build,shape,rep_layers", [
    (lambda: PPLCNetV3(scale=0.5, conv_kxk_num=2), [4, 3, 32, 96], 28),
    (lambda: PPLCNetV3(scale=0.5, conv_kxk_num=2, det=True), [2, 3, 64, 64], 28),
])
def test_pplcnetv3_training_step_matches_paddle(monkeypatch, build, shape, rep_layers):
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal(shape).astype("float32"))
    calls = []
    for node in (rep_layer._RepLayerFunction, rep_layer._RepPointwiseSumFunction):
        monkeypatch.setattr(node, "apply",
                            lambda *args, original=node.apply: calls.append(1) or original(*args))
    fused_out, fused_grads, fused_means, fused_keys = _train_step(build, x, True, monkeypatch)
    assert len(calls) == rep_layers  # both LearnableRepLayers of all 14 blocks
    plain_out, plain_grads, plain_means, plain_keys = _train_step(build, x, False, monkeypatch)
    exact_out, exact_grads = _train_step(build, x, False, monkeypatch, "float64")[:2]
    assert fused_keys == plain_keys
    np.testing.assert_allclose(fused_out, plain_out, rtol=1e-3, atol=1e-3)
    assert np.abs(fused_out - exact_out).max() <= 2 * np.abs(plain_out - exact_out).max() + 1e-6
    assert fused_grads.keys() == plain_grads.keys() == exact_grads.keys()
    for name in plain_means:
        np.testing.assert_allclose(fused_means[name], plain_means[name], rtol=1e-5, atol=1e-6)

    # A deep BN stack on a tiny batch amplifies float32 rounding (a 1e-7 relative change of one
    # activation moved early gradients by ~4e-3 here), so both float32 paths are compared with
    # paddle's float64 results: the fused one must be as close as paddle's own float32.
    def error(grads):
        return np.sqrt(sum(float(((grads[k] - exact_grads[k]) ** 2).sum()) for k in exact_grads))
    scale = np.sqrt(sum(float((g ** 2).sum()) for g in exact_grads.values()))
    assert error(fused_grads) <= 2 * error(plain_grads) + 1e-6 * scale
    assert error(fused_grads) <= 2e-4 * scale


@needs_kernels
def test_gram_path_only_on_enough_rows_per_channel(monkeypatch):
    """A pointwise layer takes the Gram node from GRAM_MIN_ROWS_PER_CHANNEL rows per input
    channel on and paddle's ops below it (same values either way); depthwise layers always fuse."""
    monkeypatch.setattr(rep_layer, "GRAM_MIN_ROWS_PER_CHANNEL", 8)
    layer = build_layer(16, 16, 1, 1, 4, seed=5)
    few = paddle.randn([2, 16, 4, 4])  # 32 rows: 2 per channel
    enough = paddle.randn([2, 16, 8, 8])  # 128 rows: 8 per channel
    assert rep_layer.rep_layer_plan(few, layer) is None
    assert rep_layer.rep_layer_plan(enough, layer) is not None
    assert rep_layer.rep_layer_plan(few, build_layer(16, 16, 3, 1, 4, seed=5)) is not None
    monkeypatch.setattr(rep_layer, "POINTWISE_MODE", "stacked")
    assert rep_layer.rep_layer_plan(few, layer) is not None
    monkeypatch.setattr(rep_layer, "POINTWISE_MODE", "gram")
    x = np.random.default_rng(6).standard_normal([2, 16, 4, 4]).astype("float32")
    grad_out = np.random.default_rng(7).standard_normal([2, 16, 4, 4]).astype("float32")
    saved = rep_layer.GRAM_MIN_ROWS_PER_CHANNEL
    rep_layer.GRAM_MIN_ROWS_PER_CHANNEL = 0
    try:
        gram = run(build_layer(16, 16, 1, 1, 4, seed=5), x, grad_out, True, monkeypatch)
    finally:
        rep_layer.GRAM_MIN_ROWS_PER_CHANNEL = saved
    monkeypatch.setattr(rep_layer, "GRAM_MIN_ROWS_PER_CHANNEL", 8)
    plain = run(build_layer(16, 16, 1, 1, 4, seed=5), x, grad_out, True, monkeypatch)
    for a, b in zip(gram[:2], plain[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
