"""Export trained models to Paddle inference files (``inference.json``/``.pdmodel`` + ``.pdiparams``).

``PPDISTILL_DEPLOY_FORM=0`` in the environment exports the way PaddleOCR does (branches fused by
``rep()``, affine blocks as their own ops, paddle's ``interpolate``): the benchmark's baseline.
"""
import contextlib
import os

import paddle

from ppdistill.infer.onednn import onednn_runnable_upsampling
from ppdistill.modeling.rep import deployment_copy, rep_layers, reparameterized_copy
from ppdistill.registry import ConfigError, suggest
from ppdistill.utils.switches import switch_on

#: environment switch: "0" exports PaddleOCR's form instead of the deployment form
DEPLOY_FORM_ENV = "PPDISTILL_DEPLOY_FORM"


def deployment_form():
    """Whether exports use ppdistill's deployment form (the default; ``PPDISTILL_DEPLOY_FORM=0``
    makes them PaddleOCR's form)."""
    return switch_on(DEPLOY_FORM_ENV)


def input_shape(config):
    """``[None, 3, H, W]`` for the exported model's input.

    Detection: any size (``[None, 3, -1, -1]``). Recognition: the height of the Eval
    ``RecResizeImg`` (or ``Global.d2s_train_image_shape``, default 48) and any width.
    """
    arch = config["Architecture"]
    if arch.get("model_type") != "rec":
        return [None, 3, -1, -1]
    height = None
    d2s = (config.get("Global") or {}).get("d2s_train_image_shape")
    if isinstance(d2s, (list, tuple)) and len(d2s) == 3 and d2s[1] and d2s[1] > 0:
        height = int(d2s[1])
    for section in ("Eval", "Train"):
        transforms = (((config.get(section) or {}).get("dataset") or {}).get("transforms")) or []
        for entry in transforms:
            if isinstance(entry, dict) and "RecResizeImg" in entry and entry["RecResizeImg"]:
                shape = entry["RecResizeImg"].get("image_shape")
                if shape:
                    height = int(shape[1])
                    break
        if height:
            break
    return [None, 3, height or 48, -1]


def model_input_shape(model, shape):
    """``shape``, or ``[N, C, H, W]`` with the fixed ``[H, W]`` of a backbone that accepts only
    one input size (its ``fixed_input_size``, e.g. SVTRNet's ``img_size``)."""
    fixed = getattr(getattr(model, "backbone", None), "fixed_input_size", None)
    if fixed:
        return list(shape[:2]) + [int(v) for v in fixed]
    return shape


class _MapsFirst(paddle.nn.Layer):
    """Puts a detector's ``maps`` first among several outputs (e.g. PFHeadLocal's eval
    ``{"maps", "cbn_maps"}``): paddle would save a dict in sorted key order, ``cbn_maps`` first,
    and predictors (ours and PaddleOCR's ``predict_det``) read output 0."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        if isinstance(out, dict) and "maps" in out and len(out) > 1:
            return [out["maps"]] + [out[k] for k in sorted(out) if k != "maps"]
        return out


def export_single(model, shape, save_prefix):
    """Trace ``model`` (eval mode, ``return_all_feats`` off) and save it under ``save_prefix``.

    Re-parameterisable layers (PPLCNetV3) are exported fused, with their affine blocks folded in,
    from a copy: ``model`` keeps its training form (``ppdistill.modeling.rep.deployment_copy``).
    Nearest upsamplings by an integer factor are written as ``repeat_interleave`` ops, which
    paddle 3's oneDNN can run (:func:`ppdistill.infer.onednn.onednn_runnable_upsampling`).
    With ``PPDISTILL_DEPLOY_FORM=0`` (:func:`deployment_form`) neither: the layers are only
    fused, as PaddleOCR's export does.
    """
    if hasattr(model, "return_all_feats"):
        model.return_all_feats = False
    model.eval()
    deploy = deployment_form()
    model = _MapsFirst(deployment_copy(model) if deploy else reparameterized_copy(model))
    spec = [paddle.static.InputSpec(shape=list(shape), dtype="float32", name="x")]
    # A program of the other format left by an earlier export (paddle 2.x .pdmodel vs paddle 3
    # .json) would not match the new weights: remove both before saving.
    for suffix in (".json", ".pdmodel"):
        if os.path.isfile(save_prefix + suffix):
            os.remove(save_prefix + suffix)
    with onednn_runnable_upsampling() if deploy else contextlib.nullcontext():  # traced on save
        static_model = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
        paddle.jit.save(static_model, save_prefix)
    return [f for f in os.listdir(os.path.dirname(save_prefix) or ".")
            if f.startswith(os.path.basename(save_prefix))]


def export_model(config, model, save_dir, names=None, logger=None):
    """Export a model; a DistillationModel writes ``save_dir/<Name>/inference.*`` per sub-model.

    ``names`` limits the export to those sub-models. Returns ``{name_or_'': directory}``.
    """
    shape = input_shape(config)
    written = {}
    sub_names = getattr(model, "model_name_list", None)
    fused, shapes = {}, {}
    if sub_names is None:
        fused[""] = len(rep_layers(model))
        shapes[""] = model_input_shape(model, shape)
        export_single(model, shapes[""], os.path.join(save_dir, "inference"))
        written[""] = save_dir
    else:
        for name in names or sub_names:
            if name not in sub_names:
                raise ConfigError(f"export: no sub-model {name!r}{suggest(name, sub_names)} "
                                  f"(available: {', '.join(sub_names)})")
            if getattr(getattr(model, name), "inference_model", None):  # ExportedModel
                if logger:
                    logger.info(f"sub-model {name} is an exported model already "
                                f"({getattr(model, name).inference_model}): not exported")
                continue
            fused[name] = len(rep_layers(getattr(model, name)))
            shapes[name] = model_input_shape(getattr(model, name), shape)
            export_single(getattr(model, name), shapes[name],
                          os.path.join(save_dir, name, "inference"))
            written[name] = os.path.join(save_dir, name)
    if logger:
        for name, path in written.items():
            note = f", {fused[name]} re-parameterised layers fused" if fused[name] else ""
            if not deployment_form():
                note += f", PaddleOCR's form ({DEPLOY_FORM_ENV}=0)"
            logger.info(f"inference model {name or 'model'} saved to {path} "
                        f"(input {shapes[name]}{note})")
    return written
