"""Import a released export (ONNX or Paddle inference model) into training-form weights.

``import_weights(config, source)`` builds the config's model (or one sub-model of a
DistillationModel), matches the export's weighted ops to the model's weighted layers by order
and shape (:mod:`ppdistill.importer.matcher`), writes the converted weights into the model,
then runs the export and the model in eval mode on the same input and measures the largest
absolute difference of their outputs. Nothing is written here: the caller saves
``result.state_dict`` when ``result.max_diff`` is within tolerance.
"""
import copy
import os
from dataclasses import dataclass, field

import numpy as np
import paddle

from ppdistill.importer.graph import weighted_ops
from ppdistill.importer.matcher import StructureMismatch, match
from ppdistill.importer.model_units import group_units, record_calls
from ppdistill.registry import ConfigError, suggest

DEFAULT_TOLERANCE = 1e-4


class ImportFailed(ValueError):
    """The export does not reproduce in the model (structure or numbers); one-line message."""


@dataclass
class ImportResult:
    state_dict: dict
    max_diff: float
    matched_layers: int
    untouched: list = field(default_factory=list)  # [(layer prefix, tensor count)]
    export_kind: str = ""
    input_shape: tuple = ()
    model: object = None  # the imported model (eval mode), keys without the sub-model prefix
    dictionary_size: int = None  # entries of the dictionary the export carries, when it does


def _resolve_source(source):
    """(kind, files) for an ``.onnx`` file or a Paddle inference model directory/file."""
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source}: no such file or directory")
    if os.path.isfile(source) and source.endswith(".onnx"):
        return "onnx", {"onnx": source}
    directory, prefix = (source, "inference") if os.path.isdir(source) else \
        (os.path.dirname(source) or ".", os.path.splitext(os.path.basename(source))[0])
    params = os.path.join(directory, prefix + ".pdiparams")
    for suffix, kind in ((".json", "paddle_pir"), (".pdmodel", "paddle")):
        program = os.path.join(directory, prefix + suffix)
        if os.path.isfile(program) and os.path.isfile(params):
            return kind, {"program": program, "params": params}
    if os.path.isdir(source):
        onnx_files = sorted(f for f in os.listdir(source) if f.endswith(".onnx"))
        if len(onnx_files) == 1:
            return "onnx", {"onnx": os.path.join(source, onnx_files[0])}
    raise ValueError(f"{source}: expected an .onnx file or a Paddle inference model directory "
                     "(inference.pdmodel or inference.json, plus inference.pdiparams)")


def read_export(source):
    """``(kind, files, graph, metadata)`` for ``source``."""
    kind, files = _resolve_source(source)
    metadata = {}
    if kind == "onnx":
        from ppdistill.importer.onnx_reader import read_onnx
        graph, metadata = read_onnx(files["onnx"])
    else:
        from ppdistill.importer.paddle_reader import read_paddle
        graph = read_paddle(files["program"], files["params"])
    return kind, files, graph, metadata


def _check_dictionary(config, metadata):
    """An export that carries its dictionary (ONNX metadata ``character``, as the released
    PP-OCR rec ONNX models do) must agree with the config's dictionary; returns its size."""
    if "character" not in metadata or \
            (config.get("Architecture") or {}).get("model_type") != "rec":
        return None
    from ppdistill.utils.char_dict import load_characters
    glob = config.get("Global") or {}
    post = config.get("PostProcess") or {}
    dict_path = post.get("character_dict_path", glob.get("character_dict_path"))
    theirs = metadata["character"].splitlines()
    mine = load_characters(dict_path, use_space_char=False)
    if theirs != mine:
        first = next((i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b),
                     min(len(theirs), len(mine)))
        raise ImportFailed(f"dictionary mismatch: the export's dictionary (ONNX metadata "
                           f"'character', {len(theirs)} entries) differs from "
                           f"character_dict_path {dict_path} ({len(mine)} entries) at entry "
                           f"{first + 1}")
    return len(theirs)


def run_export(kind, files, image):
    from ppdistill.importer import runners
    if kind == "onnx":
        return runners.run_onnx(files["onnx"], image)
    return runners.run_paddle_inference(files["program"], files["params"], image)


def build_target(config, model_name=None):
    """(model, key prefix, config path) of the architecture to import into."""
    from ppdistill.engine.components import with_dictionary_sizes
    from ppdistill.modeling.architectures import BaseModel, build_model
    config = with_dictionary_sizes(copy.deepcopy(config))
    arch = config.get("Architecture")
    if not isinstance(arch, dict):
        raise ConfigError("Architecture: missing")
    models = arch.get("Models")
    if isinstance(models, dict):
        if model_name is None:
            raise ConfigError(f"Architecture.Models: this is a DistillationModel; choose a "
                              f"sub-model with --model ({', '.join(models)})")
        if model_name not in models:
            raise ConfigError(f"Architecture.Models: no sub-model '{model_name}'"
                              f"{suggest(model_name, list(models))} "
                              f"(available: {', '.join(models)})")
        sub = dict(models[model_name])
        sub.pop("pretrained", None)
        sub.pop("freeze_params", None)
        sub.setdefault("model_type", arch.get("model_type"))
        path = f"Architecture.Models.{model_name}"
        return BaseModel(sub, path=path), f"{model_name}.", path
    if model_name is not None:
        raise ConfigError(f"Architecture: --model {model_name} given but the config is a single "
                          "model, not a DistillationModel")
    return build_model(arch), "", "Architecture"


def sample_input(config, model_name=None, seed=0):
    """A seeded NCHW float32 input the size of what the export expects."""
    from ppdistill.utils.export import input_shape
    shape = input_shape(config)
    if model_name is not None:
        shape = input_shape({**config, "Architecture": {
            **config["Architecture"]["Models"][model_name],
            "model_type": config["Architecture"].get("model_type")}})
    height = 160 if shape[2] in (-1, None) else shape[2]
    width = 224 if shape[2] in (-1, None) else 320
    rng = np.random.RandomState(seed)
    return rng.uniform(-1.0, 1.0, (1, 3, height, width)).astype("float32")


def _main_output(output):
    if isinstance(output, dict):
        if "maps" in output:
            output = output["maps"]
        elif len(output) == 1:
            output = next(iter(output.values()))
        else:
            raise ImportFailed(f"cannot tell which model output to compare: {sorted(output)}")
    return np.asarray(output.numpy() if hasattr(output, "numpy") else output)


def _untouched(state, updates):
    """[(layer path, tensor count)] of the model tensors the export did not set, each named by
    the largest sub-layer that is untouched as a whole (e.g. ``head.sar_head``)."""
    missing = [k for k in state if k not in updates]
    touched_prefixes = set()
    for key in updates:
        parts = key.split(".")
        touched_prefixes.update(".".join(parts[:i]) for i in range(1, len(parts)))
    groups = {}
    for key in missing:
        parts = key.split(".")
        owner = ".".join(parts[:-1]) or key
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in touched_prefixes:
                owner = prefix
                break
        groups[owner] = groups.get(owner, 0) + 1
    return sorted(groups.items())


def import_weights(config, source, model_name=None, seed=0, tolerance=DEFAULT_TOLERANCE):
    """Import ``source`` into the model of ``config``; see the module docstring.

    Raises :class:`ImportFailed` (structure mismatch, or outputs differ above ``tolerance``),
    ``ConfigError``, ``FileNotFoundError``/``ValueError`` for unreadable sources and
    ``ImportError`` when ``onnx``/``onnxruntime`` are needed but missing.
    """
    kind, files, graph, metadata = read_export(source)
    dictionary_size = _check_dictionary(config, metadata)
    model, prefix, _ = build_target(config, model_name)
    image = sample_input(config, model_name, seed)
    _, calls = record_calls(model, [paddle.to_tensor(image)])
    units = group_units(model, calls)
    try:
        updates = match(units, weighted_ops(graph))
    except StructureMismatch as exc:
        raise ImportFailed(f"structure mismatch: {exc}") from None
    state = model.state_dict()
    for key, value in updates.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise ImportFailed(f"structure mismatch: {key}: shape {list(value.shape)} from the "
                               f"export, model has {list(state[key].shape)}")
    model.set_state_dict({k: paddle.to_tensor(np.ascontiguousarray(updates[k], "float32"))
                          if k in updates else v for k, v in state.items()})
    model.eval()
    with paddle.no_grad():
        mine = _main_output(model(paddle.to_tensor(image)))
    theirs = run_export(kind, files, image)
    if tuple(mine.shape) != tuple(theirs.shape):
        raise ImportFailed(f"output shapes differ: export {list(theirs.shape)}, model "
                           f"{list(mine.shape)} (input {list(image.shape)})")
    max_diff = float(np.max(np.abs(mine.astype("float64") - theirs.astype("float64"))))
    if not max_diff <= tolerance:
        raise ImportFailed(f"max abs difference {max_diff:.3g} between the export and the "
                           f"imported model exceeds {tolerance:g} (input {list(image.shape)})")
    out = {prefix + k: v for k, v in model.state_dict().items()}
    return ImportResult(out, max_diff, len(units), _untouched(state, updates), kind,
                        tuple(image.shape), model, dictionary_size)
