"""Recognition decoders: CTC, SAR and NRTR head outputs -> ``[(text, score), ...]``.

Each decoder has ``.character``, the full index table of its head (special tokens included),
so ``len(decoder.character)`` is the head's class count (CTC: blank + characters). The
dictionary is read by :func:`ppdistill.utils.char_dict.load_characters`, shared with the label
encoders. Inputs may be paddle tensors or numpy arrays; ``label`` (an int array [B, L]) is
decoded too when given, and the call then returns ``(predictions, labels)``.
"""
import re

import numpy as np
import paddle

from ppdistill.registry import POSTPROCESS
from ppdistill.utils.char_dict import (is_right_to_left, load_characters, reverse_right_to_left,
                                        sar_index_table)


def to_numpy(value):
    """A tensor or array-like as a numpy array."""
    if isinstance(value, paddle.Tensor):
        return value.numpy()
    return np.asarray(value)


def _mean_score(probs):
    """Mean of ``probs`` as a Python float; 0.0 when empty."""
    return float(np.mean(probs)) if len(probs) else 0.0


class BaseRecLabelDecode:
    """Dictionary handling shared by the decoders (not registered by itself).

    Args:
        character_dict_path: dictionary file (one character per line); None = ``0-9a-z``.
        use_space_char: append ``" "`` to the dictionary.

    A path containing ``arabic`` reverses the decoded runs (right-to-left script); unlike
    PaddleOCR, which does this only in the CTC decoder, every decoder here does it.
    """

    def __init__(self, character_dict_path=None, use_space_char=False):
        self.character_dict_path = character_dict_path
        self.use_space_char = bool(use_space_char)
        self.reverse = is_right_to_left(character_dict_path)
        self.character = self.add_special_char(load_characters(character_dict_path, use_space_char))
        self.dict = {char: index for index, char in enumerate(self.character)}

    def add_special_char(self, characters):
        return characters

    def _finish(self, chars, probs):
        text = "".join(chars)
        if self.reverse:
            text = reverse_right_to_left(text)
        return text, _mean_score(probs)

    @staticmethod
    def _argmax(preds, what):
        preds = to_numpy(preds)
        if preds.ndim != 3:
            raise ValueError(f"{what}: expected scores [B, T, C], got shape {list(preds.shape)}")
        return preds.argmax(axis=2), preds.max(axis=2)


@POSTPROCESS.register()
class CTCLabelDecode(BaseRecLabelDecode):
    """Greedy CTC decoding. Table: 0 ``blank``, then the characters.

    ``decode(preds, label=None)``: ``preds`` [B, T, C] (probabilities in eval mode; a list or
    tuple: its last element). Per sample: argmax path, a position is kept if it differs from the
    previous *raw* position (so "a, blank, a" gives "aa" and "a, a" gives "a") and is not the
    blank; text = kept characters, score = mean max-probability of kept positions (0.0 if none).
    Labels are decoded without merging repeats, ignoring 0, score 1.0.

    Args:
        character_dict_path: dictionary file (from ``Global``); None = ``0-9a-z``.
        use_space_char: append ``" "`` (from ``Global``).

    YAML::

        PostProcess:
          name: CTCLabelDecode
    """

    def __init__(self, character_dict_path=None, use_space_char=False):
        super().__init__(character_dict_path, use_space_char)

    def add_special_char(self, characters):
        return ["blank"] + characters

    def decode(self, text_index, text_prob=None, is_remove_duplicate=False):
        results = []
        for row, indices in enumerate(np.asarray(text_index)):
            indices = np.asarray(indices).astype(np.int64).reshape(-1)
            keep = indices != 0
            if is_remove_duplicate and len(indices) > 1:
                keep[1:] &= indices[1:] != indices[:-1]
            chars = [self.character[i] for i in indices[keep]]
            probs = (np.asarray(text_prob[row])[keep] if text_prob is not None
                     else np.ones(len(chars)))
            results.append(self._finish(chars, probs))
        return results

    def __call__(self, preds, label=None):
        if isinstance(preds, (list, tuple)):
            preds = preds[-1]
        if isinstance(preds, dict):
            # a MultiHead's training output {ctc, ctc_neck, sar|gtc}: decode its CTC branch
            # (PaddleOCR's trainer special-cases this by loss name instead)
            if "ctc" not in preds:
                raise TypeError(f"{type(self).__name__}: got a dict of outputs "
                                f"({', '.join(map(str, preds))}) without a 'ctc' entry; select "
                                f"the CTC tensor (e.g. with DistillationCTCLabelDecode key)")
            preds = preds["ctc"]
        preds_idx, preds_prob = self._argmax(preds, type(self).__name__)
        text = self.decode(preds_idx, preds_prob, is_remove_duplicate=True)
        if label is None:
            return text
        return text, self.decode(to_numpy(label))


@POSTPROCESS.register()
class SARLabelDecode(BaseRecLabelDecode):
    """SAR decoding. Table: characters 0..n−1, ``<UKN>`` n, ``<BOS/EOS>`` n+1, ``<PAD>`` n+2.

    Per sample, along the argmax path: ``<PAD>`` is skipped; ``<BOS/EOS>`` ends the text (in a
    label, a leading one is the start token and is skipped); other indices append their table
    entry. Score = mean max-probability of the appended positions (1.0 for labels).
    With ``rm_symbol`` the text is lowercased and everything except a–z, 0–9 and CJK
    (U+4E00–U+9FA5) is removed.

    Args:
        character_dict_path, use_space_char: as :class:`CTCLabelDecode`.
        rm_symbol: strip symbols as above.

    Difference from PaddleOCR: an empty prediction scores 0.0 (PaddleOCR: NaN, the mean of
    nothing), as the CTC decoder does.

    YAML::

        PostProcess:
          name: SARLabelDecode
          rm_symbol: true
    """

    _SYMBOLS = re.compile("[^a-z0-9\u4e00-\u9fa5]")

    def __init__(self, character_dict_path=None, use_space_char=False, rm_symbol=False):
        super().__init__(character_dict_path, use_space_char)
        self.rm_symbol = bool(rm_symbol)

    def add_special_char(self, characters):
        return sar_index_table(self, characters)

    def decode(self, text_index, text_prob=None):
        results = []
        for row, indices in enumerate(np.asarray(text_index)):
            chars, probs = [], []
            for pos, index in enumerate(np.asarray(indices).reshape(-1)):
                index = int(index)
                if index == self.padding_idx:
                    continue
                if index == self.end_idx:
                    if text_prob is None and pos == 0:
                        continue
                    break
                if not 0 <= index < len(self.character):
                    continue
                chars.append(self.character[index])
                probs.append(float(text_prob[row][pos]) if text_prob is not None else 1.0)
            text, score = self._finish(chars, probs)
            if self.rm_symbol:
                text = self._SYMBOLS.sub("", text.lower())
            results.append((text, score))
        return results

    def __call__(self, preds, label=None):
        preds_idx, preds_prob = self._argmax(preds, type(self).__name__)
        text = self.decode(preds_idx, preds_prob)
        if label is None:
            return text
        return text, self.decode(to_numpy(label))


@POSTPROCESS.register()
class NRTRLabelDecode(BaseRecLabelDecode):
    """NRTR decoding. Table: 0 ``blank``, 1 ``<unk>``, 2 ``<s>``, 3 ``</s>``, characters from 4.

    ``preds`` is either scores [B, T, C] (a tensor or array: argmax / max), a list/tuple
    ``(ids [B, T], probs [B, T])`` from a decoder that already picked tokens (a leading start
    token column is dropped), or a MultiHead training dict (its ``gtc`` logits are decoded).
    Per sample the text is read up to ``</s>``; score = mean probability of the characters read.
    Labels are decoded from ``label[:, 1:]``.

    Args:
        character_dict_path: as :class:`CTCLabelDecode`.
        use_space_char: append ``" "`` (PaddleOCR's default here is true, unlike the encoder).

    Differences from PaddleOCR:

    - only a list/tuple is read as ``(ids, probs)``; PaddleOCR checks ``len(preds) == 2``, so a
      score tensor with batch size 2 was misread as ids and probabilities;
    - the special tokens ``blank``, ``<unk>`` and ``<s>`` are skipped instead of being written
      into the text literally (e.g. ``"<s>a"``);
    - an empty prediction scores 0.0 (PaddleOCR: NaN).

    YAML::

        PostProcess:
          name: NRTRLabelDecode
    """

    SPECIALS = ("blank", "<unk>", "<s>", "</s>")
    START, END = 2, 3

    def __init__(self, character_dict_path=None, use_space_char=True):
        super().__init__(character_dict_path, use_space_char)

    def add_special_char(self, characters):
        return list(self.SPECIALS) + characters

    def decode(self, text_index, text_prob=None):
        results = []
        for row, indices in enumerate(np.asarray(text_index)):
            chars, probs = [], []
            for pos, index in enumerate(np.asarray(indices).reshape(-1)):
                index = int(index)
                if index == self.END:
                    break
                if index < len(self.SPECIALS) or index >= len(self.character):
                    continue
                chars.append(self.character[index])
                probs.append(float(text_prob[row][pos]) if text_prob is not None else 1.0)
            results.append(self._finish(chars, probs))
        return results

    def __call__(self, preds, label=None):
        if isinstance(preds, dict):
            # a MultiHead's training output {ctc, ctc_neck, gtc}: decode its NRTR (gtc) branch
            if "gtc" not in preds:
                raise TypeError(f"{type(self).__name__}: got a dict of outputs "
                                f"({', '.join(map(str, preds))}) without a 'gtc' entry")
            preds = preds["gtc"]
        if isinstance(preds, (list, tuple)):
            if len(preds) != 2:
                raise ValueError(f"NRTRLabelDecode: a list/tuple input must be (ids, probs), "
                                 f"got {len(preds)} items")
            preds_idx, preds_prob = to_numpy(preds[0]), to_numpy(preds[1])
            if preds_idx.ndim == 2 and preds_idx.shape[1] > 0 and preds_idx[0][0] == self.START:
                preds_idx, preds_prob = preds_idx[:, 1:], preds_prob[:, 1:]
        else:
            preds_idx, preds_prob = self._argmax(preds, type(self).__name__)
        text = self.decode(preds_idx, preds_prob)
        if label is None:
            return text
        return text, self.decode(to_numpy(label)[:, 1:])
