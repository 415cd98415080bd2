"""Inference with exported models (``paddle.inference``): text detection and recognition."""
