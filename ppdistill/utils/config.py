"""Load PaddleOCR-schema YAML configs safely and apply ``-o Section.key=value`` overrides.

- YAML is read with ``yaml.SafeLoader``: anchors and aliases work, ``!!python/...`` tags are
  refused with the file and line.
- An override path walks dicts by key and lists by index, e.g.
  ``Train.dataset.transforms.3.EastRandomCropData.size=[320,320]``; the value is parsed as YAML.
- Overriding a key that does not exist fails with a did-you-mean suggestion, unless the key is a
  known ``Global`` setting or an argument accepted by the component the mapping configures (so
  ``-o Train.dataset.transforms.2.DetResizeForTest.limit_side_len=960`` works even when the file
  leaves ``DetResizeForTest`` empty, while ``-o Global.epoch_nums=5`` is rejected).
- ``Global`` is validated against one schema (``global_schema.py``) in the file and in ``-o``:
  unknown keys and wrong types are rejected, enabled PaddleOCR features ppdistill lacks
  (``use_wandb: true``) get a one-line warning. An undefined alias is reported as
  ``file:line: undefined YAML alias '*name'``.
"""
import copy
import os
import re
import sys

import yaml

from ppdistill.registry import ConfigError, accepted_keys, suggest
from ppdistill.utils.global_schema import (GLOBAL_SCHEMA, check_setting, unsupported_warning,
                                           validate_global)

SECTIONS = ("Global", "Architecture", "Loss", "Optimizer", "PostProcess", "Metric", "Train", "Eval")
#: top-level keys PaddleOCR's configs carry that are not sections (accepted, unused)
TOP_LEVEL_EXTRAS = ("profiler_options",)

#: Global settings (from the schema in ``global_schema.py``); an override may add any of them.
GLOBAL_KEYS = tuple(GLOBAL_SCHEMA)


def _line_of_key(text, key):
    """1-based line of the first indented ``key:`` after ``Global:`` in ``text``, or None."""
    section = re.search(r"^Global[ \t]*:", text, flags=re.MULTILINE)
    start = section.end() if section else 0
    match = re.compile(rf"^[ \t]+{re.escape(key)}[ \t]*:", flags=re.MULTILINE).search(text, start)
    return text.count("\n", 0, match.start()) + 1 if match else None


def load_config(path):
    """Read a YAML config file into a dict (safe loader; errors name the file and line).

    ``Global`` is checked against the schema: an unknown key or a wrongly typed value is a
    ``ConfigError`` naming the file and line.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found")
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8")
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else path
        alias = re.match(r"found undefined alias '?([^'\s]+)'?", str(exc.problem or ""))
        if alias:
            raise ConfigError(f"{where}: undefined YAML alias '*{alias.group(1)}' (define it "
                              f"with '&{alias.group(1)}' before its first use)") from None
        raise ConfigError(f"{where}: invalid or unsafe YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for key in config:
        if key not in SECTIONS and key not in TOP_LEVEL_EXTRAS:
            raise ConfigError(f"{path}: unknown top-level section '{key}'{suggest(key, SECTIONS)}")
    global_cfg = config.get("Global")
    if isinstance(global_cfg, dict):
        for key, value in global_cfg.items():
            line = _line_of_key(text, str(key))
            check_setting(str(key), value, f"{path}:{line}" if line else path)
    else:
        validate_global(global_cfg, path)
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
    if name is None and isinstance(node, dict) and "Backbone" in node:  # a (sub-)model
        from ppdistill.modeling.architectures.base_model import _MODEL_KEYS
        return list(_MODEL_KEYS) + ["pretrained", "freeze_params", "precision"]
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
            if parts[:depth] == ["Global"]:
                check_setting(part, value, f"-o {text}")
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


def load_with_overrides(path, overrides=None, warn=True):
    """``load_config(path)`` followed by :func:`merge_overrides`.

    With ``warn``, unsupported ``Global`` keys that are enabled (``use_wandb: true`` ...) are
    named in one ``warning:`` line on stderr.
    """
    config = merge_overrides(load_config(path), overrides)
    message = unsupported_warning(config.get("Global"))
    if warn and message:
        print(message, file=sys.stderr)
    return config
