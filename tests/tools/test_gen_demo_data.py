"""tools/gen_demo_data.py writes into a demo folder of its own and never overwrites user data."""
import os

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def cli():
    return load_script("tools/gen_demo_data.py", "gen_demo_data")


def test_default_folder_is_its_own_not_paddleocrs(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--task", "det", "--num_train", "1", "--num_test", "1"]) == 0
    assert (tmp_path / "demo_data" / "det" / "train_icdar2015_label.txt").is_file()
    assert not (tmp_path / "train_data").exists()
    # a second run keeps the data
    label = tmp_path / "demo_data" / "det" / "train_icdar2015_label.txt"
    before = os.path.getmtime(label)
    cli.main(["--task", "det", "--num_train", "1", "--num_test", "1"])
    assert os.path.getmtime(label) == before and "kept" in capsys.readouterr().out


def test_a_foreign_non_empty_folder_is_refused_without_force(cli, tmp_path, capsys):
    user = tmp_path / "train_data" / "rec"
    user.mkdir(parents=True)
    (user / "my_labels.txt").write_text("precious\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["--task", "rec", "--out_dir", str(tmp_path / "train_data"),
                  "--layout", "paddleocr", "--num_train", "1", "--num_test", "1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: rec: ") and "not empty" in err and "--force" in err
    assert sorted(os.listdir(user)) == ["my_labels.txt"]


def test_paddleocr_layout_on_request(cli, tmp_path):
    cli.main(["--out_dir", str(tmp_path), "--layout", "paddleocr", "--num_train", "1",
              "--num_test", "1"])
    assert (tmp_path / "icdar2015" / "text_localization" / "test_icdar2015_label.txt").is_file()
    assert (tmp_path / "rec" / "val.txt").is_file()
