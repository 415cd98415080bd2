"""ExportedModel: a teacher given as Paddle inference files or an ONNX file."""
import sys

import numpy as np
import paddle
import pytest
from conftest import toy_model_config
from exported_teachers import (TinyDetNet, TinyRecNet, det_onnx, rec_onnx, save_paddle,
                               write_dict)

from ppdistill.losses import build_loss
from ppdistill.modeling.architectures import build_model
from ppdistill.modeling.architectures.exported_model import ExportedModel, InputAdapter
from ppdistill.modeling.architectures.exported_setup import (check_exported_losses,
                                                              connect_student_dictionary)
from ppdistill.registry import ConfigError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def rec_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec_teacher")
    net = TinyRecNet(5)
    (root / "paddle").mkdir()
    return {"net": net, "paddle": save_paddle(net, root / "paddle", 16),
            "onnx": rec_onnx(net, root / "rec.onnx"),
            "onnx_logits": rec_onnx(net, root / "rec_logits.onnx", logits=True),
            "dict": write_dict(root / "dict.txt", list("abcd")), "root": root}


def batch(shape=(2, 3, 16, 32), seed=0):
    return paddle.to_tensor(np.random.RandomState(seed).uniform(-1, 1, shape).astype("float32"))


@pytest.mark.parametrize("kind", ["paddle", "onnx", "onnx_logits"])
def test_rec_output_is_the_teachers_distribution(rec_files, kind):
    model = ExportedModel(rec_files[kind], "rec", character_dict_path=rec_files["dict"],
                          input={"shape": [3, 16, 32]})
    assert model.output_is_prob == (kind != "onnx_logits")
    assert list(model.parameters()) == []
    x = batch()
    expected = rec_files["net"](x).numpy()                       # [2, 8, 5] probabilities
    model.eval()
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-6)
    model.train()
    logits = model(x)
    assert logits.stop_gradient
    np.testing.assert_allclose(logits.numpy(), np.log(expected), atol=1e-5)
    # every softmax-based loss sees exactly the teacher's probabilities, also with a temperature
    np.testing.assert_allclose(paddle.nn.functional.softmax(logits, -1).numpy(), expected,
                               atol=1e-6)
    sharp = expected ** 0.5 / (expected ** 0.5).sum(-1, keepdims=True)
    np.testing.assert_allclose(paddle.nn.functional.softmax(logits / 2.0, -1).numpy(), sharp,
                               atol=1e-6)


def test_det_output_maps_and_input_resize(tmp_path):
    net = TinyDetNet()
    path = det_onnx(net, tmp_path / "det.onnx")
    x = batch((1, 3, 8, 8))
    model = ExportedModel(path, "det", input={"shape": [3, 8, 8]})
    out = model(x)
    assert list(out) == ["maps"] and out["maps"].shape == [1, 1, 8, 8]
    np.testing.assert_allclose(out["maps"].numpy(), net(x).numpy(), atol=1e-6)
    resized = ExportedModel(path, "det", input={"shape": [3, 8, 8], "resize": [16, 16]})
    big = paddle.nn.functional.interpolate(x, size=[16, 16], mode="bilinear")
    back = paddle.nn.functional.interpolate(net(big), size=[8, 8], mode="bilinear")
    np.testing.assert_allclose(resized(x)["maps"].numpy(), back.numpy(), atol=1e-6)


def test_input_adapter_known_values():
    adapter = InputAdapter([3, 2, 4], resize=[4, -1], mean=[0.485, 0.456, 0.406],
                           std=[0.229, 0.224, 0.225], data_mean=[0.5] * 3, data_std=[0.5] * 3)
    assert adapter.target_size(2, 4) == (4, 8) and adapter.target_size(2, 3) == (4, 6)
    out = adapter(paddle.zeros([1, 3, 2, 4]))                  # pixel value 0.5 everywhere
    assert out.shape == [1, 3, 4, 8]
    np.testing.assert_allclose(out.numpy()[0, :, 0, 0],
                               [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224,
                                (0.5 - 0.406) / 0.225], rtol=1e-5)
    assert InputAdapter([3, 2, 4]).target_size(2, 4) == (2, 4)


def test_a_shape_it_cannot_take_fails_at_start_up(rec_files):
    # TinyRecNet needs a width divisible by 4: 30 is refused before any training
    with pytest.raises(ConfigError, match=r"cannot take a batch of shape \[2, 3, 16, 30\]"):
        ExportedModel(rec_files["onnx"], "rec", input={"shape": [3, 16, 30]}, path="T")
    with pytest.raises(ConfigError, match=r"cannot take a batch of shape \[2, 3, 16, 30\]"):
        ExportedModel(rec_files["onnx"], "rec", input={"shape": [3, 16, 32], "resize": [16, 30]})


def test_dictionary_size_is_checked(rec_files, tmp_path):
    short = write_dict(tmp_path / "d.txt", list("abc"))
    with pytest.raises(ConfigError, match="predicts 5 classes but its dictionary gives 4.*"
                                          "use_space_char: true"):
        ExportedModel(rec_files["onnx"], "rec", character_dict_path=short,
                      input={"shape": [3, 16, 32]})


def test_missing_onnxruntime_is_one_clear_error(rec_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match="pip install onnxruntime"):
        ExportedModel(rec_files["onnx"], "rec", input={"shape": [3, 16, 32]})


def teacher_config(rec_files, **extra):
    return dict({"model_type": "rec", "inference_model": rec_files["onnx"],
                 "character_dict_path": rec_files["dict"], "input": {"shape": [3, 16, 32]}},
                **extra)


def distill(rec_files, **extra):
    student = {"model_type": "rec", "Backbone": {"name": "ToyBackbone"},
               "Head": {"name": "ToyHead"}}
    return {"name": "DistillationModel", "model_type": "rec", "algorithm": "Distillation",
            "Models": {"Teacher": teacher_config(rec_files, **extra), "Student": student}}


def test_distillation_model_builds_a_frozen_exported_teacher(rec_files):
    model = build_model(distill(rec_files, output_keys=["head_out", "ctc"], freeze_params=True))
    assert model.model_name_list == ["Teacher", "Student"]
    assert "Teacher" in model.frozen_names and model.trainable_names == ["Student"]
    assert not [k for k in model.state_dict() if k.startswith("Teacher.")]
    model.train()
    out = model(batch())
    assert out["Teacher"]["head_out"]["ctc"].shape == [2, 8, 5]


@pytest.mark.parametrize("extra, message", [
    ({"freeze_params": False}, "always frozen"),
    ({"Backbone": {"name": "ToyBackbone"}}, "unexpected key 'Backbone'"),
    ({"input": {"shape": [3, 16, 32], "size": [1, 2]}}, r"Teacher.input: unexpected key 'size'"),
])
def test_config_errors(rec_files, extra, message):
    with pytest.raises(ConfigError, match=message):
        build_model(distill(rec_files, **extra))


def loss_with(entry):
    (name, params), = entry.items()
    return build_loss({"name": "CombinedLoss",
                       "loss_config_list": [{name: dict(params, weight=1.0)}]})


def test_feature_level_loss_on_an_exported_teacher_fails_at_start_up(rec_files):
    model = build_model(distill(rec_files, output_keys=["head_out", "ctc"]))
    distance = loss_with({"DistillationDistanceLoss": {
        "model_name_pairs": [["Student", "Teacher"]], "key": "backbone_out"}})
    with pytest.raises(ConfigError, match=r"loss_config_list\[0\] \(DistillationDistanceLoss\)"
                                          r": feature-level distillation from 'Teacher'"):
        check_exported_losses(distance, model)
    dml = {"DistillationDMLLoss": {"model_name_pairs": [["Student", "Teacher"]], "act": "softmax",
                                   "key": "head_out", "multi_head": True, "dis_head": "ctc"}}
    check_exported_losses(loss_with(dml), model)                 # the layout fits
    logits = {"DistillCTCLogits": {"model_name_pairs": [["Student", "Teacher"]],
                                   "key": "head_out"}}
    check_exported_losses(loss_with(logits), model)              # takes the ctc entry itself
    dkd_gtc = {"DistillationDKDLoss": {"model_name_pairs": [["Student", "Teacher"]],
                                       "key": "head_out", "multi_head": True, "dis_head": "gtc"}}
    with pytest.raises(ConfigError, match="dis_head 'gtc' of 'Teacher'.*only its CTC"):
        check_exported_losses(loss_with(dkd_gtc), model)
    plain = build_model(distill(rec_files))                      # no output_keys
    with pytest.raises(ConfigError, match=r"output_keys: \[head_out, ctc\]"):
        check_exported_losses(loss_with(dml), plain)


def test_det_teacher_gives_only_the_probability_map(tmp_path):
    path = det_onnx(TinyDetNet(), tmp_path / "det.onnx")
    model = build_model({"name": "DistillationModel", "model_type": "det", "Models": {
        "Teacher": {"model_type": "det", "inference_model": path, "input": {"shape": [3, 8, 8]}},
        "Student": toy_model_config()}})

    def dml(maps_name):
        return loss_with({"DistillationDMLLoss": {"model_name_pairs": [["Student", "Teacher"]],
                                                  "key": "maps", "maps_name": maps_name}})

    check_exported_losses(dml("thrink_maps"), model)
    with pytest.raises(ConfigError, match="maps_name 'threshold_maps'"):
        check_exported_losses(dml("threshold_maps"), model)
    out = model(batch((2, 3, 8, 8)))
    teacher = dml("thrink_maps").loss_func[0].selector.select(out, "Teacher")
    assert teacher.shape == [2, 1, 8, 8]                         # channel 0 = thrink_maps


def test_cross_dictionary_teacher_is_mapped_to_the_student(rec_files, tmp_path, caplog):
    # teacher "abcd" (+ blank = 5 classes); student "dax": d, a known, x not
    student_dict = write_dict(tmp_path / "student.txt", list("dax"))
    model = build_model(distill(rec_files))
    config = {"Architecture": {"model_type": "rec"},
              "Global": {"character_dict_path": student_dict}}
    with caplog.at_level("INFO", logger="ppdistill"):
        mappings = connect_student_dictionary(model, config)
    assert "teacher covers 2 of the student's 3 characters" in caplog.text
    assert mappings["Teacher"].covered == 2
    teacher = model.sub_model("Teacher")
    teacher.eval()
    x = batch()
    p = rec_files["net"](x).numpy()
    expected = np.stack([p[..., 0] + p[..., 2] + p[..., 3], p[..., 4], p[..., 1],
                         np.zeros_like(p[..., 0])], axis=-1)     # b, c -> blank
    np.testing.assert_allclose(teacher(x).numpy(), expected, atol=1e-6)
