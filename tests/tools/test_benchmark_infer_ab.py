"""benchmark/infer_ab.py: models take turns in blocks, the summary's percentiles and ratios, and
the command line on a real (tiny) export."""
import subprocess
import sys

import pytest
from conftest import REPO, load_script, toy_model_config

infer_ab = load_script("benchmark/infer_ab.py", "bench_infer_ab_under_test")


def test_models_take_turns_in_blocks():
    calls = []
    models = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    times = infer_ab.compare(models, None, rounds=2, block=3)
    assert calls == ["a", "a", "b", "b"] + (["a"] * 3 + ["b"] * 3) * 2  # warm-up, then turns
    assert [len(v) for v in times.values()] == [6, 6]


def test_summary_per_image_with_ratio_to_the_first():
    times = {"first": [0.010] * 9 + [0.050], "second": [0.020] * 10}
    lines = infer_ab.summary_lines(times, images_per_run=2)
    assert lines[0] == "first: p10 5.00 ms, median 5.00 ms per image (10 runs)"
    assert lines[1] == "second: p10 10.00 ms, median 10.00 ms per image (10 runs)  ×2.000 of the first"


def test_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        infer_ab.parse_args([str(tmp_path / "missing")])
    assert exited.value.code == 2
    assert "no such model directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        infer_ab.parse_args([str(tmp_path), "--rounds", "0"])


def test_command_line_on_an_export(tmp_path):
    from ppdistill.modeling.architectures import build_model
    from ppdistill.utils.export import export_model
    config = {"Global": {}, "Architecture": toy_model_config()}
    model_dir = export_model(config, build_model(config["Architecture"]), str(tmp_path))[""]
    done = subprocess.run([sys.executable, "benchmark/infer_ab.py", model_dir, model_dir,
                           "--kind", "det", "--rounds", "1", "--block", "2", "--threads", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("CPU: ") and "input [1, 3, 544, 960]" in lines[0]
    assert len(lines) == 3 and "(2 runs)" in lines[1] and "of the first" in lines[2]
