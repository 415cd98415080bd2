"""A teacher straight from an exported model (Paddle inference files or ``.onnx``).

An :class:`ExportedModel` is a frozen sub-model of a :class:`DistillationModel` that runs an
exported model on each batch, with no training code for its architecture. Its output has the
layout the losses expect from a native sub-model (see :class:`ExportedModel`).
"""
import copy
import logging
import os

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from ppdistill.modeling.precision import parse_precision
from ppdistill.registry import ConfigError, suggest

__all__ = ["ExportedModel", "InputAdapter", "OnnxModel", "build_exported_model"]

#: normalisation of the batches the ppdistill/PaddleOCR pipelines produce, on [0, 1] pixels
DATA_NORM = {"rec": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
             "det": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])}
#: the batch shape (C, H, W) of the start-up probe when ``input.shape`` is not given
PROBE_SHAPE = {"rec": [3, 48, 320], "det": [3, 640, 640]}
DEFAULT_OUTPUT_KEYS = {"rec": [], "det": ["maps"]}
_PROBE_BATCH = 2  # also checks that the batch dimension is free
_LOG_FLOOR = 1e-30  # probabilities are floored here before the log (float32-safe)
logger = logging.getLogger("ppdistill")

_SUB_KEYS = ("model_type", "inference_model", "character_dict_path", "use_space_char", "input",
             "output_keys", "use_gpu", "cpu_threads", "missing_characters", "freeze_params",
             "algorithm", "precision")
_INPUT_KEYS = ("shape", "resize", "mean", "std", "data_mean", "data_std")


class OnnxModel:
    """An onnxruntime session: ``model(images) -> list of output arrays`` (CPU, or CUDA when
    ``use_gpu`` and the installed onnxruntime has it). ``onnxruntime`` is optional: a clear
    ImportError names the package when it is missing. Not configured in YAML: an
    :class:`ExportedModel` whose ``inference_model`` ends in ``.onnx`` opens one."""

    def __init__(self, path, use_gpu=False, cpu_threads=1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("the 'onnxruntime' package is needed to run an .onnx teacher: "
                              "pip install onnxruntime (or pip install 'ppdistill[onnx]')"
                              ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(cpu_threads)
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if use_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.device = "gpu" if providers[0].startswith("CUDA") else "cpu"

    def __call__(self, images):
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images)})


def open_runner(path, use_gpu=False, cpu_threads=1):
    """An ``.onnx`` file -> :class:`OnnxModel`; a Paddle export (its directory, or its
    ``inference.json``/``.pdmodel`` file) -> :class:`ppdistill.infer.predictor.InferenceModel`."""
    if str(path).endswith(".onnx"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: ONNX file not found")
        return OnnxModel(path, use_gpu=use_gpu, cpu_threads=cpu_threads)
    from ppdistill.infer.predictor import InferenceModel
    model_dir = os.path.dirname(path) if os.path.isfile(path) else path
    return InferenceModel(model_dir, use_gpu=use_gpu, cpu_threads=cpu_threads)


class InputAdapter(nn.Layer):
    """Turn the training batch into the input the exported model expects.

    Args:
        shape: ``[C, H, W]`` of the batches the teacher receives (used by the start-up probe).
        resize: ``[H, W]`` the teacher takes (bilinear); ``W = -1`` scales the width with the
            height (keeps the aspect ratio), ``H = -1`` likewise. None: no resizing.
        mean, std: the teacher's normalisation ``(pixel/255 - mean) / std``. None: the batch is
            passed with its own normalisation.
        data_mean, data_std: the batch's normalisation (default for rec ``0.5/0.5``, for det
            ImageNet's), undone before ``mean``/``std`` are applied.

    YAML (a key of the teacher sub-model)::

        input:
          shape: [3, 32, 320]      # the student's batches
          resize: [48, -1]         # the teacher was trained on height 48
          mean: [0.485, 0.456, 0.406]
          std: [0.229, 0.224, 0.225]
    """

    def __init__(self, shape, resize=None, mean=None, std=None, data_mean=None, data_std=None):
        super().__init__()
        self.shape = [int(v) for v in shape]
        self.resize = [int(v) for v in resize] if resize else None
        self.renorm = None
        if mean is not None or std is not None:
            mean = [float(v) for v in (mean if mean is not None else [0.0] * 3)]
            std = [float(v) for v in (std if std is not None else [1.0] * 3)]
            # x_teacher = (x * data_std + data_mean - mean) / std = x * scale + shift
            scale = [ds / s for ds, s in zip(data_std, std)]
            shift = [(dm - m) / s for dm, m, s in zip(data_mean, mean, std)]
            self.renorm = (np.array(scale, "float32").reshape([1, -1, 1, 1]),
                           np.array(shift, "float32").reshape([1, -1, 1, 1]))

    def target_size(self, height, width):
        """``(H, W)`` fed to the teacher for a batch of ``height x width``."""
        if not self.resize:
            return height, width
        h, w = self.resize
        if h <= 0 and w <= 0:
            return height, width
        if w <= 0:
            w = max(1, int(round(width * h / float(height))))
        if h <= 0:
            h = max(1, int(round(height * w / float(width))))
        return h, w

    def forward(self, x):
        if self.renorm is not None:
            x = x * paddle.to_tensor(self.renorm[0]) + paddle.to_tensor(self.renorm[1])
        size = self.target_size(x.shape[2], x.shape[3])
        if list(size) != [x.shape[2], x.shape[3]]:
            x = F.interpolate(x, size=list(size), mode="bilinear", align_corners=False)
        return x


class ExportedModel(nn.Layer):
    """A frozen teacher that runs an exported model on each batch (``paddle.inference`` for a
    Paddle export, onnxruntime for an ``.onnx`` file), with no training code for its
    architecture. Frozen by construction: no parameters, no gradient.

    Output (the layout a native sub-model gives the losses):

    - ``det``: ``{"maps": [N, 1, H, W]}``, the teacher's probability map at the batch's size
      (resized back when ``input.resize`` changed it). Loss selections ``key: maps``,
      ``key: null`` and ``maps_name: thrink_maps`` work; threshold/binary maps do not exist.
    - ``rec``: the CTC distribution ``[N, T, C]``. Released rec exports output softmax
      probabilities ``p``; in training mode the model returns ``log p`` as its *logits*, so that
      every softmax-based loss (DML, KL, DKD, CTC-logits) sees exactly ``softmax(log p) = p``
      (``log p`` differs from the teacher's true logits by a per-row constant, so a temperature
      ``softmax(log p / T)`` is also exactly the teacher's; probabilities are floored at 1e-30
      before the log). In eval mode it returns ``p``, as a native CTC head does. An export that
      outputs logits (rows not summing to 1, detected at start-up) is softmaxed first.
      With a ``student_characters`` dictionary different from the teacher's the distribution is
      mapped onto the student's classes (:class:`ppdistill.losses.dict_mapping.ClassMapping`).
    - ``output_keys`` nests the result: ``[head_out, ctc]`` gives ``{"head_out": {"ctc": X}}``
      for losses configured with ``key: head_out, multi_head: true, dis_head: ctc``. A loss
      whose selection does not lead to this output, in particular a feature-level loss
      (``backbone_out``, ``neck_out``), fails at start-up (:func:`check_exported_losses`).

    At construction a probe batch of ``input.shape`` runs through the model, so a shape, a
    dictionary size or an output it cannot give fails at start-up, not mid-epoch.

    ``precision: bf16`` (training-mode forward only; eval mode and the probe stay float32): a
    Paddle export on a CPU with AVX512_BF16/AMX-BF16 also opens a ``paddle.inference`` predictor
    with oneDNN's bfloat16 kernels (:func:`ppdistill.modeling.onednn_runner.open_bf16_export`:
    every bfloat16 op first, then smaller op sets when the program cannot run them), checked
    against float32 on a seeded probe batch, and logs the difference. Where that is not possible
    (no such CPU, a paddle without oneDNN, a program the oneDNN executor cannot run, an ``.onnx``
    teacher: onnxruntime's CPU execution provider has no general bfloat16, a GPU, ``fp16`` on
    the CPU) one warning says why and the teacher runs in float32; a bfloat16 failure later in
    training also falls back to float32 with one warning.

    Args:
        inference_model: an ``.onnx`` file, or a Paddle export directory (``inference.json`` or
            ``inference.pdmodel`` + ``inference.pdiparams``) or one of its model files.
        model_type: ``rec`` or ``det``.
        character_dict_path, use_space_char: the teacher's own dictionary (rec).
        input: an :class:`InputAdapter` or its arguments as a dict.
        output_keys: list of keys nesting the output (default rec ``[]``, det ``[maps]``).
        use_gpu: run on the GPU when available; cpu_threads: CPU threads of the runtime.
        missing_characters: ``blank`` or ``renormalize`` (cross-dictionary, see ClassMapping).
        precision: ``fp32`` (default) or ``bf16`` (see above); ``fp16`` falls back to float32.

    YAML::

        Architecture:
          name: DistillationModel
          model_type: rec
          algorithm: Distillation
          Models:
            Teacher:
              model_type: rec
              inference_model: ./pretrain_models/PP-OCRv5_server_rec_infer  # or a .onnx file
              character_dict_path: ./ppdistill/utils/dict/ppocrv5_dict.txt
              use_space_char: true
              output_keys: [head_out, ctc]
              input: {shape: [3, 48, 320]}
              precision: fp32            # bf16: oneDNN bfloat16 on AVX512_BF16/AMX CPUs
            Student: {...}
    """

    def __init__(self, inference_model, model_type, character_dict_path=None,
                 use_space_char=False, input=None, output_keys=None, use_gpu=False,
                 cpu_threads=None, missing_characters="blank", precision="fp32",
                 path="ExportedModel"):
        super().__init__()
        if model_type not in PROBE_SHAPE:
            raise ConfigError(f"{path}.model_type: an exported teacher is 'rec' or 'det', got "
                              f"{model_type!r}")
        self.model_type = model_type
        self.path = path
        self.precision = parse_precision(precision, f"{path}.precision", frozen=True)
        self.low_runner = None  # the bfloat16 runner of the training-mode forward, if any
        self.inference_model = str(inference_model)
        self.output_keys = list(DEFAULT_OUTPUT_KEYS[model_type] if output_keys is None
                                else output_keys)
        self.missing_characters = missing_characters
        self.characters = None
        if model_type == "rec" and character_dict_path is not None:
            from ppdistill.utils.char_dict import load_characters
            self.characters = load_characters(character_dict_path, use_space_char)
        self.mapping = None
        if isinstance(input, InputAdapter):
            self.adapter = input
        else:
            self.adapter = _build_adapter(input or {}, model_type, f"{path}.input")
        threads = cpu_threads or int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
        try:
            self.runner = open_runner(self.inference_model, use_gpu=use_gpu, cpu_threads=threads)
        except (FileNotFoundError, ImportError) as exc:
            raise ConfigError(f"{path}.inference_model: {exc}") from None
        self.output_is_prob = True
        self.num_classes = None
        self._probe()
        if self.precision != "fp32":
            self._open_low_precision(threads)

    # ------------------------------------------------------------------ DistillationModel API
    freeze_bn_stats = True

    def pin_layers(self, names):  # nothing to pin: the exported model has no trainable layers
        return None

    def _apply_pins(self):
        return None

    def batch_norm_names(self):
        return []

    def dropout_names(self):
        return []

    pinned_layer_names = []

    # ------------------------------------------------------------------------------- running
    def set_student_characters(self, student_characters, log=None):
        """Map the teacher's classes onto ``student_characters`` (rec); returns the mapping
        (None when the dictionaries are the same)."""
        from ppdistill.losses.dict_mapping import ClassMapping
        if self.model_type != "rec":
            return None
        if self.characters is None:
            if self.num_classes != len(student_characters) + 1:
                raise ConfigError(
                    f"{self.path}: the exported teacher predicts {self.num_classes} classes but "
                    f"the student's dictionary gives {len(student_characters) + 1}; set the "
                    f"teacher's own character_dict_path (and use_space_char)")
            return None
        mapping = ClassMapping(self.characters, student_characters, self.missing_characters)
        self.mapping = None if mapping.is_identity else mapping
        if self.mapping is not None and log is not None:
            log.info(f"{self.path}: cross-dictionary distillation: {mapping.describe()}")
        return self.mapping

    def run(self, x):
        """The teacher's raw output for the batch ``x`` (numpy, first output of the model); in
        training mode through the bfloat16 runner when ``precision: bf16`` opened one."""
        adapted = self.adapter(x).numpy().astype("float32")
        if self.training and self.low_runner is not None:
            try:
                return np.asarray(self.low_runner(adapted)[0])
            except Exception as exc:  # noqa: BLE001 - reported once, float32 from now on
                from ppdistill.modeling.onednn_runner import error_summary
                logger.warning(f"{self.path}.precision: the bfloat16 program failed on a batch "
                               f"of shape {list(adapted.shape)} ({error_summary(exc)}); "
                               f"float32 is used from now on")
                self.low_runner = None
        return np.asarray(self.runner(adapted)[0])

    def _low_precision_obstacle(self):
        """None when ``precision`` can be tried on this runner, else why not."""
        if isinstance(self.runner, OnnxModel):
            if self.runner.device == "cpu":
                return (f"an .onnx teacher runs under onnxruntime, whose CPU execution provider "
                        f"has no general {self.precision} path")
            return (f"an .onnx teacher runs in the precision it was exported in (onnxruntime "
                    f"does not convert it)")
        if getattr(self.runner, "device", "cpu") != "cpu":
            return (f"low precision of a teacher given as a Paddle export is implemented for "
                    f"its CPU (oneDNN) path only, not on {self.runner.device}")
        if self.precision != "bf16":
            return f"paddle.inference has no {self.precision} path on the CPU"
        from ppdistill.modeling import precision as precision_module
        return precision_module._cpu_bf16_reason()

    def _open_low_precision(self, threads):
        """Open the bfloat16 runner (see the class docstring), or warn and keep float32."""
        reason = self._low_precision_obstacle()
        note = None
        if reason is None:
            from ppdistill.modeling.onednn_runner import open_bf16_export
            rng = np.random.RandomState(0)
            probe = rng.uniform(-1, 1, [_PROBE_BATCH] + self.adapter.shape).astype("float32")
            adapted = self.adapter(paddle.to_tensor(probe)).numpy().astype("float32")
            reference = [np.asarray(a) for a in self.runner(adapted)]
            model_dir = (os.path.dirname(self.inference_model)
                         if os.path.isfile(self.inference_model) else self.inference_model)
            self.low_runner, note = open_bf16_export(model_dir, threads, adapted, reference)
            reason = None if self.low_runner is not None else note
        if reason is not None:
            logger.warning(f"{self.path}.precision: {self.precision} requested; {reason}: "
                           f"float32 is used")
        else:
            logger.info(f"{self.path}.precision: bf16 training forward through paddle.inference"
                        f" + oneDNN ({note})")

    def probabilities(self, x):
        """rec: ``[N, T, C]`` probabilities (mapped to the student's classes); det:
        ``[N, 1, H, W]`` map at the batch's size. Paddle tensors, no gradient."""
        with paddle.no_grad():
            out = paddle.to_tensor(self.run(x))
            if self.model_type == "det":
                if out.ndim == 3:
                    out = out.unsqueeze(1)
                if list(out.shape[2:]) != list(x.shape[2:]):
                    out = F.interpolate(out, size=list(x.shape[2:]), mode="bilinear",
                                        align_corners=False)
                return out
            if not self.output_is_prob:
                out = F.softmax(out, axis=-1)
            if self.mapping is not None:
                out = self.mapping.map_probs(out)
            return out

    def forward(self, x, data=None):
        with paddle.no_grad():
            out = self.probabilities(x)
            if self.model_type == "rec" and self.training:
                out = paddle.log(paddle.clip(out, min=_LOG_FLOOR))
            out.stop_gradient = True
        for key in reversed(self.output_keys):
            out = {key: out}
        return out

    def _probe(self):
        shape = [_PROBE_BATCH] + self.adapter.shape
        dummy = paddle.zeros(shape, dtype="float32")
        fed = [_PROBE_BATCH, shape[1]] + list(self.adapter.target_size(shape[2], shape[3]))
        try:
            out = self.run(dummy)
        except Exception as exc:  # the runtimes raise many types; report them in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{self.path}: the exported model {self.inference_model} cannot "
                              f"take a batch of shape {fed} (input.shape {self.adapter.shape}"
                              f"{', resized' if fed[2:] != shape[2:] else ''}): {first[:300]}; "
                              f"set input.shape/input.resize to what it expects") from None
        if self.model_type == "det":
            if out.ndim not in (3, 4) or (out.ndim == 4 and out.shape[1] < 1):
                raise ConfigError(f"{self.path}: a det teacher must output a probability map "
                                  f"[N, 1, H, W], got shape {list(out.shape)}")
            return
        if out.ndim != 3:
            raise ConfigError(f"{self.path}: a rec teacher must output a CTC distribution "
                              f"[N, T, C], got shape {list(out.shape)}")
        self.num_classes = int(out.shape[-1])
        sums = out.sum(axis=-1)
        self.output_is_prob = bool(out.min() >= 0 and np.allclose(sums, 1.0, atol=1e-3))
        if self.characters is not None and len(self.characters) + 1 != self.num_classes:
            hint = ""
            if len(self.characters) + 2 == self.num_classes:
                hint = " (use_space_char: true?)"
            elif len(self.characters) == self.num_classes:
                hint = " (use_space_char: false?)"
            raise ConfigError(f"{self.path}.character_dict_path: the exported model predicts "
                              f"{self.num_classes} classes but its dictionary gives "
                              f"{len(self.characters) + 1} (blank + characters){hint}")


def _build_adapter(config, model_type, path):
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping, got {config!r}")
    for key in config:
        if key not in _INPUT_KEYS:
            raise ConfigError(f"{path}: unexpected key '{key}'{suggest(key, _INPUT_KEYS)}")
    data_mean, data_std = DATA_NORM[model_type]
    shape = config.get("shape", PROBE_SHAPE[model_type])
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3):
        raise ConfigError(f"{path}.shape: expected [C, H, W], got {shape!r}")
    resize = config.get("resize")
    if resize is not None and not (isinstance(resize, (list, tuple)) and len(resize) == 2):
        raise ConfigError(f"{path}.resize: expected [H, W] (-1 keeps the aspect ratio), "
                          f"got {resize!r}")
    for key in ("mean", "std", "data_mean", "data_std"):
        value = config.get(key)
        if value is not None and not (isinstance(value, (list, tuple)) and len(value) == shape[0]):
            raise ConfigError(f"{path}.{key}: expected {shape[0]} values, got {value!r}")
    return InputAdapter(shape, resize, config.get("mean"), config.get("std"),
                        config.get("data_mean", data_mean), config.get("data_std", data_std))


def build_exported_model(config, path="Architecture"):
    """YAML adapter: an ``Architecture.Models`` entry with ``inference_model`` -> ExportedModel.

    ``freeze_params`` may be left out or true (an exported model cannot be trained);
    ``pretrained`` and architecture sections (Backbone, Head, ...) are rejected.
    """
    config = copy.deepcopy(config)
    for key in config:
        if key not in _SUB_KEYS:
            raise ConfigError(f"{path}: unexpected key '{key}' for a teacher given as an exported "
                              f"model{suggest(key, _SUB_KEYS)} (it has no architecture to "
                              f"configure or weights to load)")
    if config.pop("freeze_params", True) is not True:
        raise ConfigError(f"{path}.freeze_params: a sub-model given as an exported model "
                          f"(inference_model) is always frozen; remove freeze_params or set true")
    config.pop("algorithm", None)
    if "model_type" not in config:
        raise ConfigError(f"{path}: missing 'model_type' (det or rec)")
    return ExportedModel(path=path, **config)


def is_exported(model):
    return isinstance(model, ExportedModel)
