"""ClassMapping: a teacher's CTC distribution over the student's dictionary (hand-computed)."""
import math

import numpy as np
import paddle
import pytest

from ppdistill.losses import build_loss
from ppdistill.losses.dict_mapping import ClassMapping

TEACHER = list("abcd")   # classes: blank, a, b, c, d
STUDENT = list("dax")    # classes: blank, d, a, x   (x unknown to the teacher; b, c unknown to it)
# one timestep: blank 0.1, a 0.2, b 0.3, c 0.15, d 0.25; and one with all mass on b, c
PROBS = np.array([[[0.1, 0.2, 0.3, 0.15, 0.25], [0.0, 0.0, 0.6, 0.4, 0.0]]], dtype="float32")


def test_coverage_report():
    mapping = ClassMapping(TEACHER, STUDENT)
    assert (mapping.covered, mapping.student_count, mapping.missing_count) == (2, 3, 2)
    assert mapping.describe().startswith("teacher covers 2 of the student's 3 characters")


@pytest.mark.parametrize("as_tensor", [False, True])
def test_missing_mass_goes_to_blank(as_tensor):
    mapping = ClassMapping(TEACHER, STUDENT, missing="blank")
    probs = paddle.to_tensor(PROBS) if as_tensor else PROBS.copy()
    out = mapping.map_probs(probs)
    out = out.numpy() if as_tensor else out
    # blank = 0.1 + b 0.3 + c 0.15; d; a; x (unknown to the teacher) = 0
    np.testing.assert_allclose(out, [[[0.55, 0.25, 0.2, 0.0], [1.0, 0.0, 0.0, 0.0]]], atol=1e-6)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_renormalize_over_the_shared_classes(as_tensor):
    mapping = ClassMapping(TEACHER, STUDENT, missing="renormalize")
    probs = paddle.to_tensor(PROBS) if as_tensor else PROBS.copy()
    out = mapping.map_probs(probs)
    out = out.numpy() if as_tensor else out
    kept = 0.1 + 0.25 + 0.2
    np.testing.assert_allclose(out, [[[0.1 / kept, 0.25 / kept, 0.2 / kept, 0.0],
                                      [1.0, 0.0, 0.0, 0.0]]], atol=1e-6)


def test_same_dictionary_is_the_identity():
    mapping = ClassMapping(TEACHER, list(TEACHER))
    assert mapping.is_identity and mapping.map_probs(PROBS) is PROBS
    with pytest.raises(ValueError, match="missing"):
        ClassMapping(TEACHER, STUDENT, missing="drop")


def test_shape_is_checked():
    with pytest.raises(ValueError, match="expected 5 teacher classes"):
        ClassMapping(TEACHER, STUDENT).map_probs(np.zeros([1, 1, 4], "float32"))


def test_kl_loss_on_the_mapped_teacher_hand_computed():
    mapping = ClassMapping(TEACHER, STUDENT)
    teacher = paddle.log(paddle.clip(mapping.map_probs(paddle.to_tensor(PROBS[:, :1])), 1e-30))
    student = paddle.zeros([1, 1, 4])                           # uniform over 4 student classes
    loss = build_loss({"name": "CombinedLoss", "loss_config_list": [{"DistillationKLDivLoss": {
        "weight": 1.0, "model_name_pairs": [["Student", "Teacher"]]}}]})
    value = float(loss({"Student": student, "Teacher": teacher}, None)["loss"])
    expected = sum(t * (math.log(t) - math.log(0.25)) for t in (0.55, 0.25, 0.2))
    assert value == pytest.approx(expected, abs=1e-5)
