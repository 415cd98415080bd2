"""ppdistill: PaddlePaddle-native knowledge distillation for OCR."""
__version__ = "0.1.0"
