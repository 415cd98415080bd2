"""DistillationModel: several BaseModels trained side by side, output ``{name: output}``."""
import copy

import paddle
from paddle import nn

from ppdistill.modeling.architectures.base_model import BaseModel
from ppdistill.modeling.fast_conv import enable_fast_frozen_convs
from ppdistill.registry import ConfigError, suggest

_TOP_KEYS = ("name", "model_type", "algorithm", "Models")
_NORM_AND_DROPOUT = (nn.layer.norm._BatchNormBase, nn.BatchNorm, nn.Dropout, nn.Dropout2D, nn.Dropout3D,
                     nn.AlphaDropout)


class DistillationModel(nn.Layer):
    """Wraps any number of sub-models (Teacher, Student, Student2, ...) built from ``Models``.

    Sub-models are registered under their config names, in config order, so parameters are named
    ``Student.backbone.conv.conv.weight`` exactly as in PaddleOCR and its released checkpoints
    load unchanged. ``forward(x, data)`` returns ``{name: sub_model(x, data)}``.

    Per sub-model keys besides the BaseModel ones:

    - ``pretrained``: a ``.pdparams`` path (with or without the suffix) loaded at construction.
    - ``freeze_params``: the sub-model's parameters are not trainable, it builds no gradient
      graph (its forward runs under ``paddle.no_grad``) and its BatchNorm and Dropout layers stay
      in eval mode whatever mode the wrapper is put in, so BN running statistics are used and
      never updated. *Difference from PaddleOCR*, where a frozen teacher's BN statistics drift
      during training. The head keeps following the wrapper's mode, so a frozen teacher yields
      the same output layout (e.g. all three DB maps in training) as the trainable models.
      On CPU its large-kernel (>= 5x5) stride-1 convolutions run through a faster shifted-GEMM
      forward (``ppdistill.modeling.fast_conv``; ``PPDISTILL_FAST_CONV=0`` turns it off).

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
        for name, sub_config in models.items():
            sub_path = f"{path}.Models.{name}"
            if not isinstance(sub_config, dict):
                raise ConfigError(f"{sub_path}: expected a mapping, got {sub_config!r}")
            sub_config = dict(sub_config)
            pretrained = sub_config.pop("pretrained", None)
            freeze = bool(sub_config.pop("freeze_params", False))
            model = BaseModel(sub_config, path=sub_path)
            if pretrained:
                from ppdistill.utils.save_load import load_pretrained_params
                load_pretrained_params(model, pretrained)
            if freeze:
                for param in model.parameters():
                    param.trainable = False
                    param.stop_gradient = True
                enable_fast_frozen_convs(model)
                self.frozen_names.add(name)
            self.add_sublayer(name, model)
            self.model_name_list.append(name)
        self._pin_frozen_layers()

    def sub_model(self, name):
        """The sub-model registered as ``name``."""
        if name not in self.model_name_list:
            raise KeyError(f"no sub-model {name!r}{suggest(name, self.model_name_list)} "
                           f"(available: {', '.join(self.model_name_list)})")
        return getattr(self, name)

    def _pin_frozen_layers(self):
        for name in self.frozen_names:
            for layer in getattr(self, name).sublayers(include_self=True):
                if isinstance(layer, _NORM_AND_DROPOUT):
                    layer.eval()

    def train(self):
        super().train()
        self._pin_frozen_layers()
        return self

    def forward(self, x, data=None):
        outputs = {}
        for name in self.model_name_list:
            model = getattr(self, name)
            if name in self.frozen_names:
                with paddle.no_grad():
                    outputs[name] = model(x, data)
            else:
                outputs[name] = model(x, data)
        return outputs
