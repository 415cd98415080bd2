"""SimpleDataSet: images listed in PaddleOCR label files (``image_path<TAB>label`` per line)."""
import json
import os
import random

import numpy as np

from ppdistill.data.base_dataset import BaseDataSet, DataError
from ppdistill.registry import DATASETS, ConfigError


@DATASETS.register()
class SimpleDataSet(BaseDataSet):
    """Samples from label files of ``image_path<delimiter>label`` lines.

    ``image_path`` is relative to ``data_dir``; a JSON list of paths (``["a.jpg", "b.jpg"]``)
    means "one of these, at random". ``label`` is kept as the raw string (the label-encoding
    transform parses it: JSON polygons for detection, the text for recognition). Blank lines
    are ignored. Each sample is ``{"img_path", "image": file bytes, "label"}`` run through the
    transforms. Bad lines (no delimiter, missing/undecodable image, broken JSON, a transform
    rejecting the sample) are skipped with one warning naming ``label_file:line`` and counted in
    ``skipped``; see :class:`~ppdistill.data.base_dataset.BaseDataSet`.

    Args:
        data_dir: folder the image paths are relative to.
        label_file_list: one label file or a list of them.
        transforms: the transform list (PaddleOCR's one-key form).
        ratio_list: fraction of each file's lines to use (a number for all files); lines are
            sampled once, with ``seed``.
        shuffle: shuffle the line order once with ``seed`` (the loader shuffles per epoch anyway).
        seed: seed of the sampling/shuffling above (the builder passes ``Global.seed``).
        delimiter: separator between path and label (the label may contain it again).
        ext_op_transform_idx: leading transforms used to prepare extra samples (CopyPaste).
        global_config: the ``Global`` section (passed by the builder).
        mode: ``"train"`` or ``"eval"`` (passed by the builder).

    YAML::

        Train:
          dataset:
            name: SimpleDataSet
            data_dir: ./train_data/icdar2015/text_localization/
            label_file_list: [./train_data/icdar2015/text_localization/train_icdar2015_label.txt]
            ratio_list: [1.0]
            transforms: [...]
    """

    def __init__(self, data_dir, label_file_list, transforms, ratio_list=1.0, shuffle=False,
                 seed=None, delimiter="\t", ext_op_transform_idx=2, global_config=None,
                 mode="train"):
        where = f"{str(mode).lower().capitalize()}.dataset"
        if isinstance(label_file_list, str):
            label_file_list = [label_file_list]
        if not label_file_list:
            raise ConfigError(f"{where}.label_file_list: at least one label file is required")
        if isinstance(ratio_list, (int, float)):
            ratio_list = [float(ratio_list)] * len(label_file_list)
        if len(ratio_list) != len(label_file_list):
            raise ConfigError(f"{where}.ratio_list: {len(ratio_list)} ratios for "
                              f"{len(label_file_list)} label files")
        for ratio in ratio_list:
            if not 0 < float(ratio) <= 1:
                raise ConfigError(f"{where}.ratio_list: ratios must be in (0, 1], got {ratio!r}")
        if not isinstance(delimiter, str) or not delimiter:
            raise ConfigError(f"{where}.delimiter: expected a non-empty string, got {delimiter!r}")
        super().__init__(transforms, global_config=global_config, mode=mode, seed=seed,
                         ext_op_transform_idx=ext_op_transform_idx, sources=label_file_list)
        self.data_dir = data_dir
        self.label_files = list(label_file_list)
        self.delimiter = delimiter
        self.lines = self._read_label_files(ratio_list, where)
        if shuffle:
            random.Random(seed).shuffle(self.lines)
        if not self.lines:
            raise DataError(f"SimpleDataSet: no samples in {', '.join(self.label_files)}")

    def _read_label_files(self, ratio_list, where):
        """``[(file_index, line_number, raw_bytes)]`` of the non-blank lines, sampled by ratio."""
        lines = []
        rng = np.random.RandomState(self.seed)
        for file_index, (path, ratio) in enumerate(zip(self.label_files, ratio_list)):
            if not os.path.isfile(path):
                raise ConfigError(f"{where}.label_file_list[{file_index}]: label file {path!r} "
                                  f"does not exist")
            with open(path, "rb") as handle:
                entries = [(file_index, number, raw)
                           for number, raw in enumerate(handle.read().splitlines(), start=1)
                           if raw.strip()]
            if ratio < 1.0:
                keep = np.sort(rng.choice(len(entries), int(round(len(entries) * ratio)),
                                          replace=False))
                entries = [entries[i] for i in keep]
            lines.extend(entries)
        return lines

    def __len__(self):
        return len(self.lines)

    def _describe(self, idx):
        file_index, number, _ = self.lines[idx]
        return f"{self.label_files[file_index]}:{number}"

    def _load_sample(self, idx):
        _, _, raw = self.lines[idx]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the line is not valid UTF-8") from None
        parts = text.rstrip("\r\n").split(self.delimiter, 1)
        if len(parts) != 2:
            raise ValueError(f"expected 'image_path{self.delimiter!r}label', found no delimiter")
        file_name, label = parts
        img_path = os.path.join(self.data_dir, self._pick_file_name(file_name))
        if not os.path.isfile(img_path):
            raise FileNotFoundError(f"image {img_path!r} does not exist")
        with open(img_path, "rb") as handle:
            image = handle.read()
        return {"img_path": img_path, "label": label, "image": image}

    @staticmethod
    def _pick_file_name(file_name):
        """A JSON list of paths (several images, one label) yields one of them at random."""
        if file_name.startswith("["):
            try:
                names = json.loads(file_name)
            except ValueError:
                return file_name
            if isinstance(names, list) and names:
                return str(names[np.random.randint(len(names))])
        return file_name
