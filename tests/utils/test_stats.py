"""The training log line: medians over a window, PaddleOCR's order, no always-zero columns."""
from ppdistill.utils.stats import TrainingStats


def test_log_line_order_and_medians():
    stats = TrainingStats(3)
    for step in range(4):
        stats.update({"lr": 0.001, "loss_shrink": float(step), "loss": 2.0 * step})
    assert stats.get()["loss_shrink"] == 2.0  # median of the last 3: 1, 2, 3
    assert stats.log() == "lr: 0.001000, loss_shrink: 2.00000, loss: 4.00000"


def test_a_term_that_was_always_zero_is_not_logged_but_kept():
    stats = TrainingStats(5)
    stats.update({"lr": 0.001, "loss_cbn": 0.0, "loss_shrink": 1.0, "loss": 1.0})
    stats.update({"lr": 0.001, "loss_cbn": 0.0, "loss_shrink": 0.5, "loss": 0.5})
    assert "loss_cbn" not in stats.log()
    assert stats.get()["loss_cbn"] == 0.0
    stats.update({"lr": 0.001, "loss_cbn": 0.2, "loss_shrink": 0.5, "loss": 0.7})
    assert "loss_cbn: 0.00000" in stats.log()  # median of 0, 0, 0.2 once it has been non-zero
