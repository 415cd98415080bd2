"""Data transforms (PaddleOCR's ``imaug``): decoding, label encoding, augmentation, DB targets.

A transform is a callable ``op(data) -> data or None`` on a sample dict (``image``, ``label``,
``polys``, ...). Returning ``None`` rejects the sample; the dataset then draws another one.
Every module of this package is imported here so its ``@TRANSFORMS.register()`` classes exist.

The ``transforms`` list of a dataset config uses PaddleOCR's one-key form::

    transforms:
      - DecodeImage: {img_mode: BGR, channel_first: false}
      - DetLabelEncode:
      - KeepKeys: {keep_keys: [image, polys]}
"""
from ppdistill.registry import TRANSFORMS, ConfigError
from ppdistill.utils.autoimport import import_submodules

import_submodules(__name__, __path__)

__all__ = ["create_operators", "transform"]


def create_operators(op_param_list, global_config=None, path="Train.dataset.transforms"):
    """Build the list ``[{OpName: params_or_None}, ...]`` into transform objects.

    Arguments an op accepts and does not set (e.g. ``character_dict_path``, ``use_space_char``,
    ``max_text_length``) are filled in from ``global_config`` (the ``Global`` section).
    Errors name the entry, e.g. ``Train.dataset.transforms[3].IaaAugment: ...``.
    """
    if not isinstance(op_param_list, (list, tuple)):
        raise ConfigError(f"{path}: expected a list of one-key mappings, got {op_param_list!r}")
    ops = []
    for i, entry in enumerate(op_param_list):
        where = f"{path}[{i}]"
        try:
            ops.append(TRANSFORMS.build_single_key(entry, where, defaults=global_config))
        except ConfigError as exc:
            if str(exc).startswith(where):
                raise
            raise ConfigError(f"{where}: {exc}") from exc
    return ops


def transform(data, ops=None):
    """Apply ``ops`` in order; return ``None`` as soon as one of them returns ``None``."""
    for op in ops or []:
        data = op(data)
        if data is None:
            return None
    return data
