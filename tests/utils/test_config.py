import pytest

from ppdistill.registry import ConfigError
from ppdistill.utils.config import load_config, merge_overrides

YAML = """
Global:
  epoch_num: 2
  max_text_length: &max_text_length 25
Architecture:
  model_type: det
Train:
  dataset:
    transforms:
      - DecodeImage: {img_mode: BGR}
      - MakeBorderMap:
      - KeepKeys: {keep_keys: [image]}
      - EastRandomCropData: {size: [960, 960]}
Eval:
  dataset:
    max_len: *max_text_length
"""


@pytest.fixture()
def cfg_file(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(YAML)
    return str(path)


def test_anchors_and_aliases(cfg_file):
    cfg = load_config(cfg_file)
    assert cfg["Eval"]["dataset"]["max_len"] == 25


def test_python_tags_refused(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("Global:\n  x: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match=r"bad.yml:2"):
        load_config(str(path))


def test_unknown_section(tmp_path):
    path = tmp_path / "s.yml"
    path.write_text("Globall: {}\n")
    with pytest.raises(ConfigError, match="did you mean 'Global'"):
        load_config(str(path))


def test_overrides_parse_yaml_values_and_list_indices(cfg_file):
    cfg = load_config(cfg_file)
    out = merge_overrides(cfg, ["Global.epoch_num=5",
                                "Train.dataset.transforms.3.EastRandomCropData.size=[320,320]",
                                "Global.use_amp=true"])
    assert out["Global"]["epoch_num"] == 5 and out["Global"]["use_amp"] is True
    assert out["Train"]["dataset"]["transforms"][3]["EastRandomCropData"]["size"] == [320, 320]
    assert cfg["Global"]["epoch_num"] == 2  # caller's config untouched


def test_override_unknown_key_suggests(cfg_file):
    cfg = load_config(cfg_file)
    with pytest.raises(ConfigError, match=r"unknown key 'Global.epoch_nums'; did you mean 'epoch_num'"):
        merge_overrides(cfg, ["Global.epoch_nums=5"])
    with pytest.raises(ConfigError, match="out of range"):
        merge_overrides(cfg, ["Train.dataset.transforms.9.X.y=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        merge_overrides(cfg, ["Global.epoch_num"])


def test_override_accepts_component_argument(cfg_file):
    """An argument of the registered component may be added even if the file omits it."""
    import ppdistill.data  # noqa: F401  (registers the transforms)
    cfg = load_config(cfg_file)
    out = merge_overrides(cfg, ["Train.dataset.transforms.1.MakeBorderMap.shrink_ratio=0.5"])
    assert out["Train"]["dataset"]["transforms"][1]["MakeBorderMap"] == {"shrink_ratio": 0.5}
    with pytest.raises(ConfigError, match="unknown key"):
        merge_overrides(cfg, ["Train.dataset.transforms.1.MakeBorderMap.shrink_ration=0.5"])
