"""Build every training/evaluation component from a config, and check they fit together."""
import copy

from ppdistill.registry import ConfigError

#: classes a recognition head branch needs beyond the CTC classes (blank + characters).
_BRANCH_DECODER = {"CTCHead": ("CTCLabelDecode", 0), "SARHead": ("SARLabelDecode", 2),
                   "NRTRHead": ("NRTRLabelDecode", 3)}
_SAR_LOSSES = ("SARLoss", "DistillationSARLoss")


def rec_char_num(config):
    """CTC class count (blank + dictionary characters [+ space]) from Global/PostProcess."""
    from ppdistill.utils.char_dict import load_characters
    post = config.get("PostProcess") or {}
    glob = config.get("Global") or {}
    dict_path = post.get("character_dict_path", glob.get("character_dict_path"))
    use_space = post.get("use_space_char", glob.get("use_space_char", False))
    return len(load_characters(dict_path, use_space)) + 1


def _set_head_channels(head, char_num, path):
    name = head.get("name")
    if name == "MultiHead":
        wanted = {}
        for entry in head.get("head_list") or []:
            branch = next(iter(entry)) if isinstance(entry, dict) and entry else None
            if branch in _BRANCH_DECODER:
                decoder, extra = _BRANCH_DECODER[branch]
                wanted[decoder] = char_num + extra
        given = head.get("out_channels_list")
        if given is None:
            head["out_channels_list"] = wanted
            return
        for decoder, classes in wanted.items():
            if decoder in given and given[decoder] != classes:
                raise ConfigError(
                    f"{path}.out_channels_list.{decoder}: the dictionary gives {char_num - 1} "
                    f"characters, so this branch needs {classes} classes, but the config sets "
                    f"{given[decoder]}")
        return
    if name in _BRANCH_DECODER:
        classes = char_num + _BRANCH_DECODER[name][1]
        if head.get("out_channels") is None:
            head["out_channels"] = classes
        elif head["out_channels"] != classes:
            raise ConfigError(
                f"{path}.out_channels: the dictionary gives {char_num - 1} characters, so the "
                f"head needs {classes} classes, but the config sets {head['out_channels']}")


def _sar_loss_entries(loss_cfg):
    """Yield the parameter dicts of every SAR loss in a Loss section (nested lists too)."""
    if not isinstance(loss_cfg, dict):
        return
    if loss_cfg.get("name") in _SAR_LOSSES:
        yield loss_cfg
    for entry in loss_cfg.get("loss_config_list") or []:
        if isinstance(entry, dict) and len(entry) == 1:
            name, params = next(iter(entry.items()))
            if params is None:
                params = entry[name] = {}
            if name in _SAR_LOSSES:
                yield params
            elif isinstance(params, dict):
                yield from _sar_loss_entries(params)


def with_dictionary_sizes(config):
    """Return a copy of ``config`` with recognition head sizes and SAR ``ignore_index`` filled in.

    As PaddleOCR's train.py does, heads of a rec model (each sub-model of a DistillationModel)
    get their class counts from the dictionary: CTC = blank + characters, SAR = CTC + 2,
    NRTR = CTC + 3, so configs leave them out. A count the config sets explicitly must agree.
    Every SAR loss without an explicit ``ignore_index`` gets the padding index (CTC + 1)
    instead of a stale default.
    """
    config = copy.deepcopy(config)
    arch = config.get("Architecture") or {}
    if arch.get("model_type") != "rec":
        return config
    char_num = rec_char_num(config)
    if isinstance(arch.get("Models"), dict):
        heads = [(f"Architecture.Models.{n}.Head", m.get("Head")) for n, m in arch["Models"].items()
                 if isinstance(m, dict)]
    else:
        heads = [("Architecture.Head", arch.get("Head"))]
    for path, head in heads:
        if isinstance(head, dict):
            _set_head_channels(head, char_num, path)
    for params in _sar_loss_entries(config.get("Loss")):
        params.setdefault("ignore_index", char_num + 1)
    return config


def check_loss_model_names(loss, model):
    """Fail at start-up when a loss names a sub-model the DistillationModel does not have."""
    names = getattr(model, "model_name_list", None)
    if names is None:
        return
    from ppdistill.registry import suggest
    for index, sub_loss in enumerate(getattr(loss, "loss_func", [loss])):
        selector = getattr(sub_loss, "selector", None)
        wanted = []
        for pair in getattr(selector, "model_name_pairs", []) or []:
            wanted.extend(pair)
        wanted.extend(getattr(selector, "model_name_list", []) or [])
        for name in wanted:
            if name not in names:
                raise ConfigError(
                    f"Loss.loss_config_list[{index}] ({type(sub_loss).__name__}): no sub-model "
                    f"{name!r}{suggest(name, names)} in Architecture.Models "
                    f"(available: {', '.join(names)})")


def build_for_eval(config):
    """(config_with_sizes, model, post_process, metric) for evaluation and export."""
    from ppdistill.metrics import build_metric
    from ppdistill.modeling.architectures import build_model
    from ppdistill.postprocess import build_post_process
    config = with_dictionary_sizes(config)
    post_process = build_post_process(config["PostProcess"], config["Global"])
    model = build_model(config["Architecture"])
    metric = build_metric(config["Metric"]) if config.get("Metric") else None
    return config, model, post_process, metric
