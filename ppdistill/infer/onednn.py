"""oneDNN for exported models on the CPU: whether it is used, and what the export writes so that
paddle 3's oneDNN executor can run the program.

oneDNN (MKLDNN) is paddle.inference's fast CPU path: on a 2-core AMD EPYC the exported PP-OCRv4
mobile rec student runs in ~14 ms per 48×320 line with it and ~56 ms without (paddle's own
depthwise convolution is most of the difference; ``benchmark/RESULTS.md``). paddle 3.3's oneDNN
executor cannot run a ``.json`` (PIR) program holding an ``interpolate`` with a ``scale_factor``
(``ConvertPirAttribute2RuntimeAttribute not support [pir::ArrayAttribute<pir::DoubleAttribute>]``,
Paddle issue #79749, PaddleOCR issue #17869; every det neck upsamples that way), which is why
many PaddleOCR users switch oneDNN off altogether. ppdistill instead

- writes a nearest-neighbour upsampling by an integer factor as two ``repeat_interleave`` ops
  while exporting (:func:`onednn_runnable_upsampling`; the same values, and not slower without
  oneDNN), so its own exports run with oneDNN, and
- uses oneDNN by default on the CPU (:func:`onednn_default`) with a fallback to paddle's plain CPU
  kernels, and one warning, for a program oneDNN cannot run (e.g. a PaddleOCR ``.json`` det
  export): :class:`ppdistill.infer.predictor.InferenceModel`.

``PPDISTILL_ONEDNN=0`` in the environment makes the default "off" (the benchmark's baseline arm).
"""
import contextlib
import os

import paddle
import paddle.nn.functional as F

__all__ = ["PIR_ATTRIBUTE_ERROR", "ONEDNN_ENV", "ONEDNN_CACHE_CAPACITY", "onednn_available",
           "onednn_default", "onednn_runnable_upsampling"]

#: what paddle 3.3's oneDNN executor raises on a PIR attribute it cannot convert
PIR_ATTRIBUTE_ERROR = "ConvertPirAttribute2RuntimeAttribute"
#: ``0`` switches the oneDNN default off for exported models run on the CPU
ONEDNN_ENV = "PPDISTILL_ONEDNN"
#: input shapes whose oneDNN primitives stay cached per predictor (det inputs vary in size; an
#: unbounded cache grows with every new shape)
ONEDNN_CACHE_CAPACITY = 10


def onednn_available():
    """Whether this paddle build has oneDNN (MKLDNN) and ``paddle.inference``."""
    try:
        from paddle import inference  # noqa: F401
        return bool(paddle.base.core.is_compiled_with_mkldnn())
    except (ImportError, AttributeError):
        return False


def onednn_default():
    """Whether exported models run with oneDNN on the CPU when the caller does not say: yes where
    paddle has it, unless ``PPDISTILL_ONEDNN=0``."""
    return os.environ.get(ONEDNN_ENV, "").strip() != "0" and onednn_available()


@contextlib.contextmanager
def onednn_runnable_upsampling():
    """While active, ``F.interpolate(x, scale_factor=k, mode="nearest")`` with an int ``k > 1`` on
    NCHW input is computed as ``repeat_interleave`` along H then W (identical values), so that an
    exported program has no scale-factor ``interpolate`` for paddle 3.3's oneDNN to fail on.
    ``nn.Upsample`` goes through ``F.interpolate`` too. Other calls are passed on unchanged."""
    original = F.interpolate

    def interpolate(x, size=None, scale_factor=None, mode="nearest", *args, **kwargs):
        if (mode == "nearest" and size is None and not args and len(x.shape) == 4
                and kwargs.get("data_format") in (None, "NCHW")
                and isinstance(scale_factor, int) and scale_factor > 1):
            rows = paddle.repeat_interleave(x, scale_factor, axis=2)
            return paddle.repeat_interleave(rows, scale_factor, axis=3)
        return original(x, size, scale_factor, mode, *args, **kwargs)

    F.interpolate = interpolate
    try:
        yield
    finally:
        F.interpolate = original
