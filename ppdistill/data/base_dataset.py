"""BaseDataSet: load-with-retry, skipped-sample bookkeeping and extra samples for CopyPaste."""
import logging
import multiprocessing
import random

import numpy as np
import paddle

from ppdistill.data.imaug import create_operators

logger = logging.getLogger("ppdistill.data")

#: distinct bad samples warned about one by one (per process); later ones are only counted
MAX_SAMPLE_WARNINGS = 20


class DataError(RuntimeError):
    """A data set that cannot be used at all (every sample bad, or no sample)."""


class BadSampleError(ValueError):
    """One sample is unusable (a missing entry, an unreadable label...): it is skipped."""


def bad_sample_errors():
    """Exceptions that mean "this sample is bad": I/O, decoding, label parsing (``ValueError``,
    incl. JSON and UTF-8 errors), OpenCV decode errors and degenerate polygons (pyclipper /
    shapely). Anything else (``TypeError``, ``IndexError``, ``KeyError``...) is a bug in a
    transform and propagates with its traceback."""
    errors = [OSError, ValueError]
    try:
        import cv2
        errors.append(cv2.error)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass
    try:
        import pyclipper
        errors.append(pyclipper.ClipperException)
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    try:
        from shapely.errors import ShapelyError
        errors.append(ShapelyError)
    except ImportError:  # pragma: no cover - shapely < 2
        pass
    return tuple(errors)


BAD_SAMPLE_ERRORS = bad_sample_errors()


class BaseDataSet(paddle.io.Dataset):
    """Common machinery of the OCR datasets: apply the transforms, skip bad samples, fail loudly.

    ``dataset[idx]`` loads sample ``idx`` and runs the transforms on it. If loading or a
    transform raises one of :data:`BAD_SAMPLE_ERRORS` (a missing or undecodable image, a label
    that does not parse, a degenerate polygon) or a transform returns ``None``, the sample is
    *bad*: it is logged once (logger ``ppdistill.data``, ``WARNING``, e.g. ``train.txt:12:
    skipped (FileNotFoundError: image './x.jpg' does not exist)``; after
    ``MAX_SAMPLE_WARNINGS`` distinct ones only counted), recorded in :attr:`bad_samples` and
    never tried again. Other exceptions are bugs and propagate.

    - ``train`` mode: a random good sample is returned instead.
    - ``eval`` mode: ``None`` is returned; the collate functions drop it, so a bad sample is
      skipped, never scored in place of another one.

    Every skip is counted in a counter shared with the loader's worker processes;
    :meth:`take_skip_count` reads and resets it (the trainer reports it per epoch, evaluation
    per run). :meth:`check_usable` (called by ``build_dataloader`` in the main process) loads
    samples until one is good and raises :class:`DataError` naming the sources (label files,
    LMDB folders) when none is, so an all-bad data set fails at once instead of inside the
    loader's workers.

    Subclass interface (``SimpleDataSet``, ``LMDBDataSet``)::

        class MyDataSet(BaseDataSet):
            def __init__(self, ..., transforms, global_config=None, mode="train", seed=None):
                super().__init__(transforms, global_config=global_config, mode=mode, seed=seed,
                                 ext_op_transform_idx=2, sources=["path/to/label.txt"])
                ...                       # index the samples

            def __len__(self): ...        # number of samples

            def _load_sample(self, idx):  # raise BadSampleError (or OSError/ValueError) if bad
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
        op_defaults = dict(global_config or {})
        names = {next(iter(e)) for e in transforms or () if isinstance(e, dict) and len(e) == 1}
        if self.mode == "train" and {"MakeBorderMap", "MakeShrinkMap"} <= names:
            # as PaddleOCR (only when both are present): MakeBorderMap/MakeShrinkMap get the
            # loader seed as ``epoch`` (with their total_epoch: shrink ratio 0.4 + 0.2·seed/total)
            op_defaults["epoch"] = seed if seed is not None else 0
        self.ops = create_operators(transforms, op_defaults, path=path)
        self.ext_data_num = next((int(op.ext_data_num) for op in self.ops
                                  if hasattr(op, "ext_data_num")), 0)
        self.bad_samples = {}
        self._skip_counter = multiprocessing.Value("q", 0)  # locked: workers add concurrently

    def __getstate__(self):
        # the shared counter only travels by fork; a pickled copy gets its own
        state = dict(self.__dict__)
        state["_skip_counter"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._skip_counter = multiprocessing.Value("q", 0)  # locked: workers add concurrently

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
            with self._skip_counter.get_lock():
                self._skip_counter.value += 1
            if self.mode != "train":
                return None  # skipped, never replaced: the collate function drops it
            idx = self._random_good_index()

    def take_skip_count(self):
        """Samples skipped (in this process and its loader workers) since the last call."""
        with self._skip_counter.get_lock():
            count = int(self._skip_counter.value)
            self._skip_counter.value = 0
        return count

    def check_usable(self):
        """Load samples in order until one is good; raise :class:`DataError` if none is.

        The random state (numpy, ``random``) is restored afterwards, so probing does not change
        the augmentations of the run.
        """
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            for idx in range(len(self)):
                if idx in self.bad_samples:
                    continue
                if self._try(idx, self.ops, with_ext_data=True) is not None:
                    return
            self._check_not_all_bad()
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

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
        except BAD_SAMPLE_ERRORS as exc:
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
        except BAD_SAMPLE_ERRORS as exc:
            self._mark_bad(idx, f"{type(exc).__name__}: {exc}")
            return None

    def _mark_bad(self, idx, reason):
        if idx not in self.bad_samples:
            self.bad_samples[idx] = reason
            if len(self.bad_samples) <= MAX_SAMPLE_WARNINGS:
                logger.warning(f"{self._describe(idx)}: skipped ({reason})")
            if len(self.bad_samples) == MAX_SAMPLE_WARNINGS:
                logger.warning(f"{MAX_SAMPLE_WARNINGS} bad samples so far: further ones are "
                               f"skipped without a message (the count is reported)")

    def _check_not_all_bad(self):
        n = len(self)
        if len(self.bad_samples) < n:
            return
        sources = ", ".join(self.sources) or "the data"
        if not self.bad_samples:
            raise DataError(f"{type(self).__name__}: {sources} contain no samples")
        last_idx, last_reason = next(reversed(self.bad_samples.items()))
        raise DataError(
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
