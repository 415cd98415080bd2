"""Recognition dictionaries: the one place that turns ``character_dict_path`` into characters.

Used by the label encoders (``ppdistill.data.imaug.label_ops_rec``), the decoders
(``ppdistill.postprocess.rec_postprocess``) and the trainer (head sizes), so all of them agree
on the index table.
"""
import os

from ppdistill.registry import ConfigError

#: characters used when no dictionary is given (the encoders then also lowercase the text).
DEFAULT_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyz"

#: characters that keep their order inside a right-to-left (Arabic) prediction.
_LTR_RUN_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :*./%+-")


#: folder of the dictionaries shipped with the package (ppocr_keys_v1.txt, en_dict.txt).
SHIPPED_DICT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dict")


def resolve_dict_path(character_dict_path):
    """The dictionary file to read.

    A path that exists is used as is. Otherwise, a path naming a shipped dictionary
    (``ppdistill/utils/dict/ppocr_keys_v1.txt`` from another working directory, or PaddleOCR's
    ``ppocr/utils/ppocr_keys_v1.txt`` / ``ppocr/utils/en_dict.txt``) resolves to the packaged
    copy, so shipped and PaddleOCR configs work from any directory. Anything else is an error.
    """
    path = str(character_dict_path)
    if os.path.isfile(path):
        return path
    normalized = path.replace("\\", "/")
    if normalized.startswith(("ppdistill/utils/", "./ppdistill/utils/", "ppocr/utils/",
                              "./ppocr/utils/")):
        shipped = os.path.join(SHIPPED_DICT_DIR, os.path.basename(normalized))
        if os.path.isfile(shipped):
            return shipped
    raise ConfigError(f"character_dict_path: dictionary file {path!r} does not exist")


def load_characters(character_dict_path, use_space_char=False):
    """The dictionary characters, in index order, without any special token.

    - ``character_dict_path`` None: the 36 characters ``0-9a-z``; ``use_space_char`` is then
      ignored (as in PaddleOCR).
    - otherwise: one entry per line of the UTF-8 file, in file order; the line break and then
      any ``\\r``/``\\n`` at either end are stripped, spaces are kept, and blank or duplicated
      lines still count as entries (so indices match PaddleOCR's). With ``use_space_char`` a
      ``" "`` is appended.

    Raises ``ConfigError`` when the file does not exist or is not UTF-8.
    """
    if character_dict_path is None:
        return list(DEFAULT_CHARACTERS)
    path = resolve_dict_path(character_dict_path)
    characters = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle.readlines(), start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"{path}:{number}: the dictionary is not valid UTF-8") from None
            characters.append(line.rstrip("\n").strip("\r\n"))
    if use_space_char:
        characters.append(" ")
    return characters


def sar_index_table(owner, characters):
    """SAR's index table, shared by SARLabelEncode and SARLabelDecode.

    ``characters + [<UKN>, <BOS/EOS>, <PAD>]``: unknown n, start = end n+1 (one shared index),
    padding n+2. Sets ``unknown_idx``, ``start_idx``, ``end_idx`` and ``padding_idx`` on
    ``owner`` and returns the table.
    """
    table = list(characters) + ["<UKN>", "<BOS/EOS>", "<PAD>"]
    owner.unknown_idx = len(table) - 3
    owner.start_idx = owner.end_idx = len(table) - 2
    owner.padding_idx = len(table) - 1
    return table


def is_right_to_left(character_dict_path):
    """PaddleOCR's rule: a dictionary whose path contains ``arabic`` is read right to left."""
    return character_dict_path is not None and "arabic" in str(character_dict_path)


def reverse_right_to_left(text):
    """Reverse the order of the runs of ``text``, keeping each Latin/digit run's own order.

    A run is a maximal sequence of Latin letters, digits, spaces and ``: * . / % + -``; every
    other character is a run of its own. E.g. ``"ab" + "ج" + "12"`` becomes ``"12" + "ج" + "ab"``.
    """
    runs, current = [], ""
    for char in text:
        if char in _LTR_RUN_CHARS:
            current += char
            continue
        if current:
            runs.append(current)
            current = ""
        runs.append(char)
    if current:
        runs.append(current)
    return "".join(reversed(runs))
