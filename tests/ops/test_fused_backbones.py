"""The MobileNet backbones take the fused CPU path in training, with paddle's numbers."""
import numpy as np
import paddle
import pytest

from ppdistill.modeling.backbones.det_mobilenet_v3 import MobileNetV3
from ppdistill.modeling.backbones.rec_mv1_enhance import MobileNetV1Enhance
from ppdistill.ops import cpu_kernels, functional, loader

needs_kernels = pytest.mark.skipif(cpu_kernels() is None,
                                   reason=f"CPU kernels unavailable: {loader.unavailable_reason()}")


def train_step(build, x, use_kernels, monkeypatch):
    """Output, parameter gradients and BN running means after one training forward/backward."""
    if not use_kernels:
        monkeypatch.setitem(loader._STATE, "module", None)
    paddle.seed(0)
    model = build()
    model.train()
    out = model(x)
    out = out[-1] if isinstance(out, list) else out
    (out * out).mean().backward()
    grads = {name: p.grad.numpy() for name, p in model.named_parameters() if p.grad is not None}
    means = {name: b.numpy() for name, b in model.named_buffers() if name.endswith("_mean")}
    monkeypatch.undo()
    return out.numpy(), grads, means


@needs_kernels
@pytest.mark.parametrize("build,shape,fused_layers", [
    (lambda: MobileNetV1Enhance(scale=0.5, last_conv_stride=[1, 2], last_pool_type="avg"),
     [2, 3, 32, 64], 26),
    (lambda: MobileNetV3(scale=0.5, model_name="large", disable_se=True), [2, 3, 64, 64], 46),
])
def test_backbone_training_step_matches_paddle(monkeypatch, build, shape, fused_layers):
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal(shape).astype("float32"))
    calls = []
    original = functional._ConvBNActFunction.apply
    monkeypatch.setattr(functional._ConvBNActFunction, "apply",
                        lambda *args: calls.append(1) or original(*args))
    fused_out, fused_grads, fused_means = train_step(build, x, True, monkeypatch)
    assert len(calls) == fused_layers  # every depthwise / 1x1 conv-BN-act layer
    plain_out, plain_grads, plain_means = train_step(build, x, False, monkeypatch)
    np.testing.assert_allclose(fused_out, plain_out, rtol=1e-4, atol=1e-4)
    assert fused_grads.keys() == plain_grads.keys()
    # Float32 rounding in a deep backward: paddle's own float32 gradients differ from float64
    # ones by ~2e-5 overall (relative norm), and so do these; single small gradients that are
    # sums with cancellation (early BN weights) differ by up to ~0.3% of their own size.
    def norm(grads):
        return np.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in grads.values()))
    difference = {k: fused_grads[k] - plain_grads[k] for k in plain_grads}
    assert norm(difference) <= 2e-4 * norm(plain_grads)
    largest = max(float(np.abs(g).max()) for g in plain_grads.values())
    for name in plain_grads:
        np.testing.assert_allclose(fused_grads[name], plain_grads[name], rtol=1e-2,
                                   atol=1e-4 * largest, err_msg=name)
    for name in plain_means:
        np.testing.assert_allclose(fused_means[name], plain_means[name], rtol=1e-5, atol=1e-6)
