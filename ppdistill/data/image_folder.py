"""ImageFolderDataSet: training images without labels (folders, or label files of paths only),
optionally mixed with labelled lines; unlabelled samples get the teacher's pseudo-labels."""
import os
import random

import cv2
import numpy as np

from ppdistill.data.base_dataset import BaseDataSet, DataError
from ppdistill.data.pseudo_label import LowConfidence, build_pseudo_labeler
from ppdistill.registry import DATASETS, ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_DET_TRANSFORMS = ("DetLabelEncode", "MakeShrinkMap", "MakeBorderMap", "DetResizeForTest")


@DATASETS.register()
class ImageFolderDataSet(BaseDataSet):
    """Samples from image folders and/or label files whose lines may lack a label.

    Each entry of ``label_file_list`` is either

    - a **folder**: every image in it (recursively, sorted; extensions ``IMAGE_EXTENSIONS``) is an
      unlabelled sample, or
    - a **label file**: a line ``image_path`` is an unlabelled sample, a line
      ``image_path<delimiter>label`` a labelled one (paths relative to ``data_dir``), so labelled
      and unlabelled data mix in one file or across files, sampled per entry by ``ratio_list``.

    An unlabelled sample gets its label from the teacher (``pseudo_label``, see
    :mod:`ppdistill.data.pseudo_label`) before the transforms run; a low-confidence one
    (rec: below ``threshold``; det: no text found) is skipped and counted like a bad sample
    (``low_confidence`` counts them; one INFO line per epoch via the skipped-sample report,
    no warning per image). Without ``pseudo_label`` unlabelled samples are a ConfigError.
    ``model_type`` of the pseudo-labeler is ``det`` when the transforms contain a DB label
    transform, else ``rec`` (or set it in ``pseudo_label``).

    Args:
        data_dir: folder the label files' image paths are relative to.
        label_file_list: folders and/or label files (a single string is accepted).
        transforms: the transform list; labelled and pseudo-labelled samples share it.
        pseudo_label: the teacher's export and thresholds (a mapping), or None.
        ratio_list: fraction of each entry's samples to use (a number for all entries).
        shuffle, seed, delimiter, global_config, mode: as :class:`SimpleDataSet`.

    YAML::

        Train:
          dataset:
            name: ImageFolderDataSet
            data_dir: ./train_data/
            label_file_list: [./train_data/rec_gt_train.txt, ./train_data/unlabelled_crops/]
            ratio_list: [1.0, 0.5]
            pseudo_label:
              inference_model: ./pretrain_models/PP-OCRv5_server_rec_infer
              character_dict_path: ./ppdistill/utils/dict/ppocrv5_dict.txt
              use_space_char: true
              threshold: 0.9
            transforms: [...]
    """

    def __init__(self, label_file_list, transforms, data_dir="", pseudo_label=None,
                 ratio_list=1.0, shuffle=False, seed=None, delimiter="\t", global_config=None,
                 mode="train", ext_op_transform_idx=2):
        where = f"{str(mode).lower().capitalize()}.dataset"
        entries = [label_file_list] if isinstance(label_file_list, str) else label_file_list
        if not entries:
            raise ConfigError(f"{where}.label_file_list: at least one folder or label file")
        if isinstance(ratio_list, (int, float)):
            ratio_list = [float(ratio_list)] * len(entries)
        if len(ratio_list) != len(entries) or not all(0 < float(r) <= 1 for r in ratio_list):
            raise ConfigError(f"{where}.ratio_list: one ratio in (0, 1] per entry of "
                              f"label_file_list ({len(entries)}), got {ratio_list!r}")
        super().__init__(transforms, global_config=global_config, mode=mode, seed=seed,
                         ext_op_transform_idx=ext_op_transform_idx, sources=entries)
        self.data_dir = data_dir
        self.entries = list(entries)
        self.delimiter = delimiter
        self.samples = []  # (entry index, line number or 0, image path, label or None)
        rng = np.random.RandomState(seed)
        for index, (entry, ratio) in enumerate(zip(self.entries, ratio_list)):
            found = self._read_entry(index, entry, f"{where}.label_file_list[{index}]")
            if ratio < 1.0:
                keep = np.sort(rng.choice(len(found), int(round(len(found) * ratio)),
                                          replace=False))
                found = [found[i] for i in keep]
            self.samples.extend(found)
        if shuffle:
            random.Random(seed).shuffle(self.samples)
        if not self.samples:
            raise DataError(f"ImageFolderDataSet: no samples in {', '.join(self.entries)}")
        self.unlabelled = sum(1 for s in self.samples if s[3] is None)
        self.low_confidence = 0
        self.pseudo_labeler = None
        if pseudo_label is not None:
            names = {next(iter(e)) for e in transforms or () if isinstance(e, dict) and e}
            model_type = "det" if names & set(_DET_TRANSFORMS) else "rec"
            self.pseudo_labeler = build_pseudo_labeler(pseudo_label, model_type, global_config,
                                                       f"{where}.pseudo_label")
        elif self.unlabelled:
            raise ConfigError(f"{where}: {self.unlabelled} samples have no label; set "
                              f"{where}.pseudo_label (the teacher's inference_model) to label "
                              f"them with the teacher")

    def _read_entry(self, index, entry, where):
        if os.path.isdir(entry):
            images = []
            for root, _, files in sorted(os.walk(entry)):
                images.extend(os.path.join(root, f) for f in sorted(files)
                              if f.lower().endswith(IMAGE_EXTENSIONS))
            return [(index, 0, path, None) for path in images]
        if not os.path.isfile(entry):
            raise ConfigError(f"{where}: {entry!r} is neither a folder nor a label file")
        found = []
        with open(entry, "rb") as handle:
            for number, raw in enumerate(handle.read().splitlines(), start=1):
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not text.strip():
                    continue
                parts = text.split(self.delimiter, 1)
                label = parts[1] if len(parts) == 2 else None
                found.append((index, number, os.path.join(self.data_dir, parts[0]), label))
        return found

    def __len__(self):
        return len(self.samples)

    def _describe(self, idx):
        index, number, path, _ = self.samples[idx]
        return f"{self.entries[index]}:{number}" if number else path

    def _load_sample(self, idx):
        _, _, path, label = self.samples[idx]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image {path!r} does not exist")
        with open(path, "rb") as handle:
            data = handle.read()
        if label is None:
            image = cv2.imdecode(np.frombuffer(data, dtype="uint8"), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"image {path!r} cannot be decoded")
            label = self.pseudo_labeler(image, key=path)
        return {"img_path": path, "label": label, "image": data}

    def _mark_bad(self, idx, reason):
        if reason.startswith(LowConfidence.__name__) and idx not in self.bad_samples:
            self.bad_samples[idx] = reason  # expected, counted: no warning per image
            self.low_confidence += 1
            return
        super()._mark_bad(idx, reason)
