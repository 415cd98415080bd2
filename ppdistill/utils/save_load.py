"""Checkpoints: save, resume, warm-start, and extract one sub-model.

Layout (PaddleOCR's, so its tools read our files and ours read its files)::

    <save_model_dir>/<prefix>.pdparams   model state_dict        (paddle.save)
    <save_model_dir>/<prefix>.pdopt      optimizer state_dict, with the LR scheduler position
    <save_model_dir>/<prefix>.states     {"epoch", "global_step", "best_model_dict", ...} (pickle)
    <save_model_dir>/best_model_student.pdparams   the Metric.key sub-model of a
                                                   DistillationModel, written with best_accuracy

Differences from PaddleOCR (each fixes a common complaint):

- Files are read with :func:`ppdistill.utils.safe_load.safe_load`, so a checkpoint cannot run
  code when it is loaded.
- Loading reports how many tensors were loaded and which keys were missing, unexpected or of the
  wrong shape, and *fails* when nothing matched (the classic wrong-prefix mistake that
  silently trains from scratch).
- Saving is atomic: every file is written to a temporary file in the same directory, flushed to
  disk, and only then renamed over the previous one, so a crash mid-save leaves the previous
  checkpoint intact.
- Resuming matches the optimizer state to parameters through the structured names recorded in
  the ``.pdparams`` file, so it works when the new process names parameters differently (paddle
  names them ``conv2d_12.w_0`` by creation order); PaddleOCR then stops with
  ``Optimizer set error ... should in state dict``.
"""
import io
import logging
import os
import pickle
import warnings

import numpy as np
import paddle

from ppdistill.registry import suggest
from ppdistill.utils.safe_load import NAME_TABLE_KEY, safe_load

__all__ = ["LoadReport", "load_pretrained_params", "load_model", "save_model",
           "extract_submodel", "save_state_dict", "STUDENT_FILE"]

logger = logging.getLogger("ppdistill")

STUDENT_FILE = "best_model_student.pdparams"
_SHOW = 5  # how many keys of each kind a report lists
_SINGLE_MODEL_PARTS = ("backbone", "neck", "head", "transform")


# ------------------------------------------------------------------------------------ loading
class LoadReport:
    """What happened when a state dict was loaded into a model.

    Attributes: ``path``, ``loaded`` (keys), ``missing`` (model keys absent from the file),
    ``unexpected`` (file keys the model does not have), ``shape_mismatched``
    (``(key, model_shape, file_shape)``), ``is_float16`` (the file held float16 tensors, cast
    to the model's dtype) and ``prefix_added`` (``"backbone."`` when backbone-only weights were
    matched by adding that prefix).
    """

    def __init__(self, path):
        self.path = path
        self.loaded, self.missing, self.unexpected, self.shape_mismatched = [], [], [], []
        self.is_float16 = False
        self.prefix_added = ""

    def as_dict(self):
        return {"path": self.path, "loaded": list(self.loaded), "missing": list(self.missing),
                "unexpected": list(self.unexpected),
                "shape_mismatched": list(self.shape_mismatched), "is_float16": self.is_float16,
                "prefix_added": self.prefix_added}

    def summary(self):
        total = len(self.loaded) + len(self.missing) + len(self.shape_mismatched)
        return (f"{self.path}: loaded {len(self.loaded)}/{total} tensors; missing "
                f"{len(self.missing)}, unexpected {len(self.unexpected)}, shape-mismatched "
                f"{len(self.shape_mismatched)}")

    def log(self):
        logger.info(self.summary())
        if self.prefix_added:
            logger.info(f"{self.path}: keys matched as '{self.prefix_added}<key>' "
                        f"(backbone-only weights)")
        if self.is_float16:
            logger.info(f"{self.path}: float16 tensors were cast to the model's dtype")
        for label, keys in (("missing (kept their current values)", self.missing),
                            ("unexpected (ignored)", self.unexpected)):
            if keys:
                more = f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
                logger.warning(f"{self.path}: {len(keys)} {label}: "
                               f"{', '.join(keys[:_SHOW])}{more}")
        for key, want, got in self.shape_mismatched[:_SHOW]:
            logger.warning(f"{self.path}: shape mismatch for {key}: model {want}, file {got} "
                           f"(not loaded)")
        if len(self.shape_mismatched) > _SHOW:
            logger.warning(f"{self.path}: ... and {len(self.shape_mismatched) - _SHOW} more "
                           f"shape mismatches")

    def __repr__(self):
        return f"LoadReport({self.summary()})"


def _unwrap(model):
    """The Layer inside ``paddle.DataParallel`` (and similar wrappers)."""
    while isinstance(getattr(model, "_layers", None), paddle.nn.Layer):
        model = model._layers
    return model


def _params_path(path):
    path = os.fspath(path)
    return path if path.endswith(".pdparams") else path + ".pdparams"


def _prefixes(keys):
    return sorted({str(k).split(".", 1)[0] for k in keys})


def _match(model_state, params, report, add_prefix=""):
    """Fill ``report``; return the ``{key: tensor}`` to hand to ``set_state_dict``."""
    matched, file_keys = {}, set()
    for key, value in params.items():
        key = add_prefix + str(key)
        file_keys.add(key)
        if key not in model_state:
            report.unexpected.append(key)
            continue
        if isinstance(value, np.ndarray):
            value = paddle.to_tensor(value)
        if not isinstance(value, paddle.Tensor):  # not a tensor at all
            report.unexpected.append(key)
            continue
        target = model_state[key]
        if list(value.shape) != list(target.shape):
            report.shape_mismatched.append((key, list(target.shape), list(value.shape)))
            continue
        if value.dtype == paddle.float16 and target.dtype != paddle.float16:
            report.is_float16 = True
        if value.dtype != target.dtype:
            value = value.astype(target.dtype)
        matched[key] = value
        report.loaded.append(key)
    report.missing = [k for k in model_state if k not in file_keys]
    return matched


def _no_match_error(path, file_keys, model_keys):
    file_prefixes, model_prefixes = _prefixes(file_keys), _prefixes(model_keys)
    message = (f"{path}: none of its {len(file_keys)} tensors matches the model's "
               f"{len(model_keys)} parameter names; the file's keys start with "
               f"{file_prefixes[:8]}, the model's with {model_prefixes[:8]}.")
    file_is_distill = file_prefixes and not set(file_prefixes) & set(_SINGLE_MODEL_PARTS)
    model_is_single = set(model_prefixes) <= set(_SINGLE_MODEL_PARTS)
    if file_is_distill and model_is_single:
        name = "Student" if "Student" in file_prefixes else file_prefixes[0]
        message += (f" It looks like a distillation checkpoint with sub-models "
                    f"{file_prefixes}: extract one with `python tools/extract_submodel.py "
                    f"--checkpoint {path} --name {name} --out {name.lower()}.pdparams` "
                    f"(keys without the '{name}.' prefix) and load that file.")
    elif not model_is_single and set(file_prefixes) <= set(_SINGLE_MODEL_PARTS):
        message += (" It holds a single model: load it into one sub-model with "
                    "Architecture.Models.<Name>.pretrained instead of Global.pretrained_model.")
    else:
        message += " Keys must match exactly, e.g. 'Student.backbone.conv.weight' is not " \
                   "'backbone.conv.weight'."
    return ValueError(message)


def _load_state(model, params, path):
    """Load the matching tensors of ``params`` into ``model``; raise if nothing matched."""
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), the file holds a "
                         f"{type(params).__name__}")
    model_state = model.state_dict()
    params = {str(k): v for k, v in params.items() if k != NAME_TABLE_KEY}
    report = LoadReport(path)
    matched = _match(model_state, params, report)
    if not matched and report.shape_mismatched:
        key, want, got = report.shape_mismatched[0]
        raise ValueError(f"{path}: {len(report.shape_mismatched)} tensors match by name but "
                         f"none by shape (e.g. {key}: model {want}, file {got}); was it "
                         f"trained with another config (channels, dictionary size)?")
    if not matched and params and not any(k.startswith("backbone.") for k in params):
        retry = LoadReport(path)
        retry_matched = _match(model_state, params, retry, add_prefix="backbone.")
        if retry_matched:
            report, matched = retry, retry_matched
            report.prefix_added = "backbone."
    if not matched:
        raise _no_match_error(path, list(params), list(model_state))
    with warnings.catch_warnings():
        # paddle warns once per key it skips; the report lists them once, shortened
        warnings.filterwarnings("ignore", message="Skip loading for")
        model.set_state_dict(matched)
    report.log()
    return report


def load_pretrained_params(model, path):
    """Warm-start ``model`` from ``path`` (with or without ``.pdparams``), matching by name.

    Tensors of the wrong shape are skipped, float16 ones cast. Logs (logger ``ppdistill``) the
    counts of loaded / missing / unexpected / shape-mismatched keys and the first few of each.
    A file whose keys only match with a ``backbone.`` prefix is loaded into the backbone.

    Returns a :class:`LoadReport`. Raises FileNotFoundError if the file does not exist and
    ValueError, with a hint about sub-model prefixes such as ``Student.``, if no key matched.
    """
    model = _unwrap(model)
    if str(path).startswith(("http://", "https://")):  # PaddleOCR configs download these
        raise FileNotFoundError(f"pretrained weights {path} are a URL, and ppdistill does not "
                                f"download: download the file and give its local path")
    path = _params_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: pretrained weights not found")
    return _load_state(model, safe_load(path), path)


def _param_name_owner(key, names):
    """The longest name in ``names`` that ``key`` starts with, followed by ``_``."""
    best = None
    for i, char in enumerate(key):
        if char == "_" and key[:i] in names:
            best = key[:i]
    return best


def _optimizer_parameters(optimizer):
    params = []
    for item in getattr(optimizer, "_parameter_list", None) or []:
        params.extend(item["params"] if isinstance(item, dict) else [item])
    return params


def _rename_optimizer_state(state, name_table, model, current_names):
    """Rename per-parameter entries from the saved parameter names to the current ones."""
    rename = {}
    if name_table:
        current = {k: getattr(v, "name", None) for k, v in model.state_dict().items()}
        rename = {old: current[k] for k, old in name_table.items() if current.get(k)}
    known = set(rename) | set(current_names)
    renamed, owners = {}, {}
    for key, value in state.items():
        owner = _param_name_owner(key, known)
        new_owner = rename.get(owner, owner)
        new_key = new_owner + key[len(owner):] if owner else key
        renamed[new_key] = value
        owners[new_key] = new_owner
    return renamed, owners


def _load_optimizer_state(optimizer, path, name_table, model):
    state = dict(safe_load(path))
    lr_state = state.pop("LR_Scheduler", None)
    master = state.pop("master_weights", None)
    params = _optimizer_parameters(optimizer)
    current_names = [p.name for p in params]
    renamed, owners = _rename_optimizer_state(state, name_table, model, current_names)
    wanted = set(current_names)
    kept = {k: v for k, v in renamed.items() if owners[k] in wanted}
    dropped = len(renamed) - len(kept)
    covered = {owners[k] for k in kept}
    missing = [n for n in current_names if n not in covered]
    if kept and missing:
        logger.warning(f"{path}: the optimizer state covers {len(covered)} of "
                       f"{len(current_names)} trainable parameters (missing e.g. "
                       f"{missing[:_SHOW]}); it is not restored, moments start from zero")
        kept = {}
    elif renamed and not kept:
        logger.warning(f"{path}: the optimizer state matches none of the trainable parameters; "
                       f"it is not restored, moments start from zero")
    elif dropped:
        logger.info(f"{path}: ignored {dropped} optimizer entries of parameters that are not "
                    f"trained now")
    if isinstance(master, dict) and master and kept:
        master_renamed, _ = _rename_optimizer_state(master, name_table, model, current_names)
        kept["master_weights"] = master_renamed
    scheduler = getattr(optimizer, "_learning_rate", None)
    if isinstance(scheduler, paddle.optimizer.lr.LRScheduler):
        if lr_state is None:
            logger.warning(f"{path}: no LR_Scheduler state saved; the learning-rate schedule "
                           f"starts from step 0")
            lr_state = scheduler.state_dict()
        kept["LR_Scheduler"] = lr_state
    elif lr_state is not None:
        logger.info(f"{path}: the saved LR schedule state is ignored (the configured learning "
                    f"rate is a constant)")
    with warnings.catch_warnings():
        # LinearWarmup hands its nested state to the base class, which then warns about it
        warnings.filterwarnings("ignore", message="There are some unused values in state_dict")
        optimizer.set_state_dict(kept)
    position = (f", LR schedule at step {scheduler.last_epoch}"
                if "LR_Scheduler" in kept else "")
    entries = len(kept) - ("LR_Scheduler" in kept) - ("master_weights" in kept)
    logger.info(f"{path}: optimizer state restored ({entries} entries{position})")


def _python_values(obj):
    """numpy scalars and one-element tensors -> Python numbers (recursively)."""
    if isinstance(obj, dict):
        return {k: _python_values(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_python_values(v) for v in obj)
    if isinstance(obj, np.generic) or (isinstance(obj, np.ndarray) and obj.ndim == 0):
        return obj.item()
    if isinstance(obj, paddle.Tensor):
        array = obj.numpy()
        return array.item() if array.size == 1 else array
    return obj


def load_model(config, model, optimizer=None, model_type="det"):
    """Resume from ``Global.checkpoints`` or warm-start from ``Global.pretrained_model``.

    Resume (``checkpoints: out/latest``, with or without ``.pdparams``): loads
    ``<ckpt>.pdparams`` into the model, ``<ckpt>.pdopt`` into ``optimizer`` (moments and the
    LR scheduler position; a warning if the file is missing) and ``<ckpt>.states``. Returns
    everything saved in ``.states`` plus the best metrics at the top level (as PaddleOCR does)
    and ``start_epoch`` = saved epoch + 1, e.g.
    ``{"epoch": 3, "start_epoch": 4, "global_step": 120, "best_model_dict": {"hmean": 0.8,
    ...}, "hmean": 0.8, ...}``. *Difference from PaddleOCR*: the best ``acc`` is kept instead
    of being reset to 0.

    Warm start (``pretrained_model``: a path or a list of paths): :func:`load_pretrained_params`
    for each; returns ``{}``. Neither set: returns ``{}``. ``model_type`` is accepted for
    PaddleOCR compatibility.
    """
    global_cfg = (config or {}).get("Global") or {}
    checkpoints = global_cfg.get("checkpoints")
    pretrained = global_cfg.get("pretrained_model")
    model = _unwrap(model)
    if checkpoints:
        return _resume(os.fspath(checkpoints), model, optimizer)
    if pretrained:
        for path in pretrained if isinstance(pretrained, (list, tuple)) else [pretrained]:
            report = load_pretrained_params(model, path)
            if model_type == "rec":
                _fail_on_shape_mismatch(report, "the recognition head does not fit the "
                                        "dictionary (character_dict_path / use_space_char)")
        return {}
    logger.info("train from scratch")
    return {}


def _fail_on_shape_mismatch(report, reason):
    """Raise ConfigError naming both sizes when tensors matched by name but not by shape."""
    if not report.shape_mismatched:
        return
    from ppdistill.registry import ConfigError
    details = "; ".join(f"{key}: file {list(got)}, model {list(want)}"
                        for key, want, got in report.shape_mismatched[:3])
    raise ConfigError(f"{report.path}: {len(report.shape_mismatched)} tensor(s) have another "
                      f"shape than the model built from the config ({details}): {reason}")


def _resume(checkpoints, model, optimizer):
    base = checkpoints[:-len(".pdparams")] if checkpoints.endswith(".pdparams") else checkpoints
    params_path = base + ".pdparams"
    if not os.path.isfile(params_path):
        raise FileNotFoundError(f"{params_path}: checkpoint not found (Global.checkpoints)")
    params = safe_load(params_path, keep_name_table=True)
    name_table = params.pop(NAME_TABLE_KEY, None)
    report = _load_state(model, params, params_path)
    _fail_on_shape_mismatch(report, "a checkpoint resumes only the model it was saved from "
                            "(same architecture and dictionary)")
    if optimizer is not None:
        if os.path.isfile(base + ".pdopt"):
            _load_optimizer_state(optimizer, base + ".pdopt", name_table, model)
        else:
            logger.warning(f"{base}.pdopt does not exist: the optimizer starts fresh")
    result = {}
    if os.path.isfile(base + ".states"):
        states = _python_values(safe_load(base + ".states", return_numpy=True))
        if isinstance(states, dict):
            best = dict(states.get("best_model_dict") or {})
            result.update(best)
            result.update(states)
            result["best_model_dict"] = best
            if "epoch" in states:
                result["start_epoch"] = int(states["epoch"]) + 1
    else:
        logger.warning(f"{base}.states does not exist: epoch and best metric start fresh")
    logger.info(f"resume from {base} (start_epoch {result.get('start_epoch', 1)}, "
                f"global_step {result.get('global_step', 0)})")
    return result


# ------------------------------------------------------------------------------------- saving
def _paddle_bytes(obj):
    buffer = io.BytesIO()
    paddle.save(obj, buffer)
    return buffer.getvalue()


def _write_temp(temp_path, data):
    """Write ``data`` to ``temp_path`` and force it to disk."""
    with open(temp_path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomically(files):
    """Write ``{path: bytes}``: all temporaries first, then rename each over its target."""
    temps = []
    try:
        for path, data in files.items():
            directory, name = os.path.split(os.path.abspath(path))
            temp = os.path.join(directory, f".{name}.tmp{os.getpid()}")
            temps.append((temp, path))
            _write_temp(temp, data)
        for temp, path in temps:
            os.replace(temp, path)
        for directory in {os.path.dirname(os.path.abspath(p)) for p in files}:
            _fsync_dir(directory)
    finally:
        for temp, _ in temps:
            if os.path.exists(temp):
                os.remove(temp)


def save_state_dict(state_dict, path):
    """``paddle.save`` ``state_dict`` to ``path`` atomically."""
    _write_atomically({os.fspath(path): _paddle_bytes(state_dict)})


def extract_submodel(state_dict, name):
    """``{key[len(name) + 1:]: value}`` for the keys under ``name.`` (e.g. ``Student.``).

    Raises ValueError listing the prefixes found when no key starts with ``name.``.
    """
    prefix = f"{name}."
    sub = {k[len(prefix):]: v for k, v in state_dict.items()
           if isinstance(k, str) and k.startswith(prefix)}
    if not sub:
        found = _prefixes(k for k in state_dict if k != NAME_TABLE_KEY)
        raise ValueError(f"no sub-model '{name}'{suggest(name, found)}: the checkpoint's keys "
                         f"start with {found}")
    return sub


def _student_name(model, config, metric_key):
    if metric_key:
        return metric_key
    metric = (config or {}).get("Metric") or {}
    return metric.get("key") or "Student"


def save_model(model, optimizer, model_path, config=None, is_best=False, prefix="ppocr",
               metric_key=None, **kwargs):
    """Write ``<model_path>/<prefix>.pdparams``, ``.pdopt`` and ``.states`` atomically.

    ``kwargs`` (``epoch``, ``global_step``, ``best_model_dict``, ...) go to ``.states``. With
    ``prefix == "best_accuracy"`` and a DistillationModel, also writes
    ``<model_path>/best_model_student.pdparams``: the sub-model named ``metric_key`` (default:
    ``config["Metric"]["key"]``, else ``"Student"``) with keys without the ``Name.`` prefix,
    ready for ``Global.pretrained_model`` of a single-model config. ``DataParallel`` is
    unwrapped. Returns the paths written.
    """
    model = _unwrap(model)
    os.makedirs(model_path, exist_ok=True)
    base = os.path.join(model_path, prefix)
    state = model.state_dict()
    files = {base + ".pdparams": _paddle_bytes(state)}
    if optimizer is not None:
        files[base + ".pdopt"] = _paddle_bytes(optimizer.state_dict())
    files[base + ".states"] = pickle.dumps(_python_values(kwargs), protocol=2)
    student_note = ""
    names = getattr(model, "model_name_list", None)
    if prefix == "best_accuracy" and names:
        student = _student_name(model, config, metric_key)
        if student in names:
            sub = extract_submodel(state, student)
            files[os.path.join(model_path, STUDENT_FILE)] = _paddle_bytes(sub)
            student_note = f"; sub-model '{student}' ({len(sub)} tensors) to " \
                           f"{os.path.join(model_path, STUDENT_FILE)}"
        else:
            logger.warning(f"not writing {STUDENT_FILE}: no sub-model '{student}'"
                           f"{suggest(student, names)} (available: {', '.join(names)})")
    _write_atomically(files)
    what = "best model" if is_best else "model"
    logger.info(f"save {what} to {base} (.pdparams{', .pdopt' if optimizer is not None else ''}"
                f", .states){student_note}")
    return list(files)
