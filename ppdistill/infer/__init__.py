"""Inference, in one place: ``predictor`` (exported models through ``paddle.inference``),
``text_detector`` / ``text_recognizer`` (``tools/infer/predict_det.py`` / ``predict_rec.py``),
``checkpoint`` (``tools/infer_det.py`` / ``infer_rec.py`` on training checkpoints) and ``args``.

``ppdistill.infer`` uses ``ppdistill.engine`` (config, model building) and nothing in
``ppdistill.engine`` imports ``ppdistill.infer``.
"""
