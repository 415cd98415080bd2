"""The one schema of the ``Global`` config section: every key with its type, default and meaning.

The config loader validates ``Global`` against :data:`GLOBAL_SCHEMA` (in the YAML file and in
``-o`` overrides): an unknown key is a ``ConfigError`` with a did-you-mean suggestion, a value of
the wrong type is a ``ConfigError`` naming the key. PaddleOCR's configs carry keys that ppdistill
accepts without acting on them:

- ``info`` keys (``debug``, ``infer_mode``, ``model_name`` ...) describe the run for PaddleOCR's
  other tools; accepting them silently is harmless;
- ``unsupported`` keys (``use_wandb``, ``use_xpu``, ``use_npu`` ...) ask for something
  ppdistill does not do; when one is set to anything but its do-nothing default the tools print
  one ``warning:`` line naming it.

``python tools/train.py --help-config`` prints the table; the README's table is
:func:`markdown_table` (a test keeps them equal). Code that reads a setting should use
:func:`global_setting` so the default lives here only.
"""
from dataclasses import dataclass

from ppdistill.registry import ConfigError, suggest

USED, INFO, UNSUPPORTED = "used", "info", "unsupported"


@dataclass(frozen=True)
class Setting:
    """One ``Global`` key: accepted value types (``None`` is always accepted, meaning "unset"),
    the default used when it is absent or null, a one-line description and its status."""
    name: str
    types: tuple
    default: object
    help: str
    status: str = USED

    def type_name(self):
        return " or ".join(TYPE_NAMES[t] for t in self.types)


TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}

_SETTINGS = (
    # --- run, schedule, logging
    Setting("use_gpu", (bool,), False, "run on the GPU (falls back to the CPU with a warning)"),
    Setting("epoch_num", (int,), 1, "number of training epochs"),
    Setting("max_iters", (int,), None, "ppdistill: stop training after this many steps"),
    Setting("log_smooth_window", (int,), 20, "steps averaged in the logged losses"),
    Setting("print_batch_step", (int,), 10, "log every N steps"),
    Setting("eval_batch_step", (list, int), [0, 1000],
            "[start, every]: evaluate every N steps after step start (or just N)"),
    Setting("cal_metric_during_train", (bool,), False, "compute the metric on training batches"),
    Setting("seed", (int,), 1024, "ppdistill: seed of paddle, numpy, random and data sampling"),
    Setting("skip_nonfinite_loss", (bool,), False,
            "ppdistill: skip a step whose loss is NaN/inf instead of stopping"),
    Setting("use_visualdl", (bool,), False, "also log scalars to VisualDL (needs visualdl)"),
    Setting("plot_curves", (bool,), False,
            "ppdistill: draw curves.png at the end of training (needs matplotlib)"),
    Setting("distributed", (bool,), False,
            "multi-process training (started by paddle.distributed.launch)"),
    Setting("use_sync_bn", (bool,), False, "synchronised BatchNorm in multi-process training"),
    # --- checkpoints and outputs
    Setting("save_model_dir", (str,), "./output",
            "folder of latest / best_accuracy / iter_epoch_N checkpoints and train.log"),
    Setting("save_epoch_step", (int,), 1, "also keep iter_epoch_N every N epochs"),
    Setting("pretrained_model", (str, list), None, "warm start: weights to load (path or list)"),
    Setting("checkpoints", (str,), None,
            "resume: checkpoint prefix (weights, optimizer, epoch), e.g. ./output/x/latest"),
    Setting("save_inference_dir", (str,), "./inference", "tools/export_model.py output folder"),
    Setting("infer_img", (str,), None, "tools/infer_det.py / infer_rec.py input file or folder"),
    Setting("save_res_path", (str,), None, "tools/infer_*.py result file"),
    Setting("d2s_train_image_shape", (list,), None, "export: input shape [C, H, W]"),
    # --- recognition
    Setting("character_dict_path", (str,), None,
            "rec: dictionary file, one character per line"),
    Setting("max_text_length", (int,), None, "rec: longest label, in characters"),
    Setting("use_space_char", (bool,), False, "rec: add ' ' to the dictionary"),
    # --- mixed precision
    Setting("use_amp", (bool,), False, "mixed precision on the GPU (ignored on the CPU)"),
    Setting("amp_level", (str,), "O2", "AMP level O1 / O2"),
    Setting("amp_dtype", (str,), "float16", "AMP dtype float16 / bfloat16"),
    Setting("scale_loss", (float,), 1.0, "AMP initial loss scaling"),
    Setting("use_dynamic_loss_scaling", (bool,), False, "AMP dynamic loss scaling"),
    Setting("amp_custom_black_list", (list,), [], "AMP: ops kept in float32"),
    Setting("amp_custom_white_list", (list,), [], "AMP: ops forced to low precision"),
    # --- PaddleOCR keys accepted as information (no effect on training)
    Setting("debug", (bool,), False, "PaddleOCR: debug flag (no effect)", INFO),
    Setting("infer_mode", (bool,), False, "PaddleOCR: inference-mode flag (no effect)", INFO),
    Setting("model_name", (str,), None, "PaddleOCR: model name used by PaddleX (no effect)", INFO),
    Setting("character_type", (str,), None, "PaddleOCR 2.0: language tag (no effect)", INFO),
    Setting("print_mem_info", (bool,), None, "PaddleOCR: GPU memory in logs (no effect)", INFO),
    Setting("export_with_pir", (bool,), None,
            "PaddleOCR: export format flag (the paddle version decides)", INFO),
    # --- PaddleOCR keys ppdistill does not implement (warned about when enabled)
    Setting("use_wandb", (bool,), False, "PaddleOCR: Weights & Biases logging", UNSUPPORTED),
    Setting("use_xpu", (bool,), False, "PaddleOCR: Kunlun XPU device", UNSUPPORTED),
    Setting("use_npu", (bool,), False, "PaddleOCR: Ascend NPU device", UNSUPPORTED),
    Setting("use_mlu", (bool,), False, "PaddleOCR: Cambricon MLU device", UNSUPPORTED),
    Setting("use_gcu", (bool,), False, "PaddleOCR: Enflame GCU device", UNSUPPORTED),
    Setting("calc_epoch_interval", (int,), 1,
            "PaddleOCR: training metric every N epochs (ppdistill: every logged step)",
            UNSUPPORTED),
    Setting("eval_batch_epoch", (int,), None, "PaddleOCR: evaluate every N epochs", UNSUPPORTED),
    Setting("log_ranks", (str, int), None, "PaddleOCR: ranks that log", UNSUPPORTED),
    Setting("uniform_output_enabled", (bool,), False,
            "PaddleOCR: export an inference model with every checkpoint", UNSUPPORTED),
)

#: name -> :class:`Setting`
GLOBAL_SCHEMA = {s.name: s for s in _SETTINGS}


def global_setting(global_cfg, key):
    """``Global[key]``, or the schema default when it is absent or null."""
    value = (global_cfg or {}).get(key)
    return GLOBAL_SCHEMA[key].default if value is None else value


def _type_ok(setting, value):
    for kind in setting.types:
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind in (bool, str, list, dict) and isinstance(value, kind):
            return True
    return False


def check_setting(key, value, where):
    """Raise ``ConfigError`` if ``key`` is not a Global key or ``value`` has the wrong type.

    ``where`` prefixes the message (the config file, or ``-o Global.x=...``).
    """
    setting = GLOBAL_SCHEMA.get(key)
    if setting is None:
        raise ConfigError(f"{where}: unknown key 'Global.{key}'{suggest(key, GLOBAL_SCHEMA)} "
                          f"(python tools/train.py --help-config lists the Global keys)")
    if value is not None and not _type_ok(setting, value):
        raise ConfigError(f"{where}: Global.{key}: expected {setting.type_name()}, got {value!r}")


def validate_global(global_cfg, where):
    """Check every key of a ``Global`` mapping (see :func:`check_setting`)."""
    if global_cfg is None:
        return
    if not isinstance(global_cfg, dict):
        raise ConfigError(f"{where}: Global: expected a mapping, got {global_cfg!r}")
    for key, value in global_cfg.items():
        check_setting(str(key), value, where)


def unsupported_settings(global_cfg):
    """``[(key, value)]`` of the unsupported keys set to something other than their default."""
    found = []
    for key, value in (global_cfg or {}).items():
        setting = GLOBAL_SCHEMA.get(key)
        if setting is not None and setting.status == UNSUPPORTED and value is not None \
                and value != setting.default:
            found.append((key, value))
    return found


def unsupported_warning(global_cfg):
    """The one-line warning about :func:`unsupported_settings`, or None."""
    found = unsupported_settings(global_cfg)
    if not found:
        return None
    listed = ", ".join(f"Global.{k}={v!r}" for k, v in found)
    return f"warning: not implemented by ppdistill, ignored: {listed}"


def _default_text(setting):
    return "-" if setting.default is None else repr(setting.default).replace("'", "")


def text_table():
    """Plain-text table for ``--help-config``."""
    lines = ["Global keys (type, default, meaning); 'info' keys are accepted and have no effect,",
             "'unsupported' keys are warned about when enabled:", ""]
    width = max(len(name) for name in GLOBAL_SCHEMA)
    for s in _SETTINGS:
        status = "" if s.status == USED else f" [{s.status}]"
        lines.append(f"  {s.name:<{width}}  {s.type_name():<11} {_default_text(s):<14} "
                     f"{s.help}{status}")
    return "\n".join(lines)


def markdown_table():
    """The README's Global table (generated; ``python -m ppdistill.utils.global_schema``)."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for s in _SETTINGS:
        status = "" if s.status == USED else f" *({s.status})*"
        rows.append(f"| `{s.name}` | {s.type_name()} | `{_default_text(s)}` | "
                    f"{s.help.replace('|', '/')}{status} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
