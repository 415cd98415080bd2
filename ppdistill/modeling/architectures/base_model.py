"""BaseModel: Transform -> Backbone -> Neck -> Head, as in PaddleOCR."""
import copy

from paddle import nn

from ppdistill.registry import ConfigError, suggest

_MODEL_KEYS = ("model_type", "algorithm", "in_channels", "Transform", "Backbone", "Neck", "Head",
               "return_all_feats", "freeze_bn_stats")
#: layers whose training-mode behaviour depends on the batch (statistics) or is random
BATCH_NORMS = (nn.layer.norm._BatchNormBase, nn.BatchNorm)
DROPOUTS = (nn.Dropout, nn.Dropout2D, nn.Dropout3D, nn.AlphaDropout)


class BaseModel(nn.Layer):
    """One OCR model built from an ``Architecture`` section (or one ``Architecture.Models`` entry).

    Each part is optional except the backbone; each receives the previous part's
    ``out_channels`` as ``in_channels``. Sub-layers are named ``transform``, ``backbone``,
    ``neck`` and ``head`` so parameter names match PaddleOCR's (``backbone.conv.conv.weight``).

    ``freeze_bn_stats: true`` keeps every BatchNorm of the model on its running statistics
    (eval-mode normalisation, statistics never updated) while its weights are fine-tuned;
    ``false`` never pins them; left out, the trainer pins the BatchNorm layers whose parameters
    receive no gradient in the first step (see ``ppdistill.engine.grad_audit``). Pinning is
    re-applied at every forward, so no ``train()`` call on a wrapper (``paddle.DataParallel``
    sets ``training`` on every sub-layer directly) can switch a pinned layer back.

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
          freeze_bn_stats: false     # optional; true: BN statistics fixed while fine-tuning
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
        self.freeze_bn_stats = config.get("freeze_bn_stats")
        if self.freeze_bn_stats not in (None, True, False):
            raise ConfigError(f"{path}.freeze_bn_stats: expected true or false, got "
                              f"{self.freeze_bn_stats!r}")
        self._pinned = set()  # names (as in named_sublayers) of layers kept in eval mode
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

        if self.freeze_bn_stats:
            self.pin_layers(self.batch_norm_names())

    # ---------------------------------------------------------------- pinned (eval-mode) layers
    def batch_norm_names(self):
        """Names (``backbone.bn``) of every BatchNorm layer, in ``named_sublayers`` order."""
        return [name for name, layer in self.named_sublayers() if isinstance(layer, BATCH_NORMS)]

    def dropout_names(self):
        return [name for name, layer in self.named_sublayers() if isinstance(layer, DROPOUTS)]

    def pin_layers(self, names):
        """Keep the named sub-layers in eval mode from now on.

        A pinned BatchNorm normalises with its running statistics and never updates them
        (``use_global_stats``); its weight and bias still train. A pinned Dropout is the identity.
        Layers are found by name at every forward, so a layer replaced later (e.g. by
        ``SyncBatchNorm.convert_sync_batchnorm``) stays pinned.
        """
        self._pinned.update(names)
        self._apply_pins()

    def unpin_layers(self, names):
        """Undo :meth:`pin_layers` for ``names``: they follow the model's train/eval mode again
        (a BatchNorm normalises with batch statistics in training and updates its running ones)."""
        names = set(names) & self._pinned
        self._pinned.difference_update(names)
        for name, layer in self.named_sublayers():
            if name in names:
                layer.training = self.training
                if isinstance(layer, BATCH_NORMS):
                    layer._use_global_stats = None

    @property
    def pinned_layer_names(self):
        return sorted(self._pinned)

    def _apply_pins(self):
        if not self._pinned:
            return
        for name, layer in self.named_sublayers():
            if name in self._pinned:
                layer.training = False
                if isinstance(layer, BATCH_NORMS):
                    layer._use_global_stats = True

    def train(self, *args, **kwargs):  # paddle 3 takes ``mode``, paddle 2.6 nothing
        result = super().train(*args, **kwargs)
        self._apply_pins()
        return result

    def forward(self, x, data=None):
        self._apply_pins()
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
