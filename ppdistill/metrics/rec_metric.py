"""RecMetric: word accuracy and normalised edit distance of recognised text."""
import string

from rapidfuzz.distance import Levenshtein

from ppdistill.registry import METRICS

_ALNUM = set(string.digits + string.ascii_letters)


@METRICS.register()
class RecMetric:
    """Exact-match accuracy and ``1 − mean normalised Levenshtein distance``.

    ``metric((preds, labels), batch=None)`` with ``preds``/``labels`` lists of ``(text, score)``
    (the output of a rec decoder called with the label). Per pair: with ``ignore_space`` all
    spaces are removed from both texts; with ``is_filter`` only ASCII letters and digits are
    kept, lowercased. The distance is the unit-cost edit distance divided by the longer
    length (0 when both are empty). With ε = 1e-5 and n pairs:
    ``acc = correct / (n + ε)``, ``norm_edit_dis = 1 − Σdist / (n + ε)`` (so one correct
    sample gives 0.99999, as in PaddleOCR).

    The call returns the batch's values and adds to running totals; :meth:`get_metric` returns
    the values over the totals and resets them.

    Args:
        main_indicator: the value used to pick the best checkpoint (``acc``).
        is_filter: compare letters and digits only, case-insensitively.
        ignore_space: ignore spaces (PaddleOCR's distillation configs set false).

    YAML::

        Metric:
          name: RecMetric
          main_indicator: acc
          ignore_space: false
    """

    EPS = 1e-5

    def __init__(self, main_indicator="acc", is_filter=False, ignore_space=True):
        self.main_indicator = main_indicator
        self.is_filter = bool(is_filter)
        self.ignore_space = bool(ignore_space)
        self.reset()

    def _normalise(self, text):
        if self.ignore_space:
            text = text.replace(" ", "")
        if self.is_filter:
            text = "".join(c for c in text if c in _ALNUM).lower()
        return text

    def _values(self, correct, total, distance):
        return {"acc": correct / (total + self.EPS),
                "norm_edit_dis": 1 - distance / (total + self.EPS)}

    def __call__(self, pred_label, batch=None, **kwargs):
        if not isinstance(pred_label, (list, tuple)) or len(pred_label) != 2:
            raise ValueError("RecMetric: expected (predictions, labels) from a rec decoder "
                             "called with the label")
        preds, labels = pred_label
        if len(preds) != len(labels):
            raise ValueError(f"RecMetric: {len(preds)} predictions for {len(labels)} labels")
        correct, distance = 0, 0.0
        for (pred, _), (target, _) in zip(preds, labels):
            pred, target = self._normalise(pred), self._normalise(target)
            distance += Levenshtein.normalized_distance(pred, target)
            correct += int(pred == target)
        self.correct_num += correct
        self.all_num += len(preds)
        self.norm_edit_dis += distance
        return self._values(correct, len(preds), distance)

    def get_metric(self):
        """``{"acc", "norm_edit_dis"}`` since the last reset; then reset."""
        result = self._values(self.correct_num, self.all_num, self.norm_edit_dis)
        self.reset()
        return result

    def reset(self):
        self.correct_num = 0
        self.all_num = 0
        self.norm_edit_dis = 0.0
