import os

import pytest

from ppdistill.registry import ConfigError
from ppdistill.utils.char_dict import load_characters, resolve_dict_path


def test_shipped_dictionaries_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ("ppdistill/utils/dict/ppocr_keys_v1.txt", "ppocr/utils/ppocr_keys_v1.txt",
                 "./ppocr/utils/en_dict.txt"):
        assert os.path.isfile(resolve_dict_path(path))
    chars = load_characters("ppocr/utils/ppocr_keys_v1.txt", use_space_char=True)
    assert len(chars) == 6624 and chars[-1] == " "


def test_local_file_wins_and_missing_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ppocr" / "utils").mkdir(parents=True)
    (tmp_path / "ppocr" / "utils" / "en_dict.txt").write_text("a\nb\n")
    assert load_characters("ppocr/utils/en_dict.txt") == ["a", "b"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_characters("ppocr/utils/nope.txt")
