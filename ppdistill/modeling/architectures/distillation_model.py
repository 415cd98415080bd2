"""DistillationModel: several BaseModels trained side by side, output ``{name: output}``."""
import copy
import logging

import paddle
from paddle import nn

from ppdistill.modeling.architectures.base_model import BaseModel
from ppdistill.modeling.fast_conv import enable_fast_frozen_convs
from ppdistill.modeling.precision import low_precision_forward, parse_precision
from ppdistill.modeling.recompute import det_segments, enable_recompute
from ppdistill.registry import ConfigError, suggest

_TOP_KEYS = ("name", "model_type", "algorithm", "Models")
_SHOW = 5  # keys listed in a pretrained-loading error
logger = logging.getLogger("ppdistill")


def check_pretrained_report(report, name, frozen, path):
    """Fail (frozen sub-model) or warn (trainable one) when ``pretrained`` did not fully load.

    A frozen teacher with missing or shape-mismatched tensors would silently distil from
    partly random weights, so that is a ConfigError with the counts and the first keys.
    """
    missing = list(report.missing)
    mismatched = [key for key, _, _ in report.shape_mismatched]
    if not missing and not mismatched:
        return
    counts = (f"{len(report.loaded)} tensors loaded, {len(missing)} missing, "
              f"{len(mismatched)} shape-mismatched (of {report.path})")
    first = ", ".join((missing + mismatched)[:_SHOW])
    if frozen:
        raise ConfigError(f"{path}.pretrained: the frozen sub-model '{name}' does not fully load: "
                          f"{counts}; first: {first}. A frozen model is never trained, so it "
                          f"must load completely (check the file and the sub-model's config)")
    logger.warning(f"{path}.pretrained: sub-model '{name}' loaded partially: {counts}; "
                   f"first: {first} (they keep their initial values and are trained)")


class DistillationModel(nn.Layer):
    """Wraps any number of sub-models (Teacher, Student, Student2, ...) built from ``Models``.

    Sub-models are registered under their config names, in config order, so parameters are named
    ``Student.backbone.conv.conv.weight`` exactly as in PaddleOCR and its released checkpoints
    load unchanged. ``forward(x, data)`` returns ``{name: sub_model(x, data)}``.

    Per sub-model keys besides the BaseModel ones:

    - ``pretrained``: a ``.pdparams`` path (with or without the suffix) loaded at construction.
      A frozen sub-model whose file leaves tensors missing or shape-mismatched fails with the
      counts and the first keys; a trainable one warns.
    - ``freeze_params``: the sub-model's parameters are not trainable, it builds no gradient
      graph (its forward runs under ``paddle.no_grad``) and its BatchNorm and Dropout layers are
      pinned in eval mode (:meth:`BaseModel.pin_layers`: re-applied at every forward, BN with
      ``use_global_stats``), so no ``train()`` call on this model or on a wrapper such as
      ``paddle.DataParallel`` makes BN use batch statistics or update its running ones.
      *Difference from PaddleOCR*, where a frozen teacher's BN statistics drift
      during training. The head keeps following the wrapper's mode, so a frozen teacher yields
      the same output layout (e.g. all three DB maps in training) as the trainable models.
      On CPU its large-kernel (>= 5x5) stride-1 convolutions run through a faster shifted-GEMM
      forward (``ppdistill.modeling.fast_conv``; ``PPDISTILL_FAST_CONV=0`` turns it off).
    - Trained ``model_type: det`` sub-models keep only the inputs of their backbone stages, neck
      and head for backward in CPU training and recompute the rest there (same results, less
      memory: ``ppdistill.modeling.recompute``; ``PPDISTILL_RECOMPUTE=0`` turns it off).
    - ``inference_model``: the sub-model is an exported model (Paddle inference files or an
      ``.onnx`` file), frozen by construction: see
      :class:`~ppdistill.modeling.architectures.exported_model.ExportedModel`.
    - ``freeze_bn_stats``: see :class:`BaseModel` (true: BN statistics fixed while the
      sub-model's weights train).
    - ``precision``: ``fp32`` (default) | ``bf16`` | ``fp16``, frozen sub-models only: the
      training-time forward's precision once training is set up (``ppdistill.modeling.
      precision``: GPU auto_cast; CPU bf16 through oneDNN on AVX512_BF16/AMX CPUs; otherwise
      float32 with a warning). Outputs are float32.

    YAML::

        Architecture:
          name: DistillationModel
          model_type: det
          algorithm: Distillation
          Models:
            Teacher:
              pretrained: ./pretrain_models/ch_ppocr_server_v2.0_det_train/best_accuracy
              freeze_params: true
              return_all_feats: false
              model_type: det
              algorithm: DB
              Backbone: {name: ResNet_vd, layers: 50}
              Neck: {name: LKPAN, out_channels: 256}
              Head: {name: DBHead, kernel_list: [7, 2, 2], k: 50}
            Student:
              freeze_params: false
              model_type: det
              algorithm: DB
              Backbone: {name: MobileNetV3, scale: 0.5, model_name: large, disable_se: true}
              Neck: {name: RSEFPN, out_channels: 96, shortcut: true}
              Head: {name: DBHead, k: 50}
    """

    def __init__(self, config, path="Architecture"):
        super().__init__()
        config = copy.deepcopy(config)
        for key in config:
            if key not in _TOP_KEYS:
                raise ConfigError(f"{path}: unexpected key '{key}'{suggest(key, _TOP_KEYS)}")
        models = config.get("Models")
        if not isinstance(models, dict) or not models:
            raise ConfigError(f"{path}.Models: expected a mapping of sub-model name -> config")
        self.model_type = config.get("model_type")
        self.model_name_list = []
        self.frozen_names = set()
        self.pretrained_names = set()  # sub-models loaded from their own ``pretrained`` file
        self.precisions = {}  # frozen sub-model -> configured ``precision`` (fp32/bf16/fp16)
        self.run_dtypes = {}  # frozen sub-model -> dtype its forward runs in (set at setup)
        for name, sub_config in models.items():
            sub_path = f"{path}.Models.{name}"
            if not isinstance(sub_config, dict):
                raise ConfigError(f"{sub_path}: expected a mapping, got {sub_config!r}")
            sub_config = dict(sub_config)
            if "inference_model" in sub_config:  # a teacher given as an exported model
                from ppdistill.modeling.architectures.exported_model import build_exported_model
                self.add_sublayer(name, build_exported_model(sub_config, path=sub_path))
                self.model_name_list.append(name)
                self.frozen_names.add(name)
                self.pretrained_names.add(name)  # its weights come with it
                continue
            pretrained = sub_config.pop("pretrained", None)
            freeze = bool(sub_config.pop("freeze_params", False))
            precision = parse_precision(sub_config.pop("precision", None),
                                        f"{sub_path}.precision", freeze)
            model = BaseModel(sub_config, path=sub_path)
            if pretrained:
                from ppdistill.utils.save_load import load_pretrained_params
                try:
                    report = load_pretrained_params(model, pretrained)
                except (OSError, ValueError) as error:  # missing, corrupt, not a state dict
                    raise ConfigError(f"{sub_path}.pretrained: {error}") from error
                check_pretrained_report(report, name, freeze, sub_path)
                self.pretrained_names.add(name)
            if freeze:
                for param in model.parameters():
                    param.trainable = False
                    param.stop_gradient = True
                enable_fast_frozen_convs(model)
                model.pin_layers(model.batch_norm_names() + model.dropout_names())
                self.frozen_names.add(name)
                self.precisions[name] = precision
            elif model.model_type == "det":  # CPU training keeps segment inputs only
                enable_recompute(det_segments(model))
            self.add_sublayer(name, model)
            self.model_name_list.append(name)

    def sub_model(self, name):
        """The sub-model registered as ``name``."""
        if name not in self.model_name_list:
            raise KeyError(f"no sub-model {name!r}{suggest(name, self.model_name_list)} "
                           f"(available: {', '.join(self.model_name_list)})")
        return getattr(self, name)

    @property
    def trainable_names(self):
        """Sub-model names that are trained (not ``freeze_params``), in config order."""
        return [name for name in self.model_name_list if name not in self.frozen_names]

    def train(self, *args, **kwargs):
        """Training mode; pinned layers stay in eval mode (they are also re-pinned at forward)."""
        result = super().train(*args, **kwargs)
        for name in self.model_name_list:
            apply_pins = getattr(getattr(self, name), "_apply_pins", None)
            if apply_pins is not None:  # a BaseModel (not an exported teacher)
                apply_pins()
        return result

    def run_sub_model(self, name, x, data=None):
        """One sub-model's output; a frozen one runs without a gradient graph."""
        model = getattr(self, name)
        if name in self.frozen_names:
            with paddle.no_grad():
                return low_precision_forward(model, x, data, self.run_dtypes.get(name))
        return model(x, data)

    def forward(self, x, data=None):
        """``{name: output}`` in config order. Frozen sub-models run first: they keep nothing for
        backward, so their forward's working memory comes before, not on top of, the
        activations the trained sub-models keep for backward. A frozen sub-model runs in eval
        mode without randomness, so the order changes no value."""
        order = ([name for name in self.model_name_list if name in self.frozen_names]
                 + self.trainable_names)
        outputs = {name: self.run_sub_model(name, x, data) for name in order}
        return {name: outputs[name] for name in self.model_name_list}
