"""Export of a DistillationModel per sub-model and loading it back with paddle.inference."""
import os

import numpy as np
import paddle
import pytest
from conftest import toy_model_config

from ppdistill.modeling.architectures import build_model
from ppdistill.registry import ConfigError
from ppdistill.utils.export import export_model, input_shape
from ppdistill.infer.predictor import InferenceModel, find_model_files


def distill_config():
    return {"Architecture": {"name": "DistillationModel", "model_type": "det",
                             "Models": {"Teacher": dict(toy_model_config(6), freeze_params=True),
                                        "Student": dict(toy_model_config(4),
                                                        return_all_feats=True)}}}


def test_export_every_sub_model_and_infer(tmp_path):
    cfg = distill_config()
    model = build_model(cfg["Architecture"])
    written = export_model(cfg, model, str(tmp_path))
    assert set(written) == {"Teacher", "Student"}
    x = np.random.rand(1, 3, 24, 40).astype("float32")
    model.eval()
    for name in ("Teacher", "Student"):
        model_file, _ = find_model_files(os.path.join(str(tmp_path), name))
        assert os.path.basename(model_file) in ("inference.json", "inference.pdmodel")
        out = InferenceModel(os.path.join(str(tmp_path), name), use_gpu=False)(x)[0]
        ref = getattr(model, name)(paddle.to_tensor(x))["maps"].numpy()
        np.testing.assert_allclose(out, ref, atol=1e-5)
    # return_all_feats is switched off for export: the Student's output is just the head's
    assert not model.Student.return_all_feats


def test_export_selected_and_unknown(tmp_path):
    cfg = distill_config()
    model = build_model(cfg["Architecture"])
    assert set(export_model(cfg, model, str(tmp_path), names=["Student"])) == {"Student"}
    assert not os.path.exists(os.path.join(str(tmp_path), "Teacher"))
    with pytest.raises(ConfigError, match="did you mean 'Student'"):
        export_model(cfg, model, str(tmp_path), names=["Studnet"])


def test_input_shape_rec_height():
    cfg = {"Architecture": {"model_type": "rec"}, "Global": {},
           "Eval": {"dataset": {"transforms": [{"RecResizeImg": {"image_shape": [3, 32, 320]}}]}}}
    assert input_shape(cfg) == [None, 3, 32, -1]
    cfg["Eval"] = None
    assert input_shape(cfg) == [None, 3, 48, -1]
    assert input_shape({"Architecture": {"model_type": "det"}}) == [None, 3, -1, -1]


def test_missing_model_dir_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no inference.json/inference.pdmodel"):
        find_model_files(str(tmp_path))


def test_re_export_removes_the_other_format_and_the_loader_picks_a_readable_file(tmp_path):
    """A directory exported by paddle 3 (.json) and then paddle 2.x (.pdmodel), or the reverse,
    must not hand the stale program to the predictor (paddle 2.6 crashed on a stale .json)."""
    cfg = distill_config()
    model = build_model(cfg["Architecture"])
    model_dir = os.path.join(str(tmp_path), "Student")
    os.makedirs(model_dir)
    for stale in ("inference.json", "inference.pdmodel"):
        with open(os.path.join(model_dir, stale), "w") as handle:
            handle.write("stale")
    export_model(cfg, model, str(tmp_path), names=["Student"])
    programs = [f for f in os.listdir(model_dir) if f.endswith((".json", ".pdmodel"))]
    assert len(programs) == 1, programs  # only the one this paddle wrote
    model_file, _ = find_model_files(model_dir)
    assert os.path.basename(model_file) == programs[0]


def test_loader_takes_the_newer_program_or_the_only_readable_one(tmp_path, monkeypatch):
    for name, age in (("inference.json", 100), ("inference.pdmodel", 0), ("inference.pdiparams", 0)):
        path = os.path.join(str(tmp_path), name)
        with open(path, "w") as handle:
            handle.write("x")
        os.utime(path, (1_700_000_000 - age, 1_700_000_000 - age))
    monkeypatch.setattr(paddle, "__version__", "3.3.1")
    assert find_model_files(str(tmp_path))[0].endswith("inference.pdmodel")
    os.utime(os.path.join(str(tmp_path), "inference.json"), (1_800_000_000, 1_800_000_000))
    assert find_model_files(str(tmp_path))[0].endswith("inference.json")
    monkeypatch.setattr(paddle, "__version__", "2.6.2")
    assert find_model_files(str(tmp_path))[0].endswith("inference.pdmodel")
