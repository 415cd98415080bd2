"""BaseDataSet: load-with-retry, skipped-sample bookkeeping and extra samples for CopyPaste."""
import logging

import numpy as np
import paddle

from ppdistill.data.imaug import create_operators

logger = logging.getLogger("ppdistill.data")


class BaseDataSet(paddle.io.Dataset):
    """Common machinery of the OCR datasets: apply the transforms, skip bad samples, fail loudly.

    ``dataset[idx]`` loads sample ``idx`` and runs the transforms on it. If loading raises or
    a transform raises or returns ``None``, the sample is *bad*: it is logged once (logger
    ``ppdistill.data``, ``WARNING``, e.g. ``train.txt:12: skipped (FileNotFoundError: image
    './x.jpg' does not exist)``), counted in :attr:`skipped`, never tried again, and another
    sample is returned instead: a random one in ``train`` mode, the next one in ``eval`` mode
    (so repeated evaluations see the same data). When every sample is bad a ``RuntimeError``
    naming the sources (label files, LMDB folders) is raised instead of looping forever.
    With ``num_workers > 0`` each worker process keeps its own record (and warns once itself).

    Subclass interface (``SimpleDataSet``, ``LMDBDataSet``)::

        class MyDataSet(BaseDataSet):
            def __init__(self, ..., transforms, global_config=None, mode="train", seed=None):
                super().__init__(transforms, global_config=global_config, mode=mode, seed=seed,
                                 ext_op_transform_idx=2, sources=["path/to/label.txt"])
                ...                       # index the samples

            def __len__(self): ...        # number of samples

            def _load_sample(self, idx):  # raise (any Exception, readable message) if bad
                return {"img_path": path, "image": encoded_image_bytes, "label": raw_label}

            def _describe(self, idx):     # where the sample comes from, for messages
                return "path/to/label.txt:12"

    The base class adds ``source`` (= ``_describe(idx)``) and ``ext_data`` to the dict before
    the transforms run. ``ext_data`` is the list produced by :meth:`get_ext_data`.

    Args (of this base class):
        transforms: the PaddleOCR-style transform list (see ``create_operators``).
        global_config: the ``Global`` section (fills ``character_dict_path`` etc. into ops).
        mode: ``"train"`` or ``"eval"`` (case-insensitive).
        seed: seed of the subclass's own sampling/shuffling (not of the augmentations).
        ext_op_transform_idx: how many leading transforms prepare an extra sample.
        sources: names of the data sources, quoted in the all-bad error.
        transforms_path: config path used in transform errors (default
            ``"<Mode>.dataset.transforms"``).
    """

    def __init__(self, transforms, global_config=None, mode="train", seed=None,
                 ext_op_transform_idx=2, sources=(), transforms_path=None):
        super().__init__()
        self.mode = str(mode).lower()
        self.seed = seed
        self.ext_op_transform_idx = int(ext_op_transform_idx)
        self.sources = [str(s) for s in sources]
        path = transforms_path or f"{self.mode.capitalize()}.dataset.transforms"
        self.ops = create_operators(transforms, global_config, path=path)
        self.ext_data_num = next((int(op.ext_data_num) for op in self.ops
                                  if hasattr(op, "ext_data_num")), 0)
        self.bad_samples = {}

    # ------------------------------------------------------------------ subclass interface
    def __len__(self):
        raise NotImplementedError

    def _load_sample(self, idx):
        raise NotImplementedError

    def _describe(self, idx):
        return f"sample {idx}"

    # ------------------------------------------------------------------ public
    @property
    def skipped(self):
        """Number of distinct bad samples met so far (in this process)."""
        return len(self.bad_samples)

    def __getitem__(self, idx):
        idx = int(idx)
        while True:
            if idx not in self.bad_samples:
                outs = self._try(idx, self.ops, with_ext_data=True)
                if outs is not None:
                    return outs
            idx = self._replacement(idx)

    def get_ext_data(self):
        """Extra samples for ops with an ``ext_data_num`` attribute (e.g. ``CopyPaste``).

        Random samples are loaded through the first ``ext_op_transform_idx`` transforms; samples
        whose polygons do not have exactly 4 points are passed over. Gives up (returning fewer
        samples) after ``10 · ext_data_num`` attempts.
        """
        if self.ext_data_num <= 0:
            return []
        load_ops = self.ops[:self.ext_op_transform_idx]
        extras = []
        for _ in range(10 * self.ext_data_num):
            if len(extras) >= self.ext_data_num:
                break
            data = self._try(self._random_good_index(), load_ops, with_ext_data=False)
            if data is None or not isinstance(data, dict):
                continue
            polys = np.asarray(data.get("polys", np.zeros((0, 4, 2))))
            if "polys" in data and (polys.ndim != 3 or polys.shape[1] != 4):
                continue
            extras.append(data)
        return extras

    # ------------------------------------------------------------------ helpers
    def _try(self, idx, ops, with_ext_data):
        """Load and transform sample ``idx``; on failure record it and return None."""
        try:
            data = self._load_sample(idx)
            data.setdefault("source", self._describe(idx))
        except Exception as exc:  # noqa: BLE001 - any failure of one sample skips that sample
            self._mark_bad(idx, f"{type(exc).__name__}: {exc}")
            return None
        if with_ext_data:
            data["ext_data"] = self.get_ext_data()
        try:
            for op in ops:
                data = op(data)
                if data is None:
                    self._mark_bad(idx, f"{type(op).__name__} rejected the sample")
                    return None
            return data
        except Exception as exc:  # noqa: BLE001 - any failure of one sample skips that sample
            self._mark_bad(idx, f"{type(exc).__name__}: {exc}")
            return None

    def _mark_bad(self, idx, reason):
        if idx not in self.bad_samples:
            self.bad_samples[idx] = reason
            logger.warning(f"{self._describe(idx)}: skipped ({reason})")

    def _check_not_all_bad(self):
        n = len(self)
        if len(self.bad_samples) < n:
            return
        sources = ", ".join(self.sources) or "the data"
        if not self.bad_samples:
            raise RuntimeError(f"{type(self).__name__}: {sources} contain no samples")
        last_idx, last_reason = next(reversed(self.bad_samples.items()))
        raise RuntimeError(
            f"{type(self).__name__}: all {n} samples of {sources} are bad (e.g. "
            f"{self._describe(last_idx)}: {last_reason}); check data_dir, the label files and "
            f"the transforms")

    def _random_good_index(self):
        self._check_not_all_bad()
        n = len(self)
        for _ in range(32):
            idx = int(np.random.randint(n))
            if idx not in self.bad_samples:
                return idx
        good = [i for i in range(n) if i not in self.bad_samples]
        return int(good[np.random.randint(len(good))])

    def _replacement(self, idx):
        """Another sample to use instead of bad ``idx``."""
        if self.mode == "train":
            return self._random_good_index()
        self._check_not_all_bad()
        n = len(self)
        nxt = (idx + 1) % n
        while nxt in self.bad_samples:
            nxt = (nxt + 1) % n
        return nxt
