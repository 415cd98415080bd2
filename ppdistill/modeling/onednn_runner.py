"""A frozen sub-model's training-time forward in bfloat16 on the CPU, through ``paddle.inference``
with oneDNN (``precision: bf16`` on a CPU with AVX512_BF16 or AMX-BF16).

paddle's dygraph CPU kernels have no bfloat16 versions (conv2d, matmul, batch_norm, ... are
float32/float64 only in paddle 3.3), so the frozen sub-model is exported once, at its first
training-mode forward (weights loaded after construction are included), with
``paddle.jit.to_static`` and run as an inference program with oneDNN's bfloat16 kernels and
paddle's IR optimisations. In eval mode the sub-model runs in dygraph float32 (its metric is
unaffected). A model that reads the labels in training (e.g. a rec MultiHead's NRTR branch)
gets them as extra program inputs. The first batch is also run in dygraph float32 and the
largest and mean difference of every output is logged. Any failure (e.g. Python control flow
on tensor values that ``paddle.jit`` cannot convert, as in the PP-OCRv4 rec teacher with
paddle 3.3; a paddle without oneDNN) logs one warning and keeps the dygraph float32 forward.

paddle 3.3's oneDNN executor cannot run ``interpolate`` with a ``scale_factor`` attribute
(``ConvertPirAttribute2RuntimeAttribute``), so during the export a nearest-neighbour upsampling
by an integer factor is written as two ``repeat_interleave`` ops (the same values;
:func:`ppdistill.infer.onednn.onednn_runnable_upsampling`, as in ``tools/export_model.py``).

A teacher given as an exported model (``inference_model:`` + ``precision: bf16``) is run by
:class:`Bf16ExportRunner`, opened by :func:`open_bf16_export`: the export as it is, with every
op oneDNN has in bfloat16, else with smaller op sets (:data:`BF16_OP_SETS`), each checked on a
probe batch against float32. paddle 3.3 cannot run a ``.json`` (PIR) program with a
scale-factor ``interpolate`` under oneDNN at all (no op set avoids it): that is reported.
"""
import atexit
import copy
import logging
import shutil
import tempfile

import numpy as np
import paddle
from paddle import nn

from ppdistill.infer.onednn import (PIR_ATTRIBUTE_ERROR, onednn_available,  # noqa: F401
                                    onednn_runnable_upsampling)

__all__ = ["OneDNNBf16Runner", "Bf16ExportRunner", "open_bf16_export", "cpu_has_bf16",
           "onednn_available", "onednn_bf16_config"]

logger = logging.getLogger("ppdistill")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_MAX_DATA = 8  # data tensors an exported sub-model may take besides the image


def cpu_has_bf16(flags=None):
    """Whether the CPU has bfloat16 arithmetic (AVX512_BF16 or AMX-BF16)."""
    if flags is None:
        from ppdistill.utils.cpu import cpu_info
        flags = cpu_info()["flags"]
    return any(flag in flags for flag in BF16_FLAGS)


def _flatten(value, out):
    """Leaves of ``value`` (tensors, or static-graph values while exporting, in dicts/lists/
    tuples) appended to ``out``; returns the structure to rebuild it with :func:`_rebuild`."""
    if isinstance(value, dict):
        return ("dict", [(key, _flatten(item, out)) for key, item in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_flatten(item, out) for item in value])
    out.append(value)
    return None


def _rebuild(spec, tensors):
    if spec is None:
        return next(tensors)
    kind, items = spec
    if kind == "dict":
        return {key: _rebuild(item, tensors) for key, item in items}
    values = [_rebuild(item, tensors) for item in items]
    return tuple(values) if kind == "tuple" else values


class _Flat(nn.Layer):
    """The sub-model with its output flattened to a list of tensors (for the export); ``data``
    tensors (the batch after the image) are inputs too when the model needs them."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    # explicit arguments: paddle.jit.to_static does not map an input_spec onto *args
    def forward(self, x, d0=None, d1=None, d2=None, d3=None, d4=None, d5=None, d6=None,
                d7=None):
        data = [d for d in (d0, d1, d2, d3, d4, d5, d6, d7) if d is not None]
        out = []
        _flatten(self.inner(x, data) if data else self.inner(x), out)
        # one dummy output per data input, so an input the model does not read still belongs
        # to the program (paddle.jit.save refuses unused inputs); dropped after each run
        return out + [paddle.sum(d.astype("float32")) * 0.0 for d in data]


def onednn_bf16_config(model_file, params_file, threads, bf16_ops=None):
    """A ``paddle.inference.Config`` for the CPU with oneDNN, its bfloat16 placement (all ops
    oneDNN has in bfloat16, or only ``bf16_ops``) and paddle's IR optimisations."""
    from paddle import inference
    config = inference.Config(model_file, params_file)
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(int(threads))
    config.enable_mkldnn()
    config.enable_mkldnn_bfloat16()
    if bf16_ops:
        config.set_bfloat16_op(set(bf16_ops))
    config.switch_ir_optim(True)
    if hasattr(config, "disable_glog_info"):
        config.disable_glog_info()
    return config


class OneDNNBf16Runner:
    """Runs ``model``'s training-mode forward as a oneDNN bfloat16 inference program.

    ``runner(x, data)`` returns the sub-model's output (float32 tensors, the dygraph layout),
    or None when the program is unavailable (then the caller runs the dygraph forward).
    Attached to a frozen sub-model by :func:`ppdistill.modeling.precision.apply_precisions`
    (YAML: ``precision: bf16`` on a CPU with AVX512_BF16/AMX-BF16); ``threads`` defaults to
    :func:`ppdistill.utils.cpu.kernel_threads`.
    """

    def __init__(self, model, name="sub-model", threads=None):
        self.model = model
        self.name = name
        self.threads = threads
        self.failed = None
        self._predictor = None
        self._spec = None
        self._dir = None
        self._data_inputs = []
        self._n_outputs = 0

    def __deepcopy__(self, memo):
        """A copy of the model gets its own runner (built again at its first forward)."""
        return OneDNNBf16Runner(copy.deepcopy(self.model, memo), self.name, self.threads)

    def _reference(self, x, data):
        """The float32 output of the first batch, and the data tensors the export takes: none
        when the model runs on the image alone (e.g. a DB head), else the batch after the
        image (e.g. a rec MultiHead, whose NRTR/SAR branch reads the labels in training)."""
        with paddle.no_grad():
            try:
                return self.model(x), []
            except Exception:  # noqa: BLE001 - retried with the labels
                if not data or len(data) > _MAX_DATA or not all(
                        isinstance(t, paddle.Tensor) for t in data):
                    raise
                return self.model(x, list(data)), list(data)

    def _build(self, x, data):
        reference, self._data_inputs = self._reference(x, data)
        flat = []
        self._spec = _flatten(reference, flat)
        self._dir = tempfile.mkdtemp(prefix="ppdistill_bf16_")
        atexit.register(shutil.rmtree, self._dir, True)
        spec = [paddle.static.InputSpec([None] + list(x.shape[1:2]) + [None, None], "float32",
                                        name="x")]
        spec += [paddle.static.InputSpec([None] + list(t.shape[1:]), t.dtype, name=f"data_{i}")
                 for i, t in enumerate(self._data_inputs)]
        with onednn_runnable_upsampling():
            static = paddle.jit.to_static(_Flat(self.model), input_spec=spec, full_graph=True)
            paddle.jit.save(static, f"{self._dir}/inference")
        from paddle import inference
        from ppdistill.infer.predictor import find_model_files
        from ppdistill.utils.cpu import kernel_threads
        model_file, params_file = find_model_files(self._dir)
        config = onednn_bf16_config(model_file, params_file, self.threads or kernel_threads())
        self._predictor = inference.create_predictor(config)
        self._n_outputs = len(flat)
        outputs = self._run(x, self._data_inputs)
        if len(outputs) != len(flat) or any(list(a.shape) != list(b.shape)
                                             for a, b in zip(outputs, flat)):
            raise RuntimeError("the exported program's outputs do not match the model's")
        diffs = [np.abs(a - b.numpy()) if a.size else np.zeros(1) for a, b in zip(outputs, flat)]
        logger.info(f"{self.name}: forward in bfloat16 through paddle.inference + oneDNN; first "
                    f"batch vs float32, |diff| per output: " + ", ".join(
                        f"max {d.max():.3g} mean {d.mean():.3g}" for d in diffs))
        return outputs

    def _run(self, x, data):
        feeds = {"x": x}
        feeds.update({f"data_{i}": t for i, t in enumerate(data[:len(self._data_inputs)])})
        names = self._predictor.get_input_names()
        if not set(names) <= set(feeds):  # inputs renamed by the export: by position
            feeds = dict(zip(names, [x] + list(data)))
        for name in names:
            handle = self._predictor.get_input_handle(name)
            value = feeds[name].numpy()
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(np.ascontiguousarray(value))
        self._predictor.run()
        names = self._predictor.get_output_names()[:self._n_outputs]
        return [self._predictor.get_output_handle(name).copy_to_cpu() for name in names]

    def __call__(self, x, data=None):
        if self.failed or not self.model.training:
            return None
        try:
            if self._predictor is None:
                arrays = self._build(x, data)
            else:
                arrays = self._run(x, list(data or [])[:len(self._data_inputs)])
        except Exception as exc:  # noqa: BLE001 - reported once, dygraph float32 is used
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            # dy2static errors start with "In transformed code:" and end with the cause
            what = " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""
            self.failed = f"{type(exc).__name__}: {what[:300]}"
            logger.warning(f"{self.name}: bfloat16 forward through paddle.inference + oneDNN "
                           f"unavailable ({self.failed}); it runs in float32")
            return None
        tensors = iter([paddle.to_tensor(a.astype("float32", copy=False)) for a in arrays])
        return _rebuild(self._spec, tensors)


# --------------------------------------------------------------- a teacher given as an export
#: bfloat16 op sets tried in turn on an exported Paddle model: every op oneDNN has in bfloat16
#: (None); then the ops measured to run together on the released PP-OCRv4 mobile det .pdmodel
#: (with paddle 3.3 the full placement hands one of its elementwise_mul ops a bfloat16 input it
#: cannot take, and bfloat16 elementwise_add/pool2d/elementwise_mul end in a dequantize op
#: without a kernel); then the convolutions alone
BF16_OP_SETS = (None,
                ("conv2d", "depthwise_conv2d", "fused_conv2d", "conv2d_transpose", "batch_norm",
                 "relu", "hard_swish", "hard_sigmoid", "sigmoid", "nearest_interp_v2", "concat"),
                ("conv2d", "fused_conv2d"))
#: a probe output further than this from float32 means a broken program, not bfloat16 rounding
BF16_SANITY_LIMIT = 0.5


class Bf16ExportRunner:
    """An exported Paddle model (``inference.pdmodel`` or ``inference.json``, with
    ``inference.pdiparams``) run by ``paddle.inference`` with oneDNN's bfloat16 kernels and IR
    optimisations on the CPU: ``runner(images) -> list of float32 arrays``, the interface of
    :class:`ppdistill.infer.predictor.InferenceModel`. ``bf16_ops``: the op types placed in
    bfloat16 (None: every op oneDNN has in bfloat16).

    Opened by :func:`open_bf16_export` for a teacher given as an exported model with
    ``precision: bf16`` (YAML, on ``Architecture.Models.Teacher``)::

        Teacher:
          inference_model: ./pretrain_models/ch_PP-OCRv4_rec_infer
          model_type: rec
          precision: bf16
    """

    def __init__(self, model_dir, threads=1, bf16_ops=None):
        from paddle import inference
        from ppdistill.infer.predictor import find_model_files
        model_file, params_file = find_model_files(model_dir)
        self.model_file = model_file
        self.bf16_ops = tuple(bf16_ops) if bf16_ops else None
        self.device = "cpu"
        config = onednn_bf16_config(model_file, params_file, threads, bf16_ops)
        self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.outputs = [self.predictor.get_output_handle(name)
                        for name in self.predictor.get_output_names()]

    def __call__(self, images):
        images = np.ascontiguousarray(images, dtype="float32")
        self.input.reshape(list(images.shape))
        self.input.copy_from_cpu(images)
        self.predictor.run()
        return [out.copy_to_cpu().astype("float32", copy=False) for out in self.outputs]


def error_summary(exc):
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # paddle's errors: the cause on the first line, "[operator < X > error]" on the last
    what = " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""
    return f"{type(exc).__name__}: {what[:200]}"


def _check_outputs(outputs, reference):
    """None when ``outputs`` match ``reference`` in number and shapes and are finite and close
    (within BF16_SANITY_LIMIT), else what is wrong."""
    if len(outputs) != len(reference):
        return f"{len(outputs)} outputs instead of {len(reference)}"
    for out, ref in zip(outputs, reference):
        if list(out.shape) != list(ref.shape):
            return f"output shape {list(out.shape)} instead of {list(ref.shape)}"
        if not np.isfinite(out).all():
            return "non-finite outputs"
        if out.size and np.abs(out - ref).max() > BF16_SANITY_LIMIT:
            return f"outputs {np.abs(out - ref).max():.3g} away from float32"
    return None


def open_bf16_export(model_dir, threads, probe, reference):
    """``(runner, note)``: a :class:`Bf16ExportRunner` of ``model_dir`` whose outputs on the
    float32 batch ``probe`` match ``reference`` (the float32 outputs) in shape, are finite and
    within BF16_SANITY_LIMIT, trying the op sets of BF16_OP_SETS in turn, and a note with the
    op set and the |diff| per output on the probe; ``(None, reason)`` when none runs."""
    problems = []
    for ops in BF16_OP_SETS:
        try:
            runner = Bf16ExportRunner(model_dir, threads, ops)
            outputs = runner(probe)
        except Exception as exc:  # noqa: BLE001 - paddle raises many types; reported, fp32 used
            if PIR_ATTRIBUTE_ERROR in str(exc):  # no op set avoids it: stop here
                return None, (f"paddle {paddle.__version__}'s oneDNN executor cannot run this "
                              f"PIR (.json) program ({PIR_ATTRIBUTE_ERROR}, e.g. an interpolate "
                              f"with a scale_factor; as a native frozen sub-model with precision: "
                              f"bf16 the same network can run in bfloat16)")
            problems.append(error_summary(exc))
            continue
        problem = _check_outputs(outputs, reference)
        if problem is None and all(np.array_equal(a, b) for a, b in zip(outputs, reference)):
            # e.g. paddle 2.6 on some exports: the op set was accepted but nothing ran in bf16
            problem = "bfloat16 had no effect (outputs equal float32 bit for bit)"
        if problem is None:
            diffs = [np.abs(a - b) if a.size else np.zeros(1) for a, b in zip(outputs, reference)]
            which = "every op oneDNN has in bfloat16" if ops is None else \
                f"bfloat16 on {', '.join(ops)}"
            return runner, (f"{which}; probe batch vs float32, |diff| per output: " + ", ".join(
                f"max {d.max():.3g} mean {d.mean():.3g}" for d in diffs))
        problems.append(problem)
    return None, ("oneDNN bfloat16 cannot run this export: "
                  + "; ".join(dict.fromkeys(problems))[:400])
