"""Load PaddleOCR-schema YAML configs safely and apply ``-o Section.key=value`` overrides.

- YAML is read with ``yaml.SafeLoader``: anchors and aliases work, ``!!python/...`` tags are
  refused with the file and line.
- An override path walks dicts by key and lists by index, e.g.
  ``Train.dataset.transforms.3.EastRandomCropData.size=[320,320]``; the value is parsed as YAML.
- Overriding a key that does not exist fails with a did-you-mean suggestion, unless the key is a
  known ``Global`` setting or an argument accepted by the component the mapping configures (so
  ``-o Train.dataset.transforms.2.DetResizeForTest.limit_side_len=960`` works even when the file
  leaves ``DetResizeForTest`` empty, while ``-o Global.epoch_nums=5`` is rejected).
"""
import copy
import os

import yaml

from ppdistill.registry import ConfigError, accepted_keys, suggest

SECTIONS = ("Global", "Architecture", "Loss", "Optimizer", "PostProcess", "Metric", "Train", "Eval")

#: Global settings the tools understand; an override may add any of them.
GLOBAL_KEYS = (
    "debug", "use_gpu", "use_xpu", "use_npu", "use_mlu", "epoch_num", "log_smooth_window",
    "print_batch_step", "save_model_dir", "save_epoch_step", "eval_batch_step", "eval_batch_epoch",
    "cal_metric_during_train", "calc_epoch_interval", "pretrained_model", "checkpoints",
    "save_inference_dir", "use_visualdl", "use_wandb", "infer_img", "save_res_path",
    "character_dict_path", "max_text_length", "infer_mode", "use_space_char", "distributed",
    "d2s_train_image_shape", "use_amp", "amp_level", "amp_dtype", "scale_loss",
    "use_dynamic_loss_scaling", "amp_custom_black_list", "amp_custom_white_list", "seed",
    "num_threads", "export_models", "skip_nonfinite_loss", "max_iters", "log_file",
)


def load_config(path):
    """Read a YAML config file into a dict (safe loader; errors name the file and line)."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found")
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8")
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid or unsafe YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for key in config:
        if key not in SECTIONS:
            raise ConfigError(f"{path}: unknown top-level section '{key}'{suggest(key, SECTIONS)}")
    return config


def parse_override(text):
    """``"A.B.C=value"`` -> (["A", "B", "C"], parsed value)."""
    if "=" not in text:
        raise ConfigError(f"-o {text}: expected KEY=VALUE, e.g. Global.epoch_num=5")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"-o {text}: the value is not valid YAML: {exc}") from None
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"-o {text}: empty segment in key {key!r}")
    return parts, value


def _component_params(parent, key, node):
    """Argument names accepted by the component ``node`` configures, or None if unknown."""
    from ppdistill import registry
    _import_components()
    name = None
    if isinstance(node, dict) and isinstance(node.get("name"), str):
        name = node["name"]
    elif isinstance(parent, dict) and len(parent) == 1 and isinstance(key, str):
        name = key  # PaddleOCR's one-key form {ClassName: params}
    if name is None:
        return None
    for value in vars(registry).values():
        if isinstance(value, registry.Registry) and name in value:
            return accepted_keys(value.get(name)) or []
    if name == "DistillationModel":
        return ["Models"]
    return None


def _import_components():
    """Import every component package so their registries are filled."""
    import importlib
    for package in ("ppdistill.modeling.backbones", "ppdistill.modeling.necks",
                    "ppdistill.modeling.heads", "ppdistill.modeling.transforms",
                    "ppdistill.modeling.architectures", "ppdistill.losses",
                    "ppdistill.postprocess", "ppdistill.metrics", "ppdistill.data",
                    "ppdistill.optimizer"):
        importlib.import_module(package)


def apply_override(config, parts, value, text):
    """Set ``config[parts[0]][parts[1]]... = value`` in place, validating every step."""
    node, parent, parent_key = config, None, None
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise ConfigError(f"-o {text}: {where}: index {part!r} out of range "
                                  f"(the list has {len(node)} entries)")
            index = int(part)
            if last:
                node[index] = value
                return
            parent, parent_key, node = node, index, node[index]
            continue
        if node is None and isinstance(parent, (dict, list)):
            node = {}
            parent[parent_key] = node
        if not isinstance(node, dict):
            raise ConfigError(f"-o {text}: {'.'.join(parts[:depth])} is a "
                              f"{type(node).__name__}, it has no key {part!r}")
        if part not in node:
            allowed = GLOBAL_KEYS if parts[:depth] == ["Global"] else _component_params(
                parent, parent_key, node)
            if depth == 0 or allowed is None or part not in allowed:
                options = list(node) + list(allowed or [])
                raise ConfigError(f"-o {text}: unknown key '{where}'{suggest(part, options)}")
            if not last:
                node[part] = {}
        if last:
            node[part] = value
            return
        parent, parent_key, node = node, part, node[part]


def merge_overrides(config, overrides):
    """Return a copy of ``config`` with every ``-o`` override applied (the input is untouched)."""
    config = copy.deepcopy(config)
    for text in overrides or []:
        parts, value = parse_override(text)
        apply_override(config, parts, value, text)
    return config


def load_with_overrides(path, overrides=None):
    """``load_config(path)`` followed by :func:`merge_overrides`."""
    return merge_overrides(load_config(path), overrides)
