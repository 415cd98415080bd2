"""LMDBDataSet: recognition samples from LMDB folders (``num-samples``, ``image-%09d``,
``label-%09d``)."""
import os
import random

import lmdb
import numpy as np

from ppdistill.data.base_dataset import BadSampleError, BaseDataSet, DataError
from ppdistill.registry import DATASETS, ConfigError


def find_lmdb_dirs(data_dir):
    """Every folder under ``data_dir`` (itself included) holding an LMDB ``data.mdb``, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(data_dir, followlinks=True):
        dirnames.sort()
        if "data.mdb" in filenames:
            found.append(dirpath)
    return sorted(found)


_OPEN_ENVS = {"pid": None, "envs": {}}


def open_lmdb(path):
    """This process's read-only, lock-free environment for the LMDB at ``path``.

    py-lmdb refuses to open the same files twice in a process, so environments are shared
    (e.g. by a train and an eval dataset on the same LMDB), keyed by the data file's identity
    (an LMDB re-created at the same path is opened afresh), and reopened after a fork.
    """
    if _OPEN_ENVS["pid"] != os.getpid():
        _OPEN_ENVS["pid"], _OPEN_ENVS["envs"] = os.getpid(), {}
    stat = os.stat(os.path.join(path, "data.mdb"))
    key = (os.path.realpath(path), stat.st_dev, stat.st_ino)
    if key not in _OPEN_ENVS["envs"]:
        _OPEN_ENVS["envs"][key] = lmdb.open(path, max_readers=32, readonly=True, lock=False,
                                            readahead=False, meminit=False)
    return _OPEN_ENVS["envs"][key]


@DATASETS.register()
class LMDBDataSet(BaseDataSet):
    """Recognition samples from every LMDB found (recursively) under ``data_dir``.

    The common layout is expected: ``num-samples`` (the count N as text) and, for i = 1..N,
    ``image-%09d`` (encoded image bytes) and ``label-%09d`` (UTF-8 text). Each sample is
    ``{"img_path": "<lmdb dir>/image-000000001", "image": bytes, "label": str}`` run through
    the transforms (DecodeImage first). A missing key or a label that is not UTF-8 makes the
    sample bad: it is skipped with one warning naming ``<lmdb dir>:<index>`` and counted (see
    :class:`~ppdistill.data.base_dataset.BaseDataSet`). LMDB environments are opened lazily
    in each process, so the dataset works with ``num_workers > 0``.

    Args:
        data_dir: a folder containing one or more LMDB folders (or an LMDB folder itself).
        transforms: the transform list (PaddleOCR's one-key form).
        ratio_list: fraction of each LMDB's samples to use: one number for all, or one per LMDB
            in sorted path order; sampled once with ``seed``.
        shuffle: shuffle the sample order once with ``seed`` (the loader shuffles per epoch).
        seed: seed of the sampling above (the builder passes ``Global.seed``).
        global_config: the ``Global`` section (passed by the builder).
        mode: ``"train"`` or ``"eval"`` (passed by the builder).
        ext_op_transform_idx: leading transforms used to prepare extra samples (RecConAug);
            1 = DecodeImage only.

    Difference from PaddleOCR: ``ratio_list`` really subsamples each LMDB (PaddleOCR only uses
    it to decide whether to re-shuffle).

    YAML::

        Train:
          dataset:
            name: LMDBDataSet
            data_dir: ./train_data/rec/lmdb/train
            transforms:
              - DecodeImage: {img_mode: BGR, channel_first: false}
              - CTCLabelEncode:
              - RecResizeImg: {image_shape: [3, 48, 320]}
              - KeepKeys: {keep_keys: [image, label, length]}
    """

    def __init__(self, data_dir, transforms, ratio_list=1.0, shuffle=False, seed=None,
                 global_config=None, mode="train", ext_op_transform_idx=1):
        where = f"{str(mode).lower().capitalize()}.dataset"
        if not isinstance(data_dir, str) or not os.path.isdir(data_dir):
            raise ConfigError(f"{where}.data_dir: {data_dir!r} is not a folder")
        self.data_dir = data_dir
        self.lmdb_dirs = find_lmdb_dirs(data_dir)
        if not self.lmdb_dirs:
            raise ConfigError(f"{where}.data_dir: no LMDB (a folder with data.mdb) under "
                              f"{data_dir!r}")
        ratios = self._ratios(ratio_list, where)
        super().__init__(transforms, global_config=global_config, mode=mode, seed=seed,
                         ext_op_transform_idx=ext_op_transform_idx, sources=self.lmdb_dirs)
        self.samples = self._index(ratios)
        if shuffle:
            random.Random(seed).shuffle(self.samples)
        if not self.samples:
            raise DataError(f"LMDBDataSet: no samples in {', '.join(self.lmdb_dirs)}")

    def _ratios(self, ratio_list, where):
        if isinstance(ratio_list, (int, float)) and not isinstance(ratio_list, bool):
            ratios = [float(ratio_list)] * len(self.lmdb_dirs)
        elif isinstance(ratio_list, (list, tuple)) and len(ratio_list) == 1:
            ratios = [float(ratio_list[0])] * len(self.lmdb_dirs)
        elif isinstance(ratio_list, (list, tuple)) and len(ratio_list) == len(self.lmdb_dirs):
            ratios = [float(r) for r in ratio_list]
        else:
            raise ConfigError(f"{where}.ratio_list: expected one ratio or one per LMDB "
                              f"({len(self.lmdb_dirs)} found: {', '.join(self.lmdb_dirs)}), "
                              f"got {ratio_list!r}")
        for ratio in ratios:
            if not 0 < ratio <= 1:
                raise ConfigError(f"{where}.ratio_list: ratios must be in (0, 1], got {ratio!r}")
        return ratios

    def _index(self, ratios):
        """``[(lmdb_index, sample_number)]`` with 1-based sample numbers, sampled by ratio."""
        rng = np.random.RandomState(self.seed)
        samples = []
        for lmdb_index, (path, ratio) in enumerate(zip(self.lmdb_dirs, ratios)):
            with self._env(lmdb_index).begin(write=False) as txn:
                raw = txn.get(b"num-samples")
            try:
                count = int(raw.decode("utf-8").strip())
            except (AttributeError, ValueError, UnicodeDecodeError):
                raise ConfigError(f"LMDBDataSet: {path} has no valid 'num-samples' entry "
                                  f"(got {raw!r})") from None
            numbers = np.arange(1, count + 1)
            if ratio < 1.0:
                numbers = np.sort(rng.choice(numbers, int(round(count * ratio)), replace=False))
            samples.extend((lmdb_index, int(n)) for n in numbers)
        return samples

    def _env(self, lmdb_index):
        return open_lmdb(self.lmdb_dirs[lmdb_index])

    def __len__(self):
        return len(self.samples)

    def _describe(self, idx):
        lmdb_index, number = self.samples[idx]
        return f"{self.lmdb_dirs[lmdb_index]}:{number}"

    def _load_sample(self, idx):
        lmdb_index, number = self.samples[idx]
        image_key, label_key = f"image-{number:09d}", f"label-{number:09d}"
        with self._env(lmdb_index).begin(write=False) as txn:
            label = txn.get(label_key.encode())
            image = txn.get(image_key.encode())
        if label is None:
            raise BadSampleError(f"no '{label_key}' entry")
        if image is None:
            raise BadSampleError(f"no '{image_key}' entry")
        try:
            label = label.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"'{label_key}' is not valid UTF-8") from None
        return {"img_path": os.path.join(self.lmdb_dirs[lmdb_index], image_key),
                "image": bytes(image), "label": label}
