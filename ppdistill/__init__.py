"""ppdistill: PaddlePaddle-native knowledge distillation for OCR."""
# paddle 2.6's wheel and pyclipper's clash when pyclipper is loaded second (segfault in zlib's
# inflateReset2 on import); loading pyclipper first avoids it. Import ppdistill before paddle.
import pyclipper  # noqa: F401

from ppdistill.utils.cpu import prefer_mkl_avx2

prefer_mkl_avx2()  # AMD CPUs: MKL's AVX2 path (~2x faster training); see utils/cpu.py

__version__ = "0.1.0"
