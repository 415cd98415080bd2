"""Every tool ends a user error with one ``error:`` line and exit status 2, never a traceback;
``--debug`` / ``PPDISTILL_DEBUG=1`` show it; bugs keep their traceback."""
import os
import pickle

import paddle
import pytest

from ppdistill.engine.launch import checkpoint_hint, cli_main
from ppdistill.engine.run import eval_main, train_main
from ppdistill.utils.save_load import save_state_dict

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STUDENT = os.path.join(REPO, "configs", "det", "ch_PP-OCRv3_det_student.yml")
DML = os.path.join(REPO, "configs", "det", "ch_PP-OCRv3_det_dml.yml")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _bad_files(tmp_path):
    valid = paddle.nn.Linear(2, 2).state_dict()
    save_state_dict(valid, str(tmp_path / "other_model.pdparams"))
    data = (tmp_path / "other_model.pdparams").read_bytes()
    (tmp_path / "truncated.pdparams").write_bytes(data[:len(data) // 2])
    (tmp_path / "corrupt.pdparams").write_bytes(b"\x80" + bytes(range(256)) * 4)
    (tmp_path / "payload.pdparams").write_bytes(pickle.dumps({"w": _Payload()}, protocol=2))
    return {"truncated": "cannot read the checkpoint", "corrupt": "cannot read the checkpoint",
            "payload": "refusing to load", "other_model": "none of its 2 tensors matches"}


def _run(main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    return info.value.code, err


@pytest.fixture(autouse=True)
def _no_debug_and_fresh_log_handlers(monkeypatch):
    """No PPDISTILL_DEBUG; the ppdistill logger's console handler is bound to this test's
    captured stdout (get_logger adds it once per process)."""
    import logging

    from ppdistill.utils import logging as log_utils
    monkeypatch.delenv("PPDISTILL_DEBUG", raising=False)
    logger = logging.getLogger("ppdistill")
    saved = list(logger.handlers)
    monkeypatch.setattr(log_utils, "_configured", set())
    logger.handlers = []
    yield
    for handler in logger.handlers:
        handler.close()
    logger.handlers = saved


def test_bad_checkpoints_end_with_one_error_line(tmp_path, capsys):
    expected = _bad_files(tmp_path)
    common = ["-c", STUDENT, "-o", "Global.use_gpu=false", f"Global.save_model_dir={tmp_path}"]
    for name, message in expected.items():
        for key in ("pretrained_model", "checkpoints"):
            code, err = _run(eval_main, common + [f"Global.{key}={tmp_path / name}"], capsys)
            assert code == 2, (name, key, err)
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), (name, key, err)
            assert message in lines[0] and f"{name}.pdparams" in lines[0], (name, key, err)
            assert "Traceback" not in err


def test_a_sub_models_bad_pretrained_is_one_error_line(tmp_path, capsys):
    _bad_files(tmp_path)
    code, err = _run(eval_main, ["-c", DML, "-o", "Global.use_gpu=false",
                                 f"Global.save_model_dir={tmp_path}",
                                 f"Architecture.Models.Student.pretrained={tmp_path}/payload"],
                     capsys)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "payload.pdparams: refusing to load" in err


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    _bad_files(tmp_path)
    argv = ["-c", STUDENT, "-o", "Global.use_gpu=false", f"Global.save_model_dir={tmp_path}",
            f"Global.pretrained_model={tmp_path}/corrupt"]
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        eval_main(argv + ["--debug"])
    monkeypatch.setenv("PPDISTILL_DEBUG", "1")
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        eval_main(argv)


def test_missing_checkpoint_lists_the_ones_that_exist(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("latest", "iter_epoch_3"):
        (out / f"{name}.pdparams").write_bytes(b"")
    code, err = _run(eval_main, ["-c", STUDENT, "-o", "Global.use_gpu=false",
                                 f"Global.save_model_dir={tmp_path}",
                                 f"Global.checkpoints={out}/best_accuracy"], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"best_accuracy.pdparams: checkpoint not found" in err
    assert f"checkpoints in {out}: latest, iter_epoch_3" in err
    assert "does not exist" in checkpoint_hint(str(tmp_path / "nowhere" / "latest"))


def test_all_bad_training_set_is_an_error_line_naming_the_label_file(tmp_path, capsys):
    label = tmp_path / "train_label.txt"
    label.write_text("missing.jpg\t[]\nalso_missing.jpg\t[]\n", encoding="utf-8")
    code, err = _run(train_main, ["-c", STUDENT, "-o", "Global.use_gpu=false",
                                  f"Global.save_model_dir={tmp_path}",
                                  f"Train.dataset.data_dir={tmp_path}",
                                  f"Train.dataset.label_file_list=[{label}]",
                                  "Train.loader.num_workers=2"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "all 2 samples of" in err and "train_label.txt" in err


def test_constructor_errors_keep_path_and_cause(tmp_path, capsys):
    code, err = _run(eval_main, ["-c", STUDENT, "-o", "Global.use_gpu=false",
                                 f"Global.save_model_dir={tmp_path}",
                                 "Architecture.Backbone.scale=0.33"], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: Architecture.Backbone: ") and "scale must be one of" in err


def test_a_bug_keeps_its_traceback():
    @cli_main
    def buggy(argv=None):
        return {}["missing"]
    with pytest.raises(KeyError):
        buggy([])


def test_predict_det_fails_when_no_image_can_be_read(tmp_path, capsys, monkeypatch):
    import ppdistill.infer.text_detector as predict_det
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "model").mkdir()
    monkeypatch.setattr(predict_det, "TextDetector", lambda *a, **k: (lambda image: ([], 0.0)))
    code, err = _run(predict_det.main, ["--det_model_dir", str(tmp_path / "model"),
                                        "--image_dir", str(tmp_path / "broken.jpg"),
                                        "--use_gpu", "false",
                                        "--draw_img_save_dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "no readable image" in err and "Traceback" not in err
