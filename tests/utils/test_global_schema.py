"""One schema for Global: unknown keys rejected in the file and in -o, PaddleOCR's keys accepted,
unsupported ones warned about, types checked, README table generated from it."""
import os
import re

import pytest

from ppdistill.engine.launch import build_arg_parser
from ppdistill.registry import ConfigError
from ppdistill.utils.config import load_config, load_with_overrides, merge_overrides
from ppdistill.utils.global_schema import (GLOBAL_SCHEMA, INFO, UNSUPPORTED, global_setting,
                                           markdown_table, unsupported_warning)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

#: the Global keys of PaddleOCR's PP-OCRv3/v4/v5 det/rec configs (PaddlePaddle/PaddleOCR,
#: configs/det/PP-OCRv{3,4,5}/*, configs/det/ch_PP-OCRv{3,4}/*, configs/rec/PP-OCRv{3,4,5}/*)
PADDLEOCR_GLOBAL_KEYS = (
    "model_name", "debug", "use_gpu", "epoch_num", "log_smooth_window", "print_batch_step",
    "save_model_dir", "save_epoch_step", "eval_batch_step", "cal_metric_during_train",
    "calc_epoch_interval", "pretrained_model", "checkpoints", "save_inference_dir",
    "use_visualdl", "infer_img", "save_res_path", "character_dict_path", "max_text_length",
    "infer_mode", "use_space_char", "distributed", "d2s_train_image_shape", "use_amp",
    "amp_level", "use_sync_bn", "use_wandb", "use_xpu", "use_npu", "use_mlu",
)


def _write(tmp_path, text, name="c.yml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_unknown_global_key_in_the_file_is_rejected_with_line_and_suggestion(tmp_path):
    path = _write(tmp_path, "Global:\n  use_gpu: false\n  epoch_nums: 5\n")
    with pytest.raises(ConfigError, match=r"c.yml:3: unknown key 'Global.epoch_nums'; did you "
                                          r"mean 'epoch_num'\?"):
        load_config(path)


def test_unknown_and_mistyped_keys_in_overrides(tmp_path):
    config = load_config(_write(tmp_path, "Global:\n  epoch_num: 2\n"))
    with pytest.raises(ConfigError, match=r"-o Global.epoch_nums=5: unknown key "
                                          r"'Global.epoch_nums'; did you mean 'epoch_num'"):
        merge_overrides(config, ["Global.epoch_nums=5"])
    with pytest.raises(ConfigError, match=r"Global.epoch_num: expected int, got 'five'"):
        merge_overrides(config, ["Global.epoch_num=five"])
    with pytest.raises(ConfigError, match=r"Global.use_gpu: expected bool, got 1"):
        merge_overrides(config, ["Global.use_gpu=1"])


def test_use_sync_bn_and_schema_keys_work_from_overrides(tmp_path):
    config = load_config(_write(tmp_path, "Global:\n  epoch_num: 2\n"))
    out = merge_overrides(config, ["Global.use_sync_bn=true", "Global.max_iters=3",
                                   "Global.pretrained_model=null", "Global.scale_loss=2"])
    assert out["Global"]["use_sync_bn"] is True and out["Global"]["max_iters"] == 3
    assert global_setting(out["Global"], "pretrained_model") is None
    assert global_setting(out["Global"], "print_batch_step") == 10


def test_paddleocr_global_keys_are_all_accepted(tmp_path):
    text = "Global:\n" + "".join(f"  {key}:\n" for key in PADDLEOCR_GLOBAL_KEYS) + \
        "profiler_options: null\n"
    config = load_config(_write(tmp_path, text))
    assert set(config["Global"]) == set(PADDLEOCR_GLOBAL_KEYS)
    assert set(PADDLEOCR_GLOBAL_KEYS) <= set(GLOBAL_SCHEMA)


def test_unsupported_keys_warn_once_naming_them(tmp_path, capsys):
    path = _write(tmp_path, "Global:\n  use_wandb: true\n  use_xpu: false\n  debug: true\n")
    load_with_overrides(path, ["Global.use_npu=true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: not implemented by ppdistill, ignored: Global.use_wandb=True, "
                   "Global.use_npu=True"]
    assert unsupported_warning({"use_xpu": False, "calc_epoch_interval": 1}) is None
    assert all(GLOBAL_SCHEMA[k].status == UNSUPPORTED for k in ("use_wandb", "use_xpu"))
    assert GLOBAL_SCHEMA["debug"].status == INFO


def test_undefined_alias_is_one_clear_line(tmp_path):
    path = _write(tmp_path, "Global:\n  epoch_num: 2\nArchitecture:\n  Head:\n"
                            "    max_text_length: *max_text_length\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:5: undefined YAML alias '*max_text_length'")


def test_every_setting_is_described_and_typed():
    for name, setting in GLOBAL_SCHEMA.items():
        assert setting.help and setting.types, name
        if setting.default is not None:
            assert any(isinstance(setting.default, t) for t in setting.types), name


def test_readme_table_is_the_generated_one():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    match = re.search(r"<!-- global-schema:start[^\n]*-->\n(.*?)\n<!-- global-schema:end -->",
                      readme, flags=re.DOTALL)
    assert match, "README.md has no generated Global table"
    assert match.group(1) == markdown_table(), \
        "README's Global table is stale: python -m ppdistill.utils.global_schema"


def test_help_config_prints_the_schema_without_a_config(capsys):
    with pytest.raises(SystemExit) as info:
        build_arg_parser("x").parse_args(["--help-config"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in GLOBAL_SCHEMA:
        assert re.search(rf"^  {name} ", out, flags=re.MULTILINE), name


def test_shipped_configs_pass_the_schema():
    import glob
    paths = glob.glob(os.path.join(REPO, "configs", "*", "*.yml"))
    assert paths
    for path in paths:
        load_config(path)
