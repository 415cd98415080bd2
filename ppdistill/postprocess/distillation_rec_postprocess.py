"""Distillation recognition decoders: decode each sub-model's output, ``{model: result}``."""
from ppdistill.losses.distillation_select import select_output
from ppdistill.postprocess.rec_postprocess import CTCLabelDecode, NRTRLabelDecode, SARLabelDecode
from ppdistill.registry import POSTPROCESS, ConfigError


def _model_names(model_name, owner):
    names = [model_name] if isinstance(model_name, str) else model_name
    if not isinstance(names, (list, tuple)) or not names or \
            not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{owner}.model_name: expected a model name or a non-empty list of "
                          f"names, got {model_name!r}")
    return list(names)


class _DistillationDecodeMixin:
    """Per model: ``preds[name]``, then ``[key]``, then (``multi_head`` and a dict) its
    ``head`` branch; decoded with the parent decoder."""

    head = "ctc"

    def _setup(self, model_name, key, multi_head):
        self.model_name = _model_names(model_name, type(self).__name__)
        self.key = key
        self.multi_head = bool(multi_head)

    def __call__(self, preds, label=None):
        if not isinstance(preds, dict):
            raise TypeError(f"{type(self).__name__}: expected {{model_name: output}} from a "
                            f"DistillationModel, got {type(preds).__name__}")
        output = {}
        for name in self.model_name:
            pred = select_output(preds, name, self.key, loss_name=type(self).__name__)
            if self.multi_head and isinstance(pred, dict):  # train-mode MultiHead output
                pred = select_output(preds, name, self.key, multi_head=True, dis_head=self.head,
                                     loss_name=type(self).__name__)
            output[name] = super().__call__(pred, label)
        return output


@POSTPROCESS.register()
class DistillationCTCLabelDecode(_DistillationDecodeMixin, CTCLabelDecode):
    """:class:`CTCLabelDecode` on each model of ``model_name``; returns ``{model: result}``.

    Per model: ``preds[model]``, then ``[key]`` if set, then, with ``multi_head`` and a dict
    (train-mode MultiHead output), its ``ctc`` entry; an eval-mode MultiHead output is already
    the CTC tensor and is used as is. A missing model or key fails with the available names.

    Args:
        character_dict_path, use_space_char: as :class:`CTCLabelDecode`.
        model_name: sub-model name or list of names (PaddleOCR's default is ``["student"]``).
        key: output entry, e.g. ``head_out``.
        multi_head: take the ``ctc`` branch of a MultiHead dict.

    YAML::

        PostProcess:
          name: DistillationCTCLabelDecode
          model_name: ["Student", "Teacher"]
          key: head_out
          multi_head: true
    """

    head = "ctc"

    def __init__(self, character_dict_path=None, use_space_char=False, model_name=("student",),
                 key=None, multi_head=False):
        CTCLabelDecode.__init__(self, character_dict_path, use_space_char)
        self._setup(model_name, key, multi_head)


@POSTPROCESS.register()
class DistillationSARLabelDecode(_DistillationDecodeMixin, SARLabelDecode):
    """:class:`SARLabelDecode` on each model of ``model_name`` (``sar`` branch with
    ``multi_head``); returns ``{model: result}``. Arguments as
    :class:`DistillationCTCLabelDecode`.

    YAML::

        PostProcess:
          name: DistillationSARLabelDecode
          model_name: ["Student"]
          key: head_out
          multi_head: true
    """

    head = "sar"

    def __init__(self, character_dict_path=None, use_space_char=False, model_name=("student",),
                 key=None, multi_head=False):
        SARLabelDecode.__init__(self, character_dict_path, use_space_char)
        self._setup(model_name, key, multi_head)


@POSTPROCESS.register()
class DistillationNRTRLabelDecode(_DistillationDecodeMixin, NRTRLabelDecode):
    """:class:`NRTRLabelDecode` on each model of ``model_name`` (``gtc`` branch with
    ``multi_head``); returns ``{model: result}``. Arguments as
    :class:`DistillationCTCLabelDecode` (``use_space_char`` defaults to false here, as in
    PaddleOCR).

    YAML::

        PostProcess:
          name: DistillationNRTRLabelDecode
          model_name: ["Student"]
          key: head_out
          multi_head: true
    """

    head = "gtc"

    def __init__(self, character_dict_path=None, use_space_char=False, model_name=("student",),
                 key=None, multi_head=False):
        NRTRLabelDecode.__init__(self, character_dict_path, use_space_char)
        self._setup(model_name, key, multi_head)
