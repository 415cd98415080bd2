"""Start-up wiring of exported teachers: the losses that read them, the student's dictionary.

Both run before the first batch (called from ``ppdistill.engine.components``):

- :func:`check_exported_losses`: every loss that names an exported teacher must select the
  output it gives (:class:`ExportedModel`'s ``output_keys``); a feature-level loss (backbone or
  neck features, DB threshold/binary maps) fails with a clear ConfigError.
- :func:`connect_student_dictionary`: a rec teacher with its own dictionary is mapped onto the
  student's classes (``Global.character_dict_path``) and the coverage is reported.
"""
import logging

from ppdistill.modeling.architectures.exported_model import ExportedModel
from ppdistill.registry import ConfigError

__all__ = ["exported_sub_models", "check_exported_losses", "connect_student_dictionary"]

logger = logging.getLogger("ppdistill")

#: outputs only a model with its architecture in ppdistill has
FEATURE_KEYS = ("backbone_out", "neck_out", "ctc_neck", "features", "feats")
#: DB maps an exported det teacher gives (its probability map is channel 0)
EXPORTED_DET_MAPS = ("thrink_maps", "shrink_maps")


def exported_sub_models(model):
    """``{name: ExportedModel}`` of a DistillationModel (empty for any other model)."""
    names = getattr(model, "model_name_list", None) or []
    return {n: getattr(model, n) for n in names if isinstance(getattr(model, n), ExportedModel)}


def _selected_names(selector):
    names = []
    for pair in getattr(selector, "model_name_pairs", None) or []:
        names.extend(pair)
    names.extend(getattr(selector, "model_name_list", None) or [])
    return names


def _selection(selector):
    keys = [selector.key] if getattr(selector, "key", None) is not None else []
    if getattr(selector, "multi_head", False):
        keys.append(selector.dis_head)
    return keys


def check_exported_losses(loss, model):
    """Fail at start-up when a loss reads from an exported teacher what it does not output."""
    exported = exported_sub_models(model)
    if not exported:
        return
    for index, sub_loss in enumerate(getattr(loss, "loss_func", [loss])):
        selector = getattr(sub_loss, "selector", None)
        if selector is None:
            continue
        where = f"Loss.loss_config_list[{index}] ({type(sub_loss).__name__})"
        for name in dict.fromkeys(_selected_names(selector)):
            if name in exported:
                _check_one(where, name, exported[name], selector)


def _check_one(where, name, teacher, selector):
    wanted = _selection(selector)
    layout = teacher.output_keys
    shown = "{" + ": {".join(layout) + ": " + "".join(["}"] * len(layout)) if layout else ""
    gives = (f"{shown}[N, T, C] CTC distribution" if teacher.model_type == "rec"
             else f"{shown}[N, 1, H, W] probability map")
    feature = [k for k in wanted if k in FEATURE_KEYS]
    if feature:
        raise ConfigError(f"{where}: feature-level distillation from {name!r} ({feature[0]}) is "
                          f"impossible: {name!r} is an exported model "
                          f"({teacher.inference_model}) and gives only its final output ({gives}). "
                          f"Distil from its output, or use a native teacher for feature losses")
    maps = getattr(selector, "maps_name", None) or []
    bad_maps = [m for m in maps if m not in EXPORTED_DET_MAPS]
    if bad_maps:
        raise ConfigError(f"{where}: maps_name {bad_maps[0]!r} of {name!r}: an exported det "
                          f"teacher gives only its probability map (maps_name: thrink_maps)")
    if (teacher.model_type == "rec" and getattr(selector, "multi_head", False)
            and selector.dis_head != "ctc"):
        raise ConfigError(f"{where}: dis_head {selector.dis_head!r} of {name!r}: an exported rec "
                          f"teacher gives only its CTC distribution (dis_head: ctc); its "
                          f"attention branches are not part of the export")
    fits = wanted == layout
    if teacher.model_type == "det":  # {"maps": X}: the dict itself or the tensor
        fits = wanted == layout[:len(wanted)]
    elif layout[len(wanted):] == ["ctc"] and wanted == layout[:len(wanted)]:
        fits = True  # a MultiHead-style {"ctc": X} dict (e.g. DistillCTCLogits takes its ctc)
    if not fits:
        raise ConfigError(f"{where}: selects {wanted or 'the whole output'} of {name!r}, but "
                          f"the exported teacher's output is {gives}; set "
                          f"Architecture.Models.{name}.output_keys: [{', '.join(wanted)}] "
                          f"(the loss's key, then dis_head when multi_head)")


def student_characters(config):
    """The student's recognition characters (``PostProcess`` / ``Global`` dictionary)."""
    from ppdistill.utils.char_dict import load_characters
    post = config.get("PostProcess") or {}
    glob = config.get("Global") or {}
    dict_path = post.get("character_dict_path", glob.get("character_dict_path"))
    use_space = post.get("use_space_char", glob.get("use_space_char", False))
    return load_characters(dict_path, use_space)


def connect_student_dictionary(model, config, log=None):
    """Map each exported rec teacher onto the student's dictionary; returns
    ``{name: ClassMapping or None}`` (None: same dictionary)."""
    exported = exported_sub_models(model)
    arch = config.get("Architecture") or {}
    if not exported or arch.get("model_type") != "rec":
        return {}
    characters = student_characters(config)
    return {name: teacher.set_student_characters(characters, log or logger)
            for name, teacher in exported.items()}
