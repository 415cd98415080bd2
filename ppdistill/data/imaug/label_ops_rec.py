"""Recognition label encoders: text -> padded index arrays for the CTC, SAR and NRTR heads.

Each encoder reads ``data["label"]`` (the text), and on success writes ``label`` (int64
``[max_text_length]``) and ``length`` (0-D int64, the number of encoded characters). A text that
is empty, too long, or has no character of the dictionary makes the op return ``None`` (the
dataset skips the sample with a warning naming its source and counts it). Index tables follow
PaddleOCR exactly so labels, heads and checkpoints are interchangeable; the dictionary is read by
:func:`ppdistill.utils.char_dict.load_characters`, shared with the decoders.
"""
import numpy as np

from ppdistill.registry import TRANSFORMS, ConfigError
from ppdistill.utils.char_dict import load_characters, sar_index_table


class BaseRecLabelEncode:
    """Dictionary handling shared by the recognition encoders (not a transform by itself).

    ``self.character`` is the full index table (special tokens included), ``self.dict`` maps a
    character to its index (for a duplicated dictionary line the last index wins).
    Subclasses override :meth:`add_special_char` and ``__call__``.
    """

    def __init__(self, max_text_length=None, character_dict_path=None, use_space_char=False):
        name = type(self).__name__
        if max_text_length is None:
            raise ConfigError(f"{name}: max_text_length is required (set Global.max_text_length "
                              f"or the op's own max_text_length)")
        if isinstance(max_text_length, bool) or not isinstance(max_text_length, (int, np.integer)) \
                or max_text_length < 1:
            raise ConfigError(f"{name}: max_text_length must be a positive integer, "
                              f"got {max_text_length!r}")
        self.max_text_len = int(max_text_length)
        self.character_dict_path = character_dict_path
        self.use_space_char = bool(use_space_char)
        # PaddleOCR lowercases only with its built-in 0-9a-z alphabet.
        self.lower = character_dict_path is None
        self.character = self.add_special_char(load_characters(character_dict_path, use_space_char))
        self.dict = {char: index for index, char in enumerate(self.character)}

    def add_special_char(self, characters):
        return characters

    def encode(self, text):
        """Indices of the known characters of ``text``, or ``None``.

        ``None`` when ``text`` is empty, longer than ``max_text_length`` (raw length, before
        unknown characters are dropped) or has no known character. Unknown characters are
        dropped silently (PaddleOCR's behaviour).
        """
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str) or not text or len(text) > self.max_text_len:
            return None
        if self.lower:
            text = text.lower()
        indices = [self.dict[char] for char in text if char in self.dict]
        return indices or None

    def __call__(self, data):
        raise NotImplementedError


@TRANSFORMS.register()
class CTCLabelEncode(BaseRecLabelEncode):
    """Encode the text for CTC: index 0 is ``blank``, characters are 1..n (space last if on).

    Writes ``label`` = indices padded with 0 to ``max_text_length``, ``length`` and
    ``label_ace`` (count of every class over the *padded* label, so ``label_ace[0]`` counts the
    padding; used by ACE losses).

    Args:
        max_text_length: label length; longer texts are rejected (from ``Global``).
        character_dict_path: dictionary file, one character per line; None = ``0-9a-z`` with
            lowercasing (from ``Global``).
        use_space_char: append ``" "`` to the dictionary (from ``Global``).

    YAML: ``- CTCLabelEncode:`` (arguments come from ``Global``)
    """

    def __init__(self, max_text_length=None, character_dict_path=None, use_space_char=False):
        super().__init__(max_text_length, character_dict_path, use_space_char)

    def add_special_char(self, characters):
        return ["blank"] + characters

    def __call__(self, data):
        indices = self.encode(data["label"])
        if indices is None:
            return None
        padded = np.zeros(self.max_text_len, dtype=np.int64)
        padded[:len(indices)] = indices
        data["length"] = np.array(len(indices), dtype=np.int64)
        data["label"] = padded
        data["label_ace"] = np.bincount(padded, minlength=len(self.character)).astype(np.int64)
        return data


@TRANSFORMS.register()
class SARLabelEncode(BaseRecLabelEncode):
    """Encode the text for SAR: characters 0..n-1, then ``<UKN>`` n, ``<BOS/EOS>`` n+1 (start
    and end share one index), ``<PAD>`` n+2 (n+3 classes).

    ``label`` = ``[BOS/EOS] + chars + [BOS/EOS]`` padded with PAD to ``max_text_length``;
    ``length`` = number of characters. Texts with ``max_text_length - 1`` or more encoded
    characters are rejected (at most ``max_text_length - 2`` fit).

    Args: as :class:`CTCLabelEncode`.

    YAML: ``- SARLabelEncode:``
    """

    def __init__(self, max_text_length=None, character_dict_path=None, use_space_char=False):
        super().__init__(max_text_length, character_dict_path, use_space_char)

    def add_special_char(self, characters):
        return sar_index_table(self, characters)

    def __call__(self, data):
        indices = self.encode(data["label"])
        if indices is None or len(indices) >= self.max_text_len - 1:
            return None
        padded = np.full(self.max_text_len, self.padding_idx, dtype=np.int64)
        target = [self.start_idx] + indices + [self.end_idx]
        padded[:len(target)] = target
        data["length"] = np.array(len(indices), dtype=np.int64)
        data["label"] = padded
        return data


@TRANSFORMS.register()
class NRTRLabelEncode(BaseRecLabelEncode):
    """Encode the text for NRTR (the PP-OCRv4 GTC branch): 0 ``blank`` (padding), 1 ``<unk>``,
    2 ``<s>``, 3 ``</s>``, characters from 4.

    ``label`` = ``[2] + chars + [3]`` padded with 0 to ``max_text_length``; ``length`` = number
    of characters. Same rejection rule as :class:`SARLabelEncode`.

    Args: as :class:`CTCLabelEncode`.

    YAML: ``- NRTRLabelEncode:``
    """

    SPECIALS = ["blank", "<unk>", "<s>", "</s>"]
    START, END = 2, 3

    def __init__(self, max_text_length=None, character_dict_path=None, use_space_char=False):
        super().__init__(max_text_length, character_dict_path, use_space_char)

    def add_special_char(self, characters):
        return list(self.SPECIALS) + characters

    def __call__(self, data):
        indices = self.encode(data["label"])
        if indices is None or len(indices) >= self.max_text_len - 1:
            return None
        padded = np.zeros(self.max_text_len, dtype=np.int64)
        target = [self.START] + indices + [self.END]
        padded[:len(target)] = target
        data["length"] = np.array(len(indices), dtype=np.int64)
        data["label"] = padded
        return data


@TRANSFORMS.register()
class MultiLabelEncode:
    """Labels for a MultiHead model: CTC plus SAR (default) or another encoder (``gtc_encode``).

    Output dict: ``img_path``, ``image``, ``label_ctc``, ``label_sar`` (when ``gtc_encode`` is
    None) or ``label_gtc`` (otherwise), ``length`` (from the CTC encoding); every other key is
    dropped, as in PaddleOCR, except ``source`` (where the sample came from, kept for messages).
    If either encoder rejects the text the sample is rejected, so at most
    ``max_text_length - 2`` characters fit. ``valid_ratio`` is added later by RecResizeImg.

    Args:
        max_text_length, character_dict_path, use_space_char: as :class:`CTCLabelEncode`,
            shared by both encoders.
        gtc_encode: name of the second encoder, e.g. ``NRTRLabelEncode`` (PP-OCRv4); None =
            ``SARLabelEncode`` (PP-OCRv3).

    YAML::

        - MultiLabelEncode:
            gtc_encode: NRTRLabelEncode
    """

    def __init__(self, max_text_length=None, character_dict_path=None, use_space_char=False,
                 gtc_encode=None):
        self.ctc_encode = CTCLabelEncode(max_text_length, character_dict_path, use_space_char)
        if gtc_encode is None:
            second_cls, self.second_key = SARLabelEncode, "label_sar"
        else:
            second_cls = TRANSFORMS.get(gtc_encode, "MultiLabelEncode.gtc_encode")
            if not (isinstance(second_cls, type) and issubclass(second_cls, BaseRecLabelEncode)):
                raise ConfigError(f"MultiLabelEncode.gtc_encode: {gtc_encode!r} is not a "
                                  f"recognition label encoder (e.g. NRTRLabelEncode)")
            self.second_key = "label_gtc"
        self.second_encode = second_cls(max_text_length, character_dict_path, use_space_char)

    def __call__(self, data):
        # Each encoder writes label/length into its own shallow copy; neither mutates arrays.
        ctc = self.ctc_encode(dict(data))
        second = self.second_encode(dict(data))
        if ctc is None or second is None:
            return None
        out = {"img_path": data.get("img_path"), "image": data.get("image"),
               "label_ctc": ctc["label"], self.second_key: second["label"],
               "length": ctc["length"]}
        if "source" in data:
            out["source"] = data["source"]
        return out
