"""Memory of det CML training on CPU: what a student keeps for backward, the teacher's conv buffers.

Measured with paddle's host allocator statistics (bytes allocated by tensors), not the RSS.
"""
import paddle
import pytest

from ppdistill.modeling.architectures.base_model import BaseModel
from ppdistill.modeling.fast_conv import shifted_gemm_conv2d
from ppdistill.modeling.recompute import det_segments, enable_recompute

from test_recompute import V3_STUDENT, V4_STUDENT

core = paddle.base.core


def _allocated():
    return core.host_memory_stat_current_value("Allocated", 0)


def _kept_after_forward(config, recompute):
    """Bytes a training forward leaves allocated (saved activations + output) until backward."""
    paddle.seed(0)
    model = BaseModel(config)
    model.train()
    if recompute:
        assert enable_recompute(det_segments(model)) > 0
    x = paddle.randn([2, 3, 128, 128])
    before = _allocated()
    maps = model(x)["maps"]
    kept = _allocated() - before
    maps.sum().backward()  # the graph is complete and runs
    return kept


@pytest.mark.parametrize("config", [V3_STUDENT, V4_STUDENT], ids=["mobilenetv3", "pplcnetv3"])
def test_recomputed_student_keeps_a_fraction_of_the_activations(config):
    plain = _kept_after_forward(config, recompute=False)
    recomputed = _kept_after_forward(config, recompute=True)
    # measured: MobileNetV3 8.0 -> 1.2 MiB, PPLCNetV3 12.7 -> 2.3 MiB (maps: 0.4 MiB)
    assert plain > 4 * 2**20
    assert recomputed < 0.25 * plain


@pytest.mark.skipif(not hasattr(core, "host_memory_stat_reset_peak_value"),
                    reason="paddle < 3 cannot reset the allocator's peak statistic")
def test_chunked_shifted_gemm_peak_stays_near_the_buffer_limit():
    paddle.seed(1)
    x = paddle.randn([2, 64, 40, 40])
    weight = paddle.randn([16, 64, 9, 9])
    peaks = {}
    with paddle.no_grad():
        for limit in (2**40, 2 * 2**20):
            core.host_memory_stat_reset_peak_value("Allocated", 0)
            base = _allocated()
            shifted_gemm_conv2d(x, weight, max_buffer_bytes=limit)
            peaks[limit] = core.host_memory_stat_peak_value("Allocated", 0) - base
    # one GEMM: 2 x 48 x 48 padded pixels x 9 taps x 64 channels = 10.1 MiB of taps alone
    assert peaks[2**40] > 10 * 2**20
    # bands of the 2 MiB limit: taps + partial sums + padded copy + output stay under ~5 MiB
    assert peaks[2 * 2**20] < 5 * 2**20
