"""Pseudo-labels from a teacher given as an exported model, for unlabelled training images.

An unlabelled sample gets the label a human would have written, produced by the teacher on the
whole (un-augmented) image, so the ordinary label encoders, augmentations and task losses run
unchanged:

- rec (:class:`RecPseudoLabeler`): the teacher's greedy CTC decoding, in the student's
  dictionary (cross-dictionary teachers are mapped character by character, see
  :class:`~ppdistill.losses.dict_mapping.ClassMapping`), kept when its confidence (the mean
  probability of the decoded characters, as ``CTCLabelDecode`` scores) reaches ``threshold``;
  otherwise the sample is skipped and counted.
- det (:class:`DetPseudoLabeler`): the teacher's probability map goes through
  ``DBPostProcess`` (``thresh``/``box_thresh``/``unclip_ratio``); its polygons become the
  label JSON, so ``MakeShrinkMap``/``MakeBorderMap`` turn them into the DB targets after the
  usual crops. An image where the teacher finds no text is skipped and counted.

The teacher runs once per image and process (the label is cached by image path): the label does
not depend on the augmentations. The runtime is opened lazily, in the loader worker that uses it.
"""
import json
import os

import numpy as np

from ppdistill.registry import ConfigError, suggest

__all__ = ["RecPseudoLabeler", "DetPseudoLabeler", "build_pseudo_labeler", "LowConfidence"]

_DET_NORM = {"scale": "1./255.", "mean": [0.485, 0.456, 0.406],
             "std": [0.229, 0.224, 0.225], "order": "hwc"}
_KEYS = ("model_type", "inference_model", "character_dict_path", "use_space_char", "image_shape",
         "threshold", "limit_side_len", "limit_type", "thresh", "box_thresh", "unclip_ratio",
         "missing_characters", "cpu_threads")


class LowConfidence(ValueError):
    """The teacher's pseudo-label is not confident enough: the sample is skipped (counted)."""


class _Labeler:
    def __init__(self, inference_model, cpu_threads=1):
        self.inference_model = str(inference_model)
        self.cpu_threads = int(cpu_threads)
        self._runner = None
        self._cache = {}
        if not os.path.exists(self.inference_model):
            raise ConfigError(f"pseudo_label.inference_model: {self.inference_model!r} does "
                              f"not exist")

    def run(self, batch):
        if self._runner is None:  # opened in the process that uses it (loader workers fork)
            from ppdistill.modeling.architectures.exported_model import open_runner
            self._runner = open_runner(self.inference_model, cpu_threads=self.cpu_threads)
        return np.asarray(self._runner(np.ascontiguousarray(batch, dtype="float32"))[0])

    def __call__(self, image, key=None):
        """The label string for the BGR ``image``; raises :class:`LowConfidence` to skip it."""
        if key is not None and key in self._cache:
            label = self._cache[key]
        else:
            label = self.label(image)
            if key is not None:
                self._cache[key] = label
        if isinstance(label, LowConfidence):
            raise label
        return label

    def __getstate__(self):  # a loader worker opens its own runtime
        state = dict(self.__dict__)
        state["_runner"] = None
        return state


class RecPseudoLabeler(_Labeler):
    """Text pseudo-labels from an exported CTC recognition teacher.

    Args:
        inference_model: ``.onnx`` file or Paddle export directory of the teacher.
        character_dict_path, use_space_char: the teacher's dictionary.
        student_dict_path, student_use_space_char: the student's dictionary (the label is
            written in it; the builder passes ``Global``'s).
        image_shape: ``[C, H, W]`` the teacher takes (height H, width from the aspect ratio,
            at least W), normalised ``(x / 255 - 0.5) / 0.5`` as PaddleOCR's predict_rec.
        threshold: minimum confidence (mean probability of the decoded characters).
        missing_characters: see :class:`~ppdistill.losses.dict_mapping.ClassMapping`.

    YAML (``pseudo_label`` of :class:`~ppdistill.data.image_folder.ImageFolderDataSet`)::

        pseudo_label:
          inference_model: ./pretrain_models/PP-OCRv5_server_rec_infer
          character_dict_path: ./ppdistill/utils/dict/ppocrv5_dict.txt
          use_space_char: true
          image_shape: [3, 48, 320]
          threshold: 0.9
    """

    def __init__(self, inference_model, student_dict_path=None, student_use_space_char=False,
                 character_dict_path=None, use_space_char=False, image_shape=(3, 48, 320),
                 threshold=0.9, missing_characters="blank", cpu_threads=1):
        super().__init__(inference_model, cpu_threads)
        from ppdistill.losses.dict_mapping import ClassMapping
        from ppdistill.postprocess.rec_postprocess import CTCLabelDecode
        from ppdistill.utils.char_dict import load_characters
        self.image_shape = [int(v) for v in image_shape]
        self.threshold = float(threshold)
        self.decoder = CTCLabelDecode(student_dict_path, student_use_space_char)
        student = self.decoder.character[1:]
        teacher = (load_characters(character_dict_path, use_space_char)
                   if character_dict_path is not None else list(student))
        self.mapping = ClassMapping(teacher, student, missing_characters)

    def label(self, image):
        from ppdistill.infer.text_recognizer import resize_norm_for_batch
        _, height, width = self.image_shape
        h, w = image.shape[:2]
        width = max(width, int(np.ceil(height * w / float(max(h, 1)))))
        probs = self.run(resize_norm_for_batch(image, height, width)[None])
        if probs.ndim != 3 or probs.shape[-1] != self.mapping.teacher_size:
            raise ConfigError(f"pseudo_label: the teacher outputs shape {list(probs.shape)}, "
                              f"expected [N, T, {self.mapping.teacher_size}] for its dictionary")
        text, score = self.decoder(self.mapping.map_probs(probs))[0]
        if not text or score < self.threshold:
            return LowConfidence(f"pseudo-label {text!r} confidence {score:.3f} < threshold "
                                 f"{self.threshold}")
        return text


class DetPseudoLabeler(_Labeler):
    """Polygon pseudo-labels from an exported DB detection teacher.

    The image is resized as in evaluation (``DetResizeForTest`` with ``limit_side_len`` /
    ``limit_type``, ImageNet normalisation), the teacher's map goes through ``DBPostProcess``
    (``thresh``, ``box_thresh``: boxes scoring below it are dropped, ``unclip_ratio``) and the
    boxes are written as the PaddleOCR label JSON (transcription ``"pseudo"``).

    YAML::

        pseudo_label:
          inference_model: ./pretrain_models/PP-OCRv5_server_det_infer
          box_thresh: 0.6
    """

    def __init__(self, inference_model, limit_side_len=960, limit_type="max", thresh=0.3,
                 box_thresh=0.6, unclip_ratio=1.5, cpu_threads=1):
        super().__init__(inference_model, cpu_threads)
        from ppdistill.data.imaug import create_operators
        from ppdistill.postprocess import build_post_process
        self.ops = create_operators([
            {"DetResizeForTest": {"limit_side_len": limit_side_len, "limit_type": limit_type}},
            {"NormalizeImage": dict(_DET_NORM)}, {"ToCHWImage": None},
            {"KeepKeys": {"keep_keys": ["image", "shape"]}}], path="pseudo_label")
        self.post_process = build_post_process({
            "name": "DBPostProcess", "thresh": thresh, "box_thresh": box_thresh,
            "max_candidates": 1000, "unclip_ratio": unclip_ratio}, path="pseudo_label")

    def label(self, image):
        from ppdistill.data.imaug import transform
        from ppdistill.infer.text_detector import order_points_clockwise
        tensor, shape = transform({"image": image}, self.ops)
        maps = self.run(tensor[None])
        if maps.ndim == 3:
            maps = maps[:, None]
        boxes = self.post_process({"maps": maps}, np.expand_dims(shape, 0))[0]["points"]
        entries = [{"transcription": "pseudo",
                    "points": order_points_clockwise(box).round().astype(int).tolist()}
                   for box in boxes]
        if not entries:
            return LowConfidence("the teacher finds no text")
        return json.dumps(entries)


def build_pseudo_labeler(config, model_type, global_config, path):
    """The YAML adapter for ``pseudo_label`` (``model_type`` defaults to the Global/caller's)."""
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping, got {config!r}")
    config = dict(config)
    for key in config:
        if key not in _KEYS:
            raise ConfigError(f"{path}: unexpected key '{key}'{suggest(key, _KEYS)}")
    if "inference_model" not in config:
        raise ConfigError(f"{path}: missing 'inference_model' (the teacher's export)")
    model_type = config.pop("model_type", model_type)
    try:
        if model_type == "rec":
            glob = global_config or {}
            return RecPseudoLabeler(student_dict_path=glob.get("character_dict_path"),
                                    student_use_space_char=glob.get("use_space_char", False),
                                    **config)
        if model_type == "det":
            return DetPseudoLabeler(**config)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    raise ConfigError(f"{path}.model_type: 'rec' or 'det' (set it here or in Global), "
                      f"got {model_type!r}")
