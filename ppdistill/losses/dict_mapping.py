"""Cross-dictionary distillation: a teacher's CTC distribution over the student's classes.

Teacher and student may use different recognition dictionaries (a PP-OCRv5 teacher with 18,383
characters and a student with a 90-character custom dictionary, or v4 <-> v5). Classes are
matched **by character**, blank to blank: student class ``1 + j`` (character ``s_j``) takes the
teacher's column of the same character. The result is a ``[N, T, 1 + len(student)]``
distribution that every softmax-based distillation loss (DML, KL, DKD, CTC-logits), the
pseudo-labels and the decoders read as if the teacher had the student's dictionary.

**The teacher's mass on characters the student lacks** (``missing``):

- ``"blank"`` (default): added to the blank column. A CTC path that emits a character the
  student cannot write then emits nothing, so at such a timestep the student is taught "emit
  nothing" instead of being pushed towards some other character. Each row still sums to 1.
- ``"renormalize"``: dropped, and each row divided by the mass left on the shared classes
  (blank + shared characters), i.e. the teacher's distribution conditioned on the student's
  classes. A row whose whole mass is on missing characters becomes all-blank.

A student character the teacher does not know gets probability 0 (the student is never taught
to emit it by the distillation terms; its task loss still teaches it). The start-up report
(:meth:`ClassMapping.describe`) says how many of the student's characters the teacher covers.
"""
import numpy as np
import paddle

__all__ = ["ClassMapping", "MISSING_MODES"]

MISSING_MODES = ("blank", "renormalize")


class ClassMapping:
    """Map ``[N, T, 1 + len(teacher)]`` CTC probabilities onto the student's classes.

    Args:
        teacher_characters: the teacher's dictionary characters (index ``i`` is class ``i + 1``).
        student_characters: the student's dictionary characters.
        missing: ``"blank"`` or ``"renormalize"`` (see the module docstring).

    ``map_probs(p)`` works on paddle tensors (used by the exported teacher at every batch) and
    numpy arrays. With identical dictionaries the mapping is the identity (``is_identity``).

    Configured through the teacher sub-model (the student's dictionary is ``Global``'s)::

        Teacher:
          model_type: rec
          inference_model: ./pretrain_models/PP-OCRv5_server_rec_infer
          character_dict_path: ./ppdistill/utils/dict/ppocrv5_dict.txt
          missing_characters: blank     # or renormalize
    """

    def __init__(self, teacher_characters, student_characters, missing="blank"):
        if missing not in MISSING_MODES:
            raise ValueError(f"missing: expected one of {', '.join(MISSING_MODES)}, "
                             f"got {missing!r}")
        self.missing = missing
        self.teacher_size = len(teacher_characters) + 1
        self.student_size = len(student_characters) + 1
        first = {}
        for index, char in enumerate(teacher_characters):
            first.setdefault(char, index + 1)  # a duplicated line: its first index, as decoders
        columns = [0] + [first.get(char, -1) for char in student_characters]
        self.covered = sum(1 for c in columns[1:] if c > 0)
        self.student_count = len(student_characters)
        self.is_identity = (list(teacher_characters) == list(student_characters))
        # gather index (an uncovered student class reads column 0 and is then zeroed)
        self.gather_index = np.array([max(c, 0) for c in columns], dtype="int64")
        self.gather_mask = np.array([1.0 if c >= 0 else 0.0 for c in columns], dtype="float32")
        used = set(c for c in columns if c > 0)
        self.missing_mask = np.array([0.0] + [0.0 if i in used else 1.0
                                              for i in range(1, self.teacher_size)],
                                     dtype="float32")
        self.missing_count = int(self.missing_mask.sum())

    def describe(self):
        """One line for the start-up log."""
        return (f"teacher covers {self.covered} of the student's {self.student_count} characters "
                f"({self.student_count - self.covered} never taught by distillation); "
                f"{self.missing_count} of the teacher's {self.teacher_size - 1} characters are "
                f"unknown to the student (their mass: {self.missing})")

    def map_probs(self, probs):
        """``probs[..., teacher classes]`` -> ``[..., student classes]`` (same type as input)."""
        if self.is_identity:
            return probs
        if probs.shape[-1] != self.teacher_size:
            raise ValueError(f"ClassMapping: expected {self.teacher_size} teacher classes, got "
                             f"shape {list(probs.shape)}")
        if isinstance(probs, np.ndarray):
            return self._map_numpy(probs)
        index = paddle.to_tensor(self.gather_index)
        mask = paddle.to_tensor(self.gather_mask, dtype=probs.dtype)
        mapped = paddle.index_select(probs, index, axis=probs.ndim - 1) * mask
        lost = (probs * paddle.to_tensor(self.missing_mask, dtype=probs.dtype)).sum(
            axis=-1, keepdim=True)
        if self.missing == "blank":
            return paddle.concat([mapped[..., :1] + lost, mapped[..., 1:]], axis=-1)
        kept = mapped.sum(axis=-1, keepdim=True)
        empty = (kept <= 0).astype(probs.dtype)
        blank_only = paddle.concat([paddle.ones_like(kept),
                                    paddle.zeros_like(mapped[..., 1:])], axis=-1)
        return mapped / (kept + empty) * (1 - empty) + blank_only * empty

    def _map_numpy(self, probs):
        mapped = probs[..., self.gather_index] * self.gather_mask
        lost = (probs * self.missing_mask).sum(axis=-1, keepdims=True)
        if self.missing == "blank":
            mapped[..., :1] += lost
            return mapped
        kept = mapped.sum(axis=-1, keepdims=True)
        out = np.where(kept > 0, mapped / np.where(kept > 0, kept, 1), 0.0).astype(probs.dtype)
        out[..., 0] = np.where(kept[..., 0] > 0, out[..., 0], 1.0)
        return out
