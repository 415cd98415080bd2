"""How a recognition head's class count follows from the dictionary.

A head class says it itself, so the trainer never lists head names: a class with
``label_decoder`` and ``dictionary_extra_classes`` (the :class:`DictionarySizedHead` mixin) has
``classes = char_num + dictionary_extra_classes``, where ``char_num`` is the CTC count
(blank + characters [+ space]); a container head (``MultiHead``) provides its own
``fill_class_counts``. ``ppdistill.engine.components`` calls ``fill_class_counts`` on whatever
class the config names.
"""
from ppdistill.registry import ConfigError

__all__ = ["DictionarySizedHead"]


class DictionarySizedHead:
    """Mixin for heads whose ``out_channels`` is ``char_num + dictionary_extra_classes``.

    Class attributes:
        label_decoder: the decoder whose character table the head predicts (the key the head
            has in a MultiHead's ``out_channels_list``), e.g. ``CTCLabelDecode``.
        dictionary_extra_classes: classes beyond the CTC count (SAR 2, NRTR 3).
    """

    label_decoder = None
    dictionary_extra_classes = 0

    @classmethod
    def classes_for(cls, char_num):
        """The head's class count for a dictionary with ``char_num`` CTC classes."""
        return char_num + cls.dictionary_extra_classes

    @classmethod
    def fill_class_counts(cls, head_config, char_num, path):
        """Set ``head_config["out_channels"]`` (in place) or check the value the config gives."""
        classes = cls.classes_for(char_num)
        given = head_config.get("out_channels")
        if given is None:
            head_config["out_channels"] = classes
        elif given != classes:
            raise ConfigError(
                f"{path}.out_channels: the dictionary gives {char_num - 1} characters, so the "
                f"head needs {classes} classes, but the config sets {given}")
