"""Smoothed training statistics for the log line (median over a sliding window)."""
from collections import deque

import numpy as np


class TrainingStats:
    """Keeps the last ``window_size`` values of each logged term and reports their medians.

    The term order follows first appearance, with ``loss`` and ``lr`` printed in PaddleOCR's
    places (``lr`` first, ``loss`` after the loss terms). A term that has been exactly zero at
    every step so far (e.g. ``loss_cbn`` of a DB head without a CBN branch) is left out of the log
    line; :meth:`get` still returns it (the machine-readable log keeps every term).
    """

    def __init__(self, window_size):
        self.window_size = window_size
        self.values = {}
        self.ever_nonzero = set()

    def update(self, stats):
        for key, value in stats.items():
            value = float(value)
            self.values.setdefault(key, deque(maxlen=self.window_size)).append(value)
            if value != 0.0:
                self.ever_nonzero.add(key)

    def get(self):
        return {key: float(np.median(list(vals))) for key, vals in self.values.items()}

    def log(self):
        medians = self.get()
        parts = []
        if "lr" in medians:
            parts.append(f"lr: {medians['lr']:.6f}")
        for key, value in medians.items():
            if key not in ("lr", "loss") and key in self.ever_nonzero:
                parts.append(f"{key}: {value:.5f}")
        if "loss" in medians:
            parts.append(f"loss: {medians['loss']:.5f}")
        return ", ".join(parts)
