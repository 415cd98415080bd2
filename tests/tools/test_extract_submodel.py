"""tools/extract_submodel.py on a tiny saved DistillationModel checkpoint."""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from conftest import toy_model_config

from ppdistill.modeling.architectures import build_model
from ppdistill.utils.safe_load import safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "extract_submodel.py")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import extract_submodel  # noqa: E402


@pytest.fixture()
def checkpoint(tmp_path):
    model = build_model({"name": "DistillationModel", "model_type": "det", "Models": {
        "Teacher": dict(toy_model_config(6), freeze_params=True),
        "Student": toy_model_config(4)}})
    path = str(tmp_path / "best_accuracy.pdparams")
    paddle.save(model.state_dict(), path)
    return model, path


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_extracts_the_student(checkpoint, tmp_path):
    model, path = checkpoint
    out = str(tmp_path / "sub" / "student.pdparams")
    result = run_tool("--checkpoint", path, "--name", "Student", "--out", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote 8 tensors of 'Student' to {out}" in result.stdout
    student = safe_load(out)
    assert list(student) == list(model.Student.state_dict())
    for key, value in model.Student.state_dict().items():
        np.testing.assert_array_equal(student[key].numpy(), value.numpy())
    # the output is a normal paddle file too
    assert set(paddle.load(out)) == set(student)


def test_cli_unknown_name_lists_the_prefixes(checkpoint, tmp_path):
    _, path = checkpoint
    result = run_tool("--checkpoint", path[:-len(".pdparams")], "--name", "student",
                      "--out", str(tmp_path / "x.pdparams"))
    assert result.returncode == 2
    assert "no sub-model 'student'; did you mean 'Student'?" in result.stderr
    assert "['Student', 'Teacher']" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.pdparams").exists()


def test_listing_default_output_and_errors_in_process(checkpoint, tmp_path, capsys):
    _, path = checkpoint
    assert extract_submodel.main(["--checkpoint", path]) == 0
    assert capsys.readouterr().out.splitlines() == ["Teacher: 8 tensors", "Student: 8 tensors"]
    assert extract_submodel.main(["--checkpoint", path, "--name", "Teacher"]) == 0
    assert len(safe_load(str(tmp_path / "teacher.pdparams"))) == 8
    with pytest.raises(SystemExit) as info:
        extract_submodel.main(["--checkpoint", str(tmp_path / "nope")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "nope.pdparams: no such checkpoint file" in err
    # the message names the checkpoints that exist next to it
    assert f"checkpoints in {tmp_path}: " in err and "teacher" in err
