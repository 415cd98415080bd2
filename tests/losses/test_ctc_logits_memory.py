"""time_mean_softmax (the CTC-logit losses' time-averaged softmax kept as one autograd node):
values and gradients against numpy / paddle's op composition, and the memory it keeps."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from ppdistill.losses.distillation_ctc_logits_loss import DistillCTCLogits, KLCTCLogits
from ppdistill.losses.rec_time_mean_softmax import time_mean_softmax


def np_time_mean(z, tau, flip):
    z = z.astype(np.float64).copy()
    if flip:
        z[..., 0] *= -1
    z = z / tau
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).mean(1)


def np_time_mean_grad(z, tau, flip, g):
    """d(sum(g * p))/dz of p = mean_t softmax(sign * z / tau), in float64."""
    sign = np.ones(z.shape[-1])
    if flip:
        sign[0] = -1.0
    y = z.astype(np.float64) * sign / tau
    s = np.exp(y - y.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    gt = g[:, None, :] / z.shape[1]
    return s * (gt - (s * gt).sum(-1, keepdims=True)) / tau * sign


def paddle_ops_time_mean(z, tau, flip):
    """The unfused composition (what KLCTCLogits ran before)."""
    if flip:
        signs = paddle.concat([paddle.full([1], -1.0), paddle.ones([z.shape[-1] - 1])])
        z = z * signs
    return F.softmax(z / tau, axis=-1).mean(axis=1)


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("chunk_bytes", [1, 2 * 7 * 11 * 4, 1 << 30])  # 1, 2, all samples
def test_values_and_gradients_match_numpy(flip, chunk_bytes):
    rng = np.random.RandomState(3)
    z_np = (rng.randn(5, 7, 11) * 3).astype("float32")
    g_np = rng.randn(5, 11).astype("float32")
    z = paddle.to_tensor(z_np, stop_gradient=False)
    p = time_mean_softmax(z, 0.5, flip_blank=flip, chunk_bytes=chunk_bytes)
    assert p.shape == [5, 11]
    np.testing.assert_allclose(p.numpy(), np_time_mean(z_np, 0.5, flip), rtol=2e-6, atol=1e-7)
    (p * paddle.to_tensor(g_np)).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), np_time_mean_grad(z_np, 0.5, flip, g_np),
                               rtol=1e-4, atol=2e-7)


def test_equals_paddle_op_composition_through_the_kl_loss():
    rng = np.random.RandomState(0)
    s_np = (rng.randn(6, 9, 17) * 2).astype("float32")
    t_np = (rng.randn(6, 9, 17) * 2).astype("float32")
    grads, values = [], []
    for fused in (True, False):
        s = paddle.to_tensor(s_np, stop_gradient=False)
        t = paddle.to_tensor(t_np)
        if fused:
            p_s = time_mean_softmax(s, 0.5, flip_blank=True, chunk_bytes=4 * 9 * 17 * 4)
            p_t = time_mean_softmax(t, 0.5, flip_blank=True, chunk_bytes=4 * 9 * 17 * 4)
        else:
            p_s, p_t = paddle_ops_time_mean(s, 0.5, True), paddle_ops_time_mean(t, 0.5, True)
        loss = (p_t * paddle.log((p_t + 1e-6) / (p_s + 1e-6) + 1e-6)).sum(-1).mean()
        loss.backward()
        values.append(float(loss))
        grads.append(s.grad.numpy())
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-9)


def test_kl_ctc_logits_known_value_and_teacher_without_gradient():
    # the value of KLCTCLogits(mode=mean) for these cos/sin-built logits (numpy float64)
    b, t, c = 3, 5, 8
    idx = np.arange(b * t * c, dtype=np.float64).reshape(b, t, c)
    s_np, t_np = np.cos(idx * 0.37) * 2, np.sin(idx * 0.11) * 3
    ref = np.mean((lambda ps, pt: (pt * np.log((pt + 1e-6) / (ps + 1e-6) + 1e-6)).sum(-1))(
        np_time_mean(s_np, 0.5, True), np_time_mean(t_np, 0.5, True)))
    student = paddle.to_tensor(s_np.astype("float32"), stop_gradient=False)
    teacher = paddle.to_tensor(t_np.astype("float32"))
    loss = DistillCTCLogits(model_name_pairs=[["Student", "Teacher"]], key="head_out")(
        {"Student": {"head_out": {"ctc": student}}, "Teacher": {"head_out": {"ctc": teacher}}})
    assert float(loss["loss"]) == pytest.approx(ref, rel=1e-5)
    assert float(KLCTCLogits(mode="meanlog")(student, teacher)) > 0.0
    loss["loss"].backward()
    assert student.grad is not None and teacher.grad is None
    assert np.isfinite(student.grad.numpy()).all()


def _host_allocated():
    core = paddle.base.core if hasattr(paddle, "base") else paddle.fluid.core
    if not hasattr(core, "host_memory_stat_current_value"):
        pytest.skip("this paddle has no host memory statistics")
    return core, lambda: core.host_memory_stat_current_value("Allocated", 0)


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="host allocator statistics (CPU)")
def test_keeps_only_the_logits_and_bounds_the_peak():
    core, allocated = _host_allocated()
    can_reset_peak = hasattr(core, "host_memory_stat_reset_peak_value")  # not in paddle 2.6
    rng = np.random.RandomState(1)
    z_np = rng.randn(16, 40, 661).astype("float32")  # 1.7 MB of logits
    logit_bytes = z_np.nbytes
    kept, peaks = {}, {}
    for fused in (True, False):
        z = paddle.to_tensor(z_np, stop_gradient=False)
        before = allocated()
        if can_reset_peak:
            core.host_memory_stat_reset_peak_value("Allocated", 0)
        if fused:
            p = time_mean_softmax(z, 0.5, flip_blank=True, chunk_bytes=logit_bytes // 8)
        else:
            p = paddle_ops_time_mean(z, 0.5, True)
        kept[fused] = allocated() - before
        if can_reset_peak:
            peaks[fused] = core.host_memory_stat_peak_value("Allocated", 0) - before
        del p
    # unfused: the [16, 40, 661] softmax stays for backward; fused: only the [16, 661] result
    assert kept[False] >= logit_bytes
    assert kept[True] < logit_bytes // 8
    if can_reset_peak:
        assert peaks[True] < peaks[False] / 2
