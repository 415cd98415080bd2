"""Checkpoints: save/resume round trip, atomic writes, student file, loud loading, safe loader."""
import logging
import os
import pickle

import numpy as np
import paddle
import pytest
from conftest import toy_model_config
from paddle import nn

from ppdistill.modeling.architectures import build_model
from ppdistill.optimizer import build_optimizer
from ppdistill.utils import save_load
from ppdistill.utils.safe_load import NAME_TABLE_KEY, UnsafeCheckpointError, safe_load
from ppdistill.utils.save_load import (extract_submodel, load_model, load_pretrained_params,
                                       save_model)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
ORIGINAL_WRITE = save_load._write_temp
ADAM_COSINE = {"name": "Adam", "beta1": 0.9, "beta2": 0.999,
               "lr": {"name": "Cosine", "learning_rate": 0.01, "warmup_epoch": 1}}


def distill_config(student_channels=4):
    return {"Architecture": {"name": "DistillationModel", "model_type": "det", "Models": {
        "Teacher": dict(toy_model_config(6), freeze_params=True),
        "Student": toy_model_config(student_channels)}},
        "Metric": {"name": "DistillationMetric", "key": "Student"}}


def build(config=None):
    config = config or distill_config()
    model = build_model(config["Architecture"])
    optimizer, schedule = build_optimizer(ADAM_COSINE, epochs=3, step_each_epoch=4, model=model)
    return model, optimizer, schedule


def train_steps(model, optimizer, schedule, steps, seed=0):
    rng = np.random.RandomState(seed)
    for _ in range(steps):
        out = model(paddle.to_tensor(rng.rand(2, 3, 8, 8).astype("float32")))
        out["Student"]["maps"].mean().backward()
        optimizer.step()
        optimizer.clear_grad()
        if schedule is not None and not isinstance(schedule, float):
            schedule.step()


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def resume_config(path):
    return {"Global": {"checkpoints": path}}


# ------------------------------------------------------------------------------ round trip
def test_resume_restores_weights_moments_lr_epoch_and_step(tmp_path):
    model, optimizer, schedule = build()
    train_steps(model, optimizer, schedule, 5)
    save_model(model, optimizer, str(tmp_path), config=distill_config(), prefix="latest",
               epoch=2, global_step=5, best_model_dict={"hmean": np.float64(0.25),
                                                        "best_epoch": 1})
    saved_lr, saved_step = schedule(), schedule.last_epoch
    saved_moments = {k: np.asarray(v) for k, v in optimizer.state_dict().items()
                     if k.endswith("moment1_0")}
    assert len(saved_moments) == 6  # the Student's trainable parameters

    # a new process builds parameters with different names (conv2d_N counters move on)
    model2, optimizer2, schedule2 = build()
    assert model2.Student.backbone.conv.weight.name != model.Student.backbone.conv.weight.name
    state = load_model(resume_config(str(tmp_path / "latest")), model2, optimizer2)
    assert state["start_epoch"] == 3 and state["epoch"] == 2 and state["global_step"] == 5
    assert state["best_model_dict"] == {"hmean": 0.25, "best_epoch": 1}
    assert state["hmean"] == 0.25 and isinstance(state["hmean"], float)
    for key, value in weights(model).items():
        np.testing.assert_array_equal(weights(model2)[key], value, err_msg=key)
    assert schedule2.last_epoch == saved_step == 5
    assert schedule2() == pytest.approx(saved_lr) and optimizer2.get_lr() == pytest.approx(
        saved_lr)
    # the Adam moments are restored under the new parameter names (they wait in paddle's
    # holder until the first step creates the accumulators)
    restored = optimizer2._accumulators_holder
    for structured, param in model.state_dict().items():
        old_key = f"{param.name}_moment1_0"
        if old_key in saved_moments:
            new_key = f"{model2.state_dict()[structured].name}_moment1_0"
            np.testing.assert_array_equal(np.asarray(restored[new_key]), saved_moments[old_key])
    # continuing gives exactly what the uninterrupted run gives ...
    train_steps(model, optimizer, schedule, 2, seed=1)
    train_steps(model2, optimizer2, schedule2, 2, seed=1)
    for key, value in weights(model).items():
        np.testing.assert_allclose(weights(model2)[key], value, rtol=1e-6, atol=1e-7,
                                   err_msg=key)
    assert schedule2.last_epoch == schedule.last_epoch == 7
    # ... which a fresh optimizer (zero moments, LR from step 0) does not
    model3, optimizer3, schedule3 = build()
    load_model({"Global": {"pretrained_model": str(tmp_path / "latest")}}, model3)
    train_steps(model3, optimizer3, schedule3, 2, seed=1)
    assert not np.allclose(weights(model3)["Student.head.conv.weight"],
                           weights(model)["Student.head.conv.weight"])


def test_resume_without_pdopt_and_states_warns(tmp_path, caplog):
    model, optimizer, schedule = build()
    train_steps(model, optimizer, schedule, 2)
    save_model(model, None, str(tmp_path), prefix="latest")
    assert not (tmp_path / "latest.pdopt").exists()
    os.remove(tmp_path / "latest.states")
    model2, optimizer2, schedule2 = build()
    with caplog.at_level(logging.WARNING, logger="ppdistill"):
        logging.getLogger("ppdistill").propagate = True
        state = load_model(resume_config(str(tmp_path / "latest.pdparams")), model2, optimizer2)
    assert "latest.pdopt does not exist" in caplog.text
    assert "latest.states does not exist" in caplog.text
    assert state == {} and schedule2.last_epoch == 0
    with pytest.raises(FileNotFoundError, match="nothing.pdparams"):
        load_model(resume_config(str(tmp_path / "nothing")), model2, optimizer2)


def test_load_model_without_checkpoint_or_pretrained(tmp_path):
    model, optimizer, _ = build()
    assert load_model({"Global": {}}, model, optimizer) == {}


# ------------------------------------------------------------------------------ atomic save
def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, schedule = build()
    train_steps(model, optimizer, schedule, 2)
    save_model(model, optimizer, str(tmp_path), prefix="latest", epoch=1, global_step=2)
    first = weights(model)
    first_files = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)}
    train_steps(model, optimizer, schedule, 2)

    for crash_at in (1, 2):  # in the .pdparams file, then in the .pdopt file
        calls = []

        def crashing_write(temp_path, data):
            calls.append(temp_path)
            if len(calls) == crash_at:
                with open(temp_path, "wb") as handle:
                    handle.write(data[: len(data) // 2])
                raise OSError("disk full (simulated)")
            ORIGINAL_WRITE(temp_path, data)

        monkeypatch.setattr(save_load, "_write_temp", crashing_write)
        with pytest.raises(OSError, match="simulated"):
            save_model(model, optimizer, str(tmp_path), prefix="latest", epoch=2, global_step=4)
        assert sorted(os.listdir(tmp_path)) == sorted(first_files)  # no temporaries left
        for name, data in first_files.items():
            assert (tmp_path / name).read_bytes() == data, name
    monkeypatch.undo()

    model2, optimizer2, _ = build()
    state = load_model(resume_config(str(tmp_path / "latest")), model2, optimizer2)
    assert state["epoch"] == 1 and state["global_step"] == 2
    for key, value in first.items():
        np.testing.assert_array_equal(weights(model2)[key], value, err_msg=key)
    # and a save that succeeds replaces it
    save_model(model, optimizer, str(tmp_path), prefix="latest", epoch=2, global_step=4)
    assert safe_load(str(tmp_path / "latest.states"))["epoch"] == 2



# --------------------------------------------------------------------------- student file
def test_best_accuracy_writes_the_student_file(tmp_path):
    model, optimizer, schedule = build()
    train_steps(model, optimizer, schedule, 1)
    written = save_model(model, optimizer, str(tmp_path), config=distill_config(),
                         is_best=True, prefix="best_accuracy", epoch=1)
    student_file = str(tmp_path / "best_model_student.pdparams")
    assert student_file in written
    student = safe_load(student_file)
    expected = model.Student.state_dict()
    assert list(student) == list(expected)
    assert not any(k.startswith("Student.") for k in student)
    for key, value in expected.items():
        np.testing.assert_array_equal(student[key].numpy(), value.numpy())
    # it loads into a single (non-distillation) model of the Student's config
    single = build_model(toy_model_config(4))
    report = load_pretrained_params(single, student_file)
    assert len(report.loaded) == len(expected) and not report.missing

    os.remove(student_file)
    save_model(model, optimizer, str(tmp_path), prefix="best_accuracy", metric_key="Teacher")
    assert list(safe_load(student_file)) == list(model.Teacher.state_dict())
    os.remove(student_file)
    save_model(model, optimizer, str(tmp_path), prefix="latest", config=distill_config())
    assert not os.path.exists(student_file)
    save_model(model, optimizer, str(tmp_path), prefix="best_accuracy", metric_key="Studnet")
    assert not os.path.exists(student_file)


def test_data_parallel_like_wrapper_is_unwrapped(tmp_path):
    class Wrapper(nn.Layer):  # what paddle.DataParallel looks like to save_model
        def __init__(self, layers):
            super().__init__()
            self._layers = layers

    model, optimizer, _ = build()
    save_model(Wrapper(model), optimizer, str(tmp_path), prefix="latest")
    assert list(safe_load(str(tmp_path / "latest.pdparams"))) == list(model.state_dict())


def test_docs_paddle_load_snippet_works_on_our_checkpoint(tmp_path):
    """The student-extraction snippet of the distillation guide (§2.2.5), verbatim."""
    model, optimizer, _ = build()
    save_model(model, optimizer, str(tmp_path), prefix="best_accuracy")
    ckpt_dir = str(tmp_path)
    all_params = paddle.load(ckpt_dir + "/best_accuracy.pdparams")
    s_params = {key[len("Student."):]: all_params[key] for key in all_params if "Student." in key}
    paddle.save(s_params, ckpt_dir + "/student.pdparams")
    single = build_model(toy_model_config(4))
    report = load_pretrained_params(single, ckpt_dir + "/student")
    assert len(report.loaded) == 8 and not report.missing and not report.unexpected
    for key, value in model.Student.state_dict().items():
        np.testing.assert_array_equal(single.state_dict()[key].numpy(), value.numpy())


# --------------------------------------------------------------------- loud pretrained load
def test_load_pretrained_reports_missing_unexpected_and_shape(tmp_path, caplog):
    source = build_model(distill_config(student_channels=5)["Architecture"])
    params = dict(source.state_dict())
    params.pop("Student.head.conv.bias")
    params["Student.extra.weight"] = paddle.ones([2])
    params["Teacher.head.conv.weight"] = params["Teacher.head.conv.weight"].astype("float16")
    paddle.save(params, str(tmp_path / "src.pdparams"))
    model = build_model(distill_config()["Architecture"])
    with caplog.at_level(logging.INFO, logger="ppdistill"):
        logging.getLogger("ppdistill").propagate = True
        report = load_pretrained_params(model, str(tmp_path / "src"))
    # Student has 4 channels, the file 5: its backbone and head weights mismatch
    assert report.missing == ["Student.head.conv.bias"]
    assert report.unexpected == ["Student.extra.weight"]
    mismatched = {k for k, _, _ in report.shape_mismatched}
    assert "Student.backbone.conv.weight" in mismatched and len(mismatched) == 7
    assert ("Student.backbone.conv.weight", [4, 3, 3, 3], [5, 3, 3, 3]) in \
        report.shape_mismatched
    assert len(report.loaded) == 8 and all(k.startswith("Teacher.") for k in report.loaded)
    assert report.is_float16
    assert model.Teacher.head.conv.weight.dtype == paddle.float32
    np.testing.assert_allclose(model.Teacher.head.conv.weight.numpy(),
                               source.Teacher.head.conv.weight.numpy(), atol=1e-3)
    text = caplog.text
    assert "loaded 8/16 tensors; missing 1, unexpected 1, shape-mismatched 7" in text
    assert "shape mismatch for Student.backbone.conv.weight: model [4, 3, 3, 3], file " \
           "[5, 3, 3, 3]" in text
    assert "1 unexpected (ignored): Student.extra.weight" in text
    assert report.as_dict()["missing"] == ["Student.head.conv.bias"]


def test_load_pretrained_raises_when_nothing_matches(tmp_path):
    model, _, _ = build()
    save_model(model, None, str(tmp_path), prefix="best_accuracy")
    single = build_model(toy_model_config(4))
    with pytest.raises(ValueError) as info:
        load_pretrained_params(single, str(tmp_path / "best_accuracy.pdparams"))
    message = str(info.value)
    assert "none of its 16 tensors matches" in message and "'Student'" in message
    assert "tools/extract_submodel.py" in message and "--name Student" in message
    # the other way round: single-model weights given to the whole DistillationModel
    paddle.save(single.state_dict(), str(tmp_path / "single.pdparams"))
    with pytest.raises(ValueError, match="Architecture.Models.<Name>.pretrained"):
        load_pretrained_params(model, str(tmp_path / "single"))
    with pytest.raises(FileNotFoundError, match="missing.pdparams"):
        load_pretrained_params(model, str(tmp_path / "missing"))
    # names match but every shape differs (another config)
    wide = dict(toy_model_config(5), Head={"name": "ToyHead", "out_channels": 2})
    paddle.save(build_model(wide).state_dict(), str(tmp_path / "wide.pdparams"))
    with pytest.raises(ValueError, match=r"wide.pdparams: 8 tensors match by name but none by "
                                         r"shape \(e.g. backbone.conv.weight: model \[4, 3, 3, 3\]"):
        load_pretrained_params(single, str(tmp_path / "wide"))
    paddle.save([paddle.ones([1])], str(tmp_path / "list.pdparams"))
    with pytest.raises(ValueError, match="expected a state dict .* holds a list"):
        load_pretrained_params(single, str(tmp_path / "list"))


def test_backbone_only_weights_get_the_backbone_prefix(tmp_path):
    single = build_model(toy_model_config(4))
    backbone = {k[len("backbone."):]: v for k, v in single.state_dict().items()
                if k.startswith("backbone.")}
    paddle.save(backbone, str(tmp_path / "bb.pdparams"))
    other = build_model(toy_model_config(4))
    report = load_pretrained_params(other, str(tmp_path / "bb"))
    assert report.prefix_added == "backbone." and len(report.loaded) == 6
    assert report.missing == ["head.conv.weight", "head.conv.bias"]
    np.testing.assert_array_equal(other.backbone.conv.weight.numpy(),
                                  single.backbone.conv.weight.numpy())


def test_pretrained_model_list(tmp_path):
    source = build_model(distill_config()["Architecture"])
    paddle.save(extract_submodel(source.state_dict(), "Student"), str(tmp_path / "s.pdparams"))
    paddle.save({k: v for k, v in source.state_dict().items() if k.startswith("Teacher.")},
                str(tmp_path / "t.pdparams"))
    model = build_model(distill_config()["Architecture"])
    load_model({"Global": {"pretrained_model": [str(tmp_path / "t")]}}, model)
    np.testing.assert_array_equal(model.Teacher.head.conv.weight.numpy(),
                                  source.Teacher.head.conv.weight.numpy())


def test_extract_submodel():
    model = build_model(distill_config()["Architecture"])
    sub = extract_submodel(model.state_dict(), "Teacher")
    assert list(sub) == list(model.Teacher.state_dict())
    with pytest.raises(ValueError, match=r"no sub-model 'Studnt'; did you mean 'Student'\?.*"
                                         r"\['Student', 'Teacher'\]"):
        extract_submodel(model.state_dict(), "Studnt")


# ----------------------------------------------------------------------------- safe loader
class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > marker",))


@pytest.mark.parametrize("obj", [lambda: Payload(), lambda: {"w": np.zeros(2), "x": Payload()}])
def test_safe_loader_refuses_a_code_payload(tmp_path, monkeypatch, obj):
    monkeypatch.chdir(tmp_path)
    with open("evil.pdparams", "wb") as handle:
        pickle.dump(obj(), handle, protocol=2)
    with pytest.raises(UnsafeCheckpointError,
                       match=r"evil.pdparams: refusing to load: the file references "
                             r"'(posix|nt)\.system', which a checkpoint never needs "
                             r"\(a pickle payload\?\)"):
        safe_load("evil.pdparams")
    model = build_model(toy_model_config(4))
    with pytest.raises(ValueError, match="refusing to load"):
        load_pretrained_params(model, "evil")
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(resume_config("evil"), model)
    assert not os.path.exists("marker")
    # control: the standard unpickler would have run the command
    with open("evil.pdparams", "rb") as handle:
        pickle.load(handle)
    assert os.path.exists("marker")


def test_safe_loader_matches_paddle_load_on_real_files(tmp_path):
    model, optimizer, schedule = build()
    train_steps(model, optimizer, schedule, 3)
    paddle.save(model.state_dict(), str(tmp_path / "m.pdparams"))
    paddle.save(optimizer.state_dict(), str(tmp_path / "m.pdopt"))
    paddle.save(model.state_dict(), str(tmp_path / "p2.pdparams"), protocol=2)
    nested = {"a": [paddle.ones([2]), np.arange(3)], "n": 3, "s": "x"}
    paddle.save(nested, str(tmp_path / "nested.pdparams"))
    for name in ("m.pdparams", "m.pdopt", "p2.pdparams", "nested.pdparams"):
        path = str(tmp_path / name)
        ours, theirs = safe_load(path), paddle.load(path)
        assert list(ours) == list(theirs), name
        for key in theirs:
            if isinstance(theirs[key], paddle.Tensor):
                assert isinstance(ours[key], paddle.Tensor)
                np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy())
                assert ours[key].name == theirs[key].name
    opt_state = safe_load(str(tmp_path / "m.pdopt"))
    assert opt_state["LR_Scheduler"] == paddle.load(str(tmp_path / "m.pdopt"))["LR_Scheduler"]
    assert opt_state["LR_Scheduler"]["last_epoch"] == 3
    assert any(k.endswith("moment2_0") for k in opt_state)
    ours, theirs = safe_load(str(tmp_path / "nested.pdparams")), paddle.load(
        str(tmp_path / "nested.pdparams"))
    assert isinstance(ours["a"][0], paddle.Tensor) and ours["n"] == 3 and ours["s"] == "x"
    np.testing.assert_array_equal(ours["a"][1], theirs["a"][1])
    as_numpy = safe_load(str(tmp_path / "m.pdparams"), return_numpy=True)
    assert all(isinstance(v, np.ndarray) for v in as_numpy.values())
    table = safe_load(str(tmp_path / "m.pdparams"), keep_name_table=True)[NAME_TABLE_KEY]
    assert table["Student.head.conv.weight"] == model.Student.head.conv.weight.name


def test_safe_loader_reads_paddle_26_files():
    """Files written by paddle 2.6.2 + numpy 1.26 (``numpy.core`` paths), generated with:

    layer = paddle.nn.Linear(2, 3) (seed 3); Adam on LinearWarmup(CosineAnnealingDecay(0.1, 10),
    2, 0.0, 0.1); 3 steps of ``layer(ones([1, 2])).sum()``; paddle.save of both state dicts.
    """
    expected = np.load(os.path.join(FIXTURES, "paddle26_expected.npz"))
    params = safe_load(os.path.join(FIXTURES, "paddle26_linear.pdparams"))
    np.testing.assert_array_equal(params["weight"].numpy(), expected["weight"])
    np.testing.assert_array_equal(params["bias"].numpy(), expected["bias"])
    opt = safe_load(os.path.join(FIXTURES, "paddle26_linear.pdopt"))
    np.testing.assert_array_equal(opt["linear_0.w_0_moment1_0"].numpy(), expected["moment1"])
    assert opt["LR_Scheduler"]["last_epoch"] == int(expected["last_epoch"])
    assert opt["LR_Scheduler"]["last_lr"] == pytest.approx(float(expected["last_lr"]))


def test_safe_loader_errors_name_the_file(tmp_path):
    (tmp_path / "text.pdparams").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text.pdparams: not a checkpoint written by "
                                         r"paddle.save \(it is not a pickle file"):
        safe_load(str(tmp_path / "text.pdparams"))
    paddle.save({"w": paddle.ones([64])}, str(tmp_path / "full.pdparams"))
    data = (tmp_path / "full.pdparams").read_bytes()
    (tmp_path / "cut.pdparams").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.pdparams: cannot read the checkpoint"):
        safe_load(str(tmp_path / "cut.pdparams"))
    with pytest.raises(FileNotFoundError, match="absent.pdopt"):
        safe_load(str(tmp_path / "absent.pdopt"))
