"""BaseModel: Transform -> Backbone -> Neck -> Head, as in PaddleOCR."""
import copy

from paddle import nn

from ppdistill.registry import ConfigError, suggest

_MODEL_KEYS = ("model_type", "algorithm", "in_channels", "Transform", "Backbone", "Neck", "Head",
               "return_all_feats")


class BaseModel(nn.Layer):
    """One OCR model built from an ``Architecture`` section (or one ``Architecture.Models`` entry).

    Each part is optional except the backbone; each receives the previous part's
    ``out_channels`` as ``in_channels``. Sub-layers are named ``transform``, ``backbone``,
    ``neck`` and ``head`` so parameter names match PaddleOCR's (``backbone.conv.conv.weight``).

    With ``return_all_feats`` the training-mode output is ``{backbone_out, neck_out, head_out}``
    (a head that returns a dict contributes its own keys; a MultiHead's ``ctc_neck`` becomes
    ``neck_out``), and the eval-mode output is the head's dict or ``{"head_out": tensor}``.
    Without it the output is whatever the last part returns.

    YAML::

        Architecture:
          model_type: det
          algorithm: DB
          Transform:
          Backbone: {name: MobileNetV3, scale: 0.5, model_name: large, disable_se: true}
          Neck: {name: RSEFPN, out_channels: 96, shortcut: true}
          Head: {name: DBHead, k: 50}
    """

    def __init__(self, config, path="Architecture"):
        super().__init__()
        from ppdistill.modeling.backbones import build_backbone
        from ppdistill.modeling.heads import build_head
        from ppdistill.modeling.necks import build_neck
        from ppdistill.modeling.transforms import build_transform

        config = copy.deepcopy(config)
        unknown = [k for k in config if k not in _MODEL_KEYS]
        if unknown:
            raise ConfigError(f"{path}: unexpected key '{unknown[0]}'"
                              f"{suggest(unknown[0], _MODEL_KEYS)}")
        if "model_type" not in config:
            raise ConfigError(f"{path}: missing 'model_type' (det, rec, ...)")
        if not config.get("Backbone"):
            raise ConfigError(f"{path}: missing 'Backbone'")
        self.model_type = config["model_type"]
        self.algorithm = config.get("algorithm")
        self.return_all_feats = bool(config.get("return_all_feats", False))
        in_channels = config.get("in_channels", 3)

        self.use_transform = bool(config.get("Transform"))
        if self.use_transform:
            self.transform = build_transform(config["Transform"], self.model_type,
                                             path=f"{path}.Transform", in_channels=in_channels)
            in_channels = self.transform.out_channels
        self.backbone = build_backbone(config["Backbone"], self.model_type,
                                       path=f"{path}.Backbone", in_channels=in_channels)
        in_channels = self.backbone.out_channels
        self.use_neck = bool(config.get("Neck"))
        if self.use_neck:
            self.neck = build_neck(config["Neck"], self.model_type, path=f"{path}.Neck",
                                   in_channels=in_channels)
            in_channels = self.neck.out_channels
        self.use_head = bool(config.get("Head"))
        if self.use_head:
            self.head = build_head(config["Head"], self.model_type, path=f"{path}.Head",
                                   in_channels=in_channels)

    def forward(self, x, data=None):
        feats = {}
        if self.use_transform:
            x = self.transform(x)
        x = self.backbone(x)
        self._collect(feats, x, "backbone_out")
        last = "backbone_out"
        if self.use_neck:
            x = self.neck(x)
            self._collect(feats, x, "neck_out")
            last = "neck_out"
        if self.use_head:
            x = self.head(x, targets=data)
            if isinstance(x, dict) and "ctc_neck" in x:
                feats["neck_out"] = x["ctc_neck"]
                feats["head_out"] = x
            else:
                self._collect(feats, x, "head_out")
            last = "head_out"
        if not self.return_all_feats:
            return x
        if self.training:
            return feats
        return x if isinstance(x, dict) else {last: x}

    @staticmethod
    def _collect(feats, value, name):
        if isinstance(value, dict):
            feats.update(value)
        else:
            feats[name] = value
