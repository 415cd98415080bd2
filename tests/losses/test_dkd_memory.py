"""dkd_rows (DKDLoss's per-row values as one autograd node): values and gradients against
paddle's op composition and numpy, the fall-back for a trainable teacher, the memory kept."""
import numpy as np
import paddle
import pytest

from ppdistill.losses.basic_loss import DKDLoss
from ppdistill.losses.distillation_dkd_rows import dkd_rows, dkd_rows_reference


def np_dkd_rows(zs, zt, target, alpha, beta, tau):
    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    zs, zt = zs.astype(np.float64) / tau, zt.astype(np.float64) / tau
    gt = np.eye(zs.shape[1])[target]
    ps, pt = softmax(zs), softmax(zt)
    bs = np.stack([(ps * gt).sum(1), (ps * (1 - gt)).sum(1)], 1)
    bt = np.stack([(pt * gt).sum(1), (pt * (1 - gt)).sum(1)], 1)
    tckd = (bt * (np.log(bt + 1e-10) - np.log(bs))).sum(1)
    pt2 = softmax(zt - 1000 * gt)
    x2 = zs - 1000 * gt
    log_ps2 = x2 - x2.max(1, keepdims=True)
    log_ps2 -= np.log(np.exp(log_ps2).sum(1, keepdims=True))
    nckd = (pt2 * (np.log(pt2 + 1e-10) - log_ps2)).sum(1)
    return (alpha * tckd + beta * nckd) * tau ** 2


@pytest.mark.parametrize("alpha,beta,tau", [(1.0, 2.0, 1.0), (0.5, 1.0, 2.0)])
def test_values_and_gradients_equal_the_op_composition(alpha, beta, tau):
    rng = np.random.RandomState(7)
    zs_np = (rng.randn(12, 9) * 2).astype("float32")
    zt_np = (rng.randn(12, 9) * 2).astype("float32")
    target_np = rng.randint(0, 9, size=[12])
    weights = paddle.to_tensor(rng.rand(12).astype("float32"))
    results = []
    for fn in (dkd_rows, dkd_rows_reference):
        zs = paddle.to_tensor(zs_np, stop_gradient=False)
        rows = fn(zs, paddle.to_tensor(zt_np), paddle.to_tensor(target_np), alpha, beta, tau)
        (rows * weights).sum().backward()
        results.append((rows.numpy(), zs.grad.numpy()))
    (fused_rows, fused_grad), (ref_rows, ref_grad) = results
    np.testing.assert_array_equal(fused_rows, ref_rows)  # the same ops in the forward
    np.testing.assert_allclose(fused_rows, np_dkd_rows(zs_np, zt_np, target_np, alpha, beta, tau),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused_grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_gradient_matches_finite_differences():
    rng = np.random.RandomState(2)
    zs_np = rng.randn(3, 5)
    zt_np = rng.randn(3, 5).astype("float32")
    target_np = np.array([0, 3, 4])
    zs = paddle.to_tensor(zs_np.astype("float32"), stop_gradient=False)
    dkd_rows(zs, paddle.to_tensor(zt_np), paddle.to_tensor(target_np), 1.0, 2.0, 1.5) \
        .sum().backward()
    numeric = np.zeros_like(zs_np)
    for index in np.ndindex(*zs_np.shape):
        step = np.zeros_like(zs_np)
        step[index] = 1e-6
        numeric[index] = (np_dkd_rows(zs_np + step, zt_np, target_np, 1.0, 2.0, 1.5).sum()
                          - np_dkd_rows(zs_np - step, zt_np, target_np, 1.0, 2.0, 1.5).sum()) / 2e-6
    np.testing.assert_allclose(zs.grad.numpy(), numeric, rtol=1e-3, atol=1e-5)


def test_dkd_loss_with_mask_and_a_trainable_teacher():
    rng = np.random.RandomState(5)
    zs_np, zt_np = rng.randn(2, 4, 6).astype("float32"), rng.randn(2, 4, 6).astype("float32")
    target = paddle.to_tensor(rng.randint(0, 6, size=[2, 4]))
    mask = paddle.to_tensor(np.array([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=bool))
    rows = np_dkd_rows(zs_np.reshape(8, 6), zt_np.reshape(8, 6), target.numpy().reshape(-1),
                       1.0, 2.0, 1.0)
    student = paddle.to_tensor(zs_np, stop_gradient=False)
    teacher = paddle.to_tensor(zt_np, stop_gradient=False)  # e.g. two students: paddle's ops
    loss = DKDLoss(alpha=1.0, beta=2.0)(student, teacher, target, mask)
    assert float(loss) == pytest.approx(rows[mask.numpy().reshape(-1)].mean(), rel=1e-5)
    loss.backward()
    assert student.grad is not None and teacher.grad is not None


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="host allocator statistics (CPU)")
def test_keeps_only_its_inputs():
    core = paddle.base.core if hasattr(paddle, "base") else paddle.fluid.core
    if not hasattr(core, "host_memory_stat_current_value"):
        pytest.skip("this paddle has no host memory statistics")
    rng = np.random.RandomState(1)
    zs_np, zt_np = rng.randn(256, 661).astype("float32"), rng.randn(256, 661).astype("float32")
    target_np = rng.randint(0, 661, size=[256])
    kept = {}
    for fn in (dkd_rows, dkd_rows_reference):
        zs = paddle.to_tensor(zs_np, stop_gradient=False)
        zt, target = paddle.to_tensor(zt_np), paddle.to_tensor(target_np)
        before = core.host_memory_stat_current_value("Allocated", 0)
        rows = fn(zs, zt, target, 1.0, 2.0, 1.0)
        kept[fn] = core.host_memory_stat_current_value("Allocated", 0) - before
        del rows
    # paddle's ops keep ~6 [N, C] tensors for backward; the fused node keeps only its inputs
    assert kept[dkd_rows_reference] >= 4 * zs_np.nbytes
    assert kept[dkd_rows] < zs_np.nbytes // 4
