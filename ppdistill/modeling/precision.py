"""Low-precision forward of frozen sub-models (``Architecture.Models.<name>.precision``).

A frozen teacher is only run forward, so it can run in bfloat16 / float16 while the students
train in float32. The key takes ``fp32`` (the default), ``bf16`` or ``fp16``; it is accepted
only on ``freeze_params: true`` sub-models (trained ones follow ``Global.use_amp``). The
teacher's outputs are cast back to float32, so losses and students always see float32.

Where it applies (:func:`resolve_precision`, decided once when training is set up):

- **GPU:** the frozen sub-model's forward runs under ``paddle.amp.auto_cast(level="O1",
  dtype=...)`` (convolutions and matmuls in the low precision, numerically sensitive ops in
  float32). ``bf16`` needs a GPU that supports it (``paddle.amp.is_bfloat16_supported``).
- **CPU, bf16:** paddle's dygraph runs no bfloat16 here. Measured with paddle 3.3.1 on an AMD
  EPYC with AVX512_BF16: ``auto_cast`` is ignored on the CPU, and the dygraph CPU kernels of
  conv2d, matmul, batch_norm, relu, sigmoid, add and pool2d are registered for float32/float64
  only (``FLAGS_use_mkldnn`` does not change that). oneDNN's bfloat16 kernels are reachable
  through ``paddle.inference``, so on a CPU with AVX512_BF16 or AMX-BF16 and a paddle built
  with oneDNN, the frozen sub-model's training-time forward runs as an exported program there
  (:class:`~ppdistill.modeling.onednn_runner.OneDNNBf16Runner`). Elsewhere (no such CPU, fp16
  on the CPU) the request falls back to float32 with one warning that names the reason.

A teacher given as an exported model (``inference_model:``) takes the same key but is not
resolved here: :class:`~ppdistill.modeling.architectures.exported_model.ExportedModel` opens a
oneDNN bfloat16 ``paddle.inference`` predictor of the export itself when it is built (same CPU
check, :func:`_cpu_bf16_reason`), and warns and keeps float32 where that cannot run (an
``.onnx`` teacher: onnxruntime's CPU execution provider has no general bfloat16).

The default stays ``fp32``: bfloat16 changes the teacher's outputs (8 bits of mantissa), so
the students' losses are no longer those of the float32 run (``benchmark/RESULTS.md`` has the
measured speed-up and differences).

YAML::

    Architecture:
      name: DistillationModel
      Models:
        Teacher:
          freeze_params: true
          precision: bf16        # fp32 (default) | bf16 | fp16
          ...
"""
import logging

import paddle

from ppdistill.registry import ConfigError, suggest

__all__ = ["PRECISIONS", "parse_precision", "resolve_precision", "low_precision_forward",
           "to_float32", "apply_precisions"]

#: config value -> paddle dtype name (None: float32, nothing changes)
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
logger = logging.getLogger("ppdistill")
_PROBES = {}


def parse_precision(value, path, frozen):
    """The validated ``precision`` value of a sub-model config (``fp32`` when absent).

    Raises ConfigError naming ``path`` for an unknown value, or for a low precision on a
    sub-model that is trained (``frozen`` False)."""
    if value is None:
        return "fp32"
    key = str(value).strip().lower()
    if key not in PRECISIONS:
        raise ConfigError(f"{path}: unknown precision {value!r}{suggest(key, PRECISIONS)} "
                          f"(one of: {', '.join(PRECISIONS)})")
    if key != "fp32" and not frozen:
        raise ConfigError(f"{path}: precision {key} applies only to a frozen sub-model "
                          f"(freeze_params: true); a trained sub-model follows Global.use_amp")
    return key


def _cpu_kernel_probe(dtype):
    """None when paddle's CPU runs a conv2d in ``dtype``, else the reason it does not."""
    if dtype not in _PROBES:
        try:
            with paddle.no_grad():
                x = paddle.ones([1, 1, 3, 3], dtype="float32").astype(dtype)
                paddle.nn.functional.conv2d(x, x)
            _PROBES[dtype] = None
        except Exception as exc:  # noqa: BLE001 - the reason is reported, fp32 is used
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _PROBES[dtype] = f"paddle {paddle.__version__}'s CPU build has no {dtype} conv2d " \
                             f"kernel ({first[:160]})"
    return _PROBES[dtype]


def _cpu_bf16_reason():
    """None when the oneDNN bfloat16 path can run here, else why not."""
    from ppdistill.modeling.onednn_runner import cpu_has_bf16, onednn_available
    if not cpu_has_bf16():
        return "this CPU has no AVX512_BF16 / AMX-BF16"
    if not onednn_available():
        return "this paddle build has no oneDNN"
    return None


def resolve_precision(precision, device=None):
    """``(dtype or None, note)``: the dtype a frozen sub-model configured with ``precision``
    runs in on ``device`` (default: paddle's current device), None meaning float32, and a
    note saying why (see the module docstring)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return None, "fp32"
    device = device or paddle.get_device()
    if device.startswith("gpu"):
        if dtype == "bfloat16":
            check = getattr(paddle.amp, "is_bfloat16_supported", None)
            if check is not None and not check():
                return None, "this GPU does not support bfloat16: float32 is used"
        return dtype, f"{precision} via paddle.amp.auto_cast on {device}"
    if dtype == "bfloat16":
        why_not = _cpu_bf16_reason()
        if why_not is None:
            return dtype, "bf16 through paddle.inference + oneDNN (CPU with AVX512_BF16/AMX)"
        return None, f"{why_not}: float32 is used"
    reason = _cpu_kernel_probe(dtype)
    if reason is None:
        # kernels exist, but paddle's CPU build ignores auto_cast: nothing would run in dtype
        return None, (f"paddle's CPU build ignores auto_cast, so {precision} cannot be applied "
                      f"on {device}: float32 is used")
    return None, f"{reason}: float32 is used"


def to_float32(value):
    """``value`` (a tensor, or dicts/lists/tuples of them) with every floating tensor not in
    float32 cast to float32; other values unchanged."""
    if isinstance(value, paddle.Tensor):
        if paddle.is_floating_point(value) and value.dtype != paddle.float32:
            return value.astype("float32")
        return value
    if isinstance(value, dict):
        return {key: to_float32(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(item) for item in value)
    return value


RUNNER_ATTR = "_ppdistill_bf16_runner"


def low_precision_forward(model, x, data=None, dtype=None):
    """``model(x, data)`` with its conv/matmul work in ``dtype`` and every floating output cast
    back to float32; ``dtype`` None: a plain call. A model given a oneDNN runner by
    :func:`apply_precisions` (CPU bf16) runs through it (float32 dygraph when it cannot);
    otherwise ``paddle.amp.auto_cast`` (level O1) is used (GPU)."""
    if dtype is None:
        return model(x, data)
    runner = getattr(model, RUNNER_ATTR, None)
    if runner is not None:
        out = runner(x, data)
        return out if out is not None else model(x, data)
    with paddle.amp.auto_cast(enable=True, level="O1", dtype=dtype):
        out = model(x, data)
    return to_float32(out)


def apply_precisions(model, logger=None, device=None):
    """Resolve the ``precision`` of each frozen sub-model of a DistillationModel for ``device``
    and set what its forward runs in (``model.run_dtypes``); logs one line per sub-model that
    asked for a low precision. Returns ``{name: dtype or None}``. Called by
    ``ppdistill.engine.setup.prepare_for_training``; without it every sub-model runs float32."""
    log = logger or globals()["logger"]
    chosen = {}
    for name, precision in sorted(getattr(model, "precisions", {}).items()):
        dtype, note = resolve_precision(precision, device)
        model.run_dtypes[name] = dtype
        on_cpu = not (device or paddle.get_device()).startswith("gpu")
        if dtype == "bfloat16" and on_cpu:
            from ppdistill.modeling.onednn_runner import OneDNNBf16Runner
            sub = getattr(model, name)
            setattr(sub, RUNNER_ATTR, OneDNNBf16Runner(sub, f"Architecture.Models.{name}"))
        chosen[name] = dtype
        if precision != "fp32":
            if dtype is None:
                log.warning(f"Architecture.Models.{name}.precision: {precision} requested; {note}")
            else:
                log.info(f"Architecture.Models.{name}.precision: {note}")
    return chosen
