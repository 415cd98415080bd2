"""Build every training/evaluation component from a config, and check they fit together."""
import copy

from ppdistill.registry import ConfigError


def rec_char_num(config):
    """CTC class count (blank + dictionary characters [+ space]) from Global/PostProcess."""
    from ppdistill.utils.char_dict import load_characters
    post = config.get("PostProcess") or {}
    glob = config.get("Global") or {}
    dict_path = post.get("character_dict_path", glob.get("character_dict_path"))
    use_space = post.get("use_space_char", glob.get("use_space_char", False))
    return len(load_characters(dict_path, use_space)) + 1


def _set_head_channels(head, char_num, path):
    """Let the head class named by ``head`` fill in its class counts (``fill_class_counts``);
    heads without it (detection heads, unknown names reported later by the build) are left."""
    from ppdistill.modeling.heads import HEADS
    name = head.get("name")
    if not isinstance(name, str) or name not in HEADS:
        return
    fill = getattr(HEADS.get(name), "fill_class_counts", None)
    if fill is not None:
        fill(head, char_num, path)


def _dictionary_loss_entries(loss_cfg):
    """Yield ``(loss_class, params)`` for every loss of a Loss section (nested lists too) whose
    class declares ``ignore_index_from_dictionary``; ``params`` is the config's own dict."""
    from ppdistill.losses import LOSSES

    def sized(name):
        cls = LOSSES.get(name) if isinstance(name, str) and name in LOSSES else None
        return cls if getattr(cls, "ignore_index_from_dictionary", None) is not None else None

    if not isinstance(loss_cfg, dict):
        return
    if sized(loss_cfg.get("name")):
        yield sized(loss_cfg["name"]), loss_cfg
    for entry in loss_cfg.get("loss_config_list") or []:
        if isinstance(entry, dict) and len(entry) == 1:
            name, params = next(iter(entry.items()))
            if params is None:
                params = entry[name] = {}
            if sized(name) and isinstance(params, dict):
                yield sized(name), params
            elif isinstance(params, dict):
                yield from _dictionary_loss_entries(params)


def with_dictionary_sizes(config):
    """Return a copy of ``config`` with recognition head sizes and SAR ``ignore_index`` filled in.

    As PaddleOCR's train.py does, heads of a rec model (each sub-model of a DistillationModel)
    get their class counts from the dictionary: CTC = blank + characters, SAR = CTC + 2,
    NRTR = CTC + 3, so configs leave them out. A count the config sets explicitly must agree.
    No head or loss name is listed here: each head class fills in its own counts
    (``fill_class_counts``, see ``ppdistill.modeling.heads.class_count``), and every loss class
    with ``ignore_index_from_dictionary = k`` (the SAR losses: 1) gets
    ``ignore_index = CTC + k`` unless the config sets it, instead of a stale default.
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
    for loss_cls, params in _dictionary_loss_entries(config.get("Loss")):
        params.setdefault("ignore_index", char_num + loss_cls.ignore_index_from_dictionary)
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
    from ppdistill.modeling.architectures.exported_setup import check_exported_losses
    check_exported_losses(loss, model)  # losses reading an exported teacher's output


def build_for_eval(config):
    """(config_with_sizes, model, post_process, metric) for evaluation and export."""
    from ppdistill.metrics import build_metric
    from ppdistill.modeling.architectures import build_model
    from ppdistill.postprocess import build_post_process
    config = with_dictionary_sizes(config)
    post_process = build_post_process(config["PostProcess"], config["Global"])
    model = build_model(config["Architecture"])
    from ppdistill.modeling.architectures.exported_setup import connect_student_dictionary
    connect_student_dictionary(model, config)  # exported rec teacher -> the student's classes
    metric = build_metric(config["Metric"]) if config.get("Metric") else None
    return config, model, post_process, metric
