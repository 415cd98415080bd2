"""MultiHead: a CTC branch plus a SAR or NRTR (GTC) guidance branch, as in PP-OCRv3/v4 rec."""
import copy

from paddle import nn

from ppdistill.modeling.heads.rec_ctc_head import CTCHead
from ppdistill.modeling.heads.rec_nrtr_head import NRTRHead
from ppdistill.modeling.heads.rec_sar_head import SARHead
from ppdistill.modeling.necks.rnn import Im2Seq, SequenceEncoder
from ppdistill.registry import HEADS, ConfigError, Registry, suggest

__all__ = ["MultiHead", "FCTranspose", "AddPos"]

#: head_list entry -> branch class; each class names the out_channels_list key of its class
#: count (``label_decoder``) and how that count follows from the dictionary.
BRANCH_CLASSES = {"CTCHead": CTCHead, "SARHead": SARHead, "NRTRHead": NRTRHead}
BRANCH_DECODERS = {name: cls.label_decoder for name, cls in BRANCH_CLASSES.items()}
NRTR_BRANCH_KEYS = {"max_text_length": 25, "nrtr_dim": 256, "num_decoder_layers": 4}


class FCTranspose(nn.Layer):
    """``[N, C, L] -> [N, L, C]``, then a bias-free Linear ``fc`` (C -> out) unless
    ``only_transpose``."""

    def __init__(self, in_channels, out_channels, only_transpose=False):
        super().__init__()
        self.only_transpose = only_transpose
        if not only_transpose:
            self.fc = nn.Linear(in_channels, out_channels, bias_attr=False)

    def forward(self, x):
        x = x.transpose([0, 2, 1])
        return x if self.only_transpose else self.fc(x)


class AddPos(nn.Layer):
    """Adds a learned position embedding ``dec_pos_embed`` [1, w, dim] (TruncatedNormal 0.02)."""

    def __init__(self, dim, w):
        super().__init__()
        self.dec_pos_embed = self.create_parameter(
            [1, w, dim], default_initializer=nn.initializer.TruncatedNormal(std=0.02))

    def forward(self, x):
        return x + self.dec_pos_embed[:, :x.shape[1], :]


@HEADS.register()
class MultiHead(nn.Layer):
    """CTC head with its own neck, trained jointly with a SAR or NRTR head on the same backbone.

    ``head_list`` holds one-key entries, in registration order:

    - ``CTCHead: {Neck: {name: <encoder_type>, ...}, Head: {...}}`` builds ``ctc_encoder``
      (a :class:`SequenceEncoder` over the 4-D backbone map) and ``ctc_head`` (a
      :class:`CTCHead` with ``out_channels_list.CTCLabelDecode`` classes).
    - ``SARHead: {...}`` builds ``sar_head`` (a :class:`SARHead` on the 4-D map with
      ``out_channels_list.SARLabelDecode`` classes).
    - ``NRTRHead: {max_text_length, nrtr_dim, num_decoder_layers}`` builds ``before_gtc``
      (flatten + bias-free Linear to nrtr_dim, + ``AddPos`` with ``use_pos``) and ``gtc_head``
      (an :class:`NRTRHead` decoder with nrtr_dim // 32 heads).

    ``forward(x, targets)``: evaluation returns the CTC softmax tensor alone. Training returns
    ``{"ctc": logits, "ctc_neck": neck features, "sar" | "gtc": branch logits}``, the SAR/NRTR
    branch reading ``targets[1:]`` (``targets`` = the batch after the image:
    ``[label_ctc, label_sar | label_gtc, length, valid_ratio]``).

    Args:
        in_channels: backbone channels (set by the model).
        out_channels_list: ``{CTCLabelDecode: n, SARLabelDecode: n + 2}`` (or
            ``NRTRLabelDecode: n + 3``); the trainer fills it in from the dictionary
            (:meth:`fill_class_counts`, each branch class declaring its own count).
        head_list: the branches, exactly one ``CTCHead`` and one ``SARHead`` or ``NRTRHead``.
        use_pool: average-pool a [N, 3*W', C]-shaped input with kernel [3, 2] first.
        use_pos: add a learned position embedding before the NRTR decoder.

    Difference from PaddleOCR: unknown branch names or keys, a missing CTC branch, and both SAR
    and NRTR branches at once are rejected at construction (PaddleOCR ignores unknown NRTR keys
    and silently drops a SAR branch when an NRTR branch is present).

    YAML (PP-OCRv3)::

        Head:
          name: MultiHead
          head_list:
            - CTCHead:
                Neck: {name: svtr, dims: 64, depth: 2, hidden_dims: 120, use_guide: True}
                Head: {fc_decay: 0.00001}
            - SARHead: {enc_dim: 512, max_text_length: *max_text_length}

    YAML (PP-OCRv4/v5: svtr neck with [1, 3] kernels, NRTR "gtc" branch of width 384)::

        Head:
          name: MultiHead
          head_list:
            - CTCHead:
                Neck: {name: svtr, dims: 120, depth: 2, hidden_dims: 120, kernel_size: [1, 3],
                       use_guide: True}
                Head: {fc_decay: 0.00001}
            - NRTRHead: {nrtr_dim: 384, max_text_length: *max_text_length}
    """

    def __init__(self, in_channels, out_channels_list, head_list, use_pool=False, use_pos=False):
        super().__init__()
        path = "MultiHead"
        branches = self._parse_head_list(head_list, path)
        if not isinstance(out_channels_list, dict):
            raise ConfigError(f"{path}.out_channels_list: expected a mapping like "
                              f"{{CTCLabelDecode: n, SARLabelDecode: n + 2}}, got "
                              f"{out_channels_list!r} (the trainer fills it in from the dictionary)")
        for name, _ in branches:
            if BRANCH_DECODERS[name] not in out_channels_list:
                raise ConfigError(f"{path}.out_channels_list: missing {BRANCH_DECODERS[name]!r} "
                                  f"for the {name} branch")
        self.in_channels = in_channels
        self.use_pool = use_pool
        self.use_pos = use_pos
        if use_pool:
            self.pool = nn.AvgPool2D(kernel_size=[3, 2], stride=[3, 2], padding=0)
        self.gtc_kind = "sar"
        for index, (name, params) in enumerate(branches):
            where = f"{path}.head_list[{index}].{name}"
            classes = out_channels_list[BRANCH_DECODERS[name]]
            if name == "CTCHead":
                self._build_ctc(in_channels, classes, params, where)
            elif name == "SARHead":
                self.sar_head = _build(SARHead, params, where, in_channels=in_channels,
                                       out_channels=classes)
            else:
                self._build_nrtr(in_channels, classes, params, where)

    @classmethod
    def fill_class_counts(cls, head_config, char_num, path):
        """Fill ``head_config["out_channels_list"]`` (in place) from the dictionary.

        Every branch gets ``{branch.label_decoder: branch.classes_for(char_num)}`` (CTC
        char_num, SAR + 2, NRTR + 3, as PaddleOCR's train.py sets them); a count the config
        sets must agree, extra entries (PaddleOCR's export writes all three) are kept.
        """
        wanted = {}
        for entry in head_config.get("head_list") or []:
            name = next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else None
            if name in BRANCH_CLASSES:
                branch = BRANCH_CLASSES[name]
                wanted[branch.label_decoder] = branch.classes_for(char_num)
        given = head_config.get("out_channels_list")
        if given is None:
            head_config["out_channels_list"] = wanted
            return
        if not isinstance(given, dict):
            return  # the constructor reports the malformed value
        for decoder, classes in wanted.items():
            if decoder in given and given[decoder] != classes:
                raise ConfigError(
                    f"{path}.out_channels_list.{decoder}: the dictionary gives {char_num - 1} "
                    f"characters, so this branch needs {classes} classes, but the config sets "
                    f"{given[decoder]}")
            given.setdefault(decoder, classes)

    @staticmethod
    def _parse_head_list(head_list, path):
        if not isinstance(head_list, (list, tuple)):
            raise ConfigError(f"{path}.head_list: expected a list of one-key mappings, "
                              f"got {head_list!r}")
        branches = []
        for index, entry in enumerate(head_list):
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError(f"{path}.head_list[{index}]: expected a one-key mapping "
                                  f"{{CTCHead|SARHead|NRTRHead: params}}, got {entry!r}")
            name, params = next(iter(entry.items()))
            if name not in BRANCH_DECODERS:
                raise ConfigError(f"{path}.head_list[{index}]: unknown branch {name!r}"
                                  f"{suggest(name, BRANCH_DECODERS)} (supported: "
                                  f"{', '.join(BRANCH_DECODERS)})")
            params = copy.deepcopy(params) if params else {}
            if not isinstance(params, dict):
                raise ConfigError(f"{path}.head_list[{index}].{name}: expected a mapping, "
                                  f"got {params!r}")
            branches.append((name, params))
        names = [name for name, _ in branches]
        if names.count("CTCHead") != 1:
            raise ConfigError(f"{path}.head_list: needs exactly one CTCHead branch, got {names}")
        guides = [name for name in names if name != "CTCHead"]
        if len(guides) != 1:
            raise ConfigError(f"{path}.head_list: needs exactly one SARHead or NRTRHead branch "
                              f"besides the CTCHead, got {names}")
        return branches

    def _build_ctc(self, in_channels, classes, params, where):
        unknown = [key for key in params if key not in ("Neck", "Head")]
        if unknown:
            raise ConfigError(f"{where}: unexpected key {unknown[0]!r}"
                              f"{suggest(unknown[0], ['Neck', 'Head'])} (expected Neck and Head)")
        neck = dict(params.get("Neck") or {})
        if "name" not in neck:
            raise ConfigError(f"{where}.Neck: missing 'name' (the SequenceEncoder encoder_type, "
                              f"e.g. svtr)")
        encoder_type = neck.pop("name")
        self.encoder_reshape = Im2Seq(in_channels)  # unused; kept for PaddleOCR's layout
        self.ctc_encoder = _build(SequenceEncoder, neck, f"{where}.Neck", in_channels=in_channels,
                                  encoder_type=encoder_type)
        self.ctc_head = _build(CTCHead, dict(params.get("Head") or {}), f"{where}.Head",
                               in_channels=self.ctc_encoder.out_channels, out_channels=classes)

    def _build_nrtr(self, in_channels, classes, params, where):
        for key in params:
            if key not in NRTR_BRANCH_KEYS:
                raise ConfigError(f"{where}: unexpected key {key!r}"
                                  f"{suggest(key, NRTR_BRANCH_KEYS)} (accepted: "
                                  f"{', '.join(NRTR_BRANCH_KEYS)})")
        args = dict(NRTR_BRANCH_KEYS, **params)
        dim = args["nrtr_dim"]
        layers = [nn.Flatten(2), FCTranspose(in_channels, dim)]
        if self.use_pos:
            layers.append(AddPos(dim, 80))
        self.before_gtc = nn.Sequential(*layers)
        self.gtc_head = NRTRHead(d_model=dim, nhead=dim // 32, num_encoder_layers=-1,
                                 beam_size=-1, num_decoder_layers=args["num_decoder_layers"],
                                 max_len=args["max_text_length"], dim_feedforward=dim * 4,
                                 out_channels=classes)
        self.gtc_kind = "gtc"

    def forward(self, x, targets=None):
        if self.use_pool:
            x = self.pool(x.reshape([0, 3, -1, self.in_channels]).transpose([0, 3, 1, 2]))
        elif x.ndim != 4:
            raise ValueError(f"MultiHead: expected a 4-D backbone map [N, C, H, W] with C = "
                             f"{self.in_channels}, got shape {list(x.shape)} (an SVTRNet "
                             f"backbone needs last_stage: true)")
        ctc_neck = self.ctc_encoder(x)
        ctc = self.ctc_head(ctc_neck, targets)
        if not self.training:
            return ctc
        if targets is None or len(targets) < 2:
            raise ValueError("MultiHead: training needs targets = the batch after the image, "
                             "[label_ctc, label_sar | label_gtc, length, valid_ratio]")
        out = {"ctc": ctc, "ctc_neck": ctc_neck}
        if self.gtc_kind == "sar":
            out["sar"] = self.sar_head(x, targets[1:])
        else:
            out["gtc"] = self.gtc_head(self.before_gtc(x), targets[1:])
        return out


def _build(cls, params, path, **extra):
    """``cls(**params, **extra)`` with the registry's key check; ``extra`` may not be overridden."""
    for key in extra:
        if key in params:
            raise ConfigError(f"{path}: '{key}' is set by MultiHead and may not be given here")
    return Registry.build_class(cls, params, path, **extra)
