"""tools/plot_log.py: train_log.jsonl -> one PNG of loss, lr and per-sub-model metric curves."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ppdistill.utils.plot_log import PlotLogError, collect_curves, main, plot_log

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "plot_log.py")


def cml_records():
    """A CML-like run: 6 logged steps, evaluations at steps 3 and 6 for three sub-models."""
    records = []
    for step in range(1, 7):
        decay = 1.0 / step
        records.append({
            "kind": "train", "global_step": step, "epoch": 1 + (step > 3), "lr": 0.001 * step,
            "dml_thrink_maps_0": 0.2 * decay, "loss_distance_l2_Student_Teacher_0": 0.1 * decay,
            "loss_distance_l2_Student2_Teacher_0": 0.15 * decay,
            "db_Student_loss_shrink_maps": 2.0 * decay, "db_Student2_loss_shrink_maps": 2.5 * decay,
            "loss": 5.0 * decay, "Student_hmean": 0.1 * step})
        if step % 3 == 0:
            records.append({"kind": "eval", "global_step": step, "epoch": 1 + (step > 3),
                            "Student_hmean": 0.1 * step, "Student_precision": 0.2,
                            "Teacher_hmean": 0.9, "Teacher_precision": 0.8,
                            "Student2_hmean": 0.05 * step, "Student2_precision": 0.1,
                            "fps": 12.5})
    return records


def write_log(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train_log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_panels_group_terms_per_sub_model_and_metrics_per_name():
    panels = collect_curves(cml_records())
    assert list(panels) == ["loss (total)", "loss terms: Student", "loss terms: Student2",
                            "loss terms: other", "learning rate", "metric: hmean",
                            "metric: precision"]
    assert set(panels["loss terms: Student"]) == {"loss_distance_l2_Student_Teacher_0",
                                                  "db_Student_loss_shrink_maps"}
    assert set(panels["loss terms: Student2"]) == {"loss_distance_l2_Student2_Teacher_0",
                                                   "db_Student2_loss_shrink_maps"}
    assert set(panels["loss terms: other"]) == {"dml_thrink_maps_0"}
    steps, values, _ = panels["loss (total)"]["loss"]
    assert steps == [1, 2, 3, 4, 5, 6] and values == pytest.approx([5.0 / s for s in steps])
    hmean = panels["metric: hmean"]
    assert set(hmean) == {"Student", "Teacher", "Student2", "Student (train)"}
    assert hmean["Teacher"][:2] == ([3, 6], [0.9, 0.9])
    assert hmean["Student2"][1] == pytest.approx([0.15, 0.3])
    assert hmean["Student (train)"][2] == ":" and len(hmean["Student (train)"][0]) == 6
    assert "fps" not in str(list(panels))


def test_null_values_are_gaps(tmp_path):
    records = cml_records()
    records[0]["loss"] = None
    records[3]["Teacher_hmean"] = None  # the first eval line
    panels = collect_curves(records)
    assert np.isnan(panels["loss (total)"]["loss"][1][0])
    assert np.isnan(panels["metric: hmean"]["Teacher"][1][0])
    write_log(tmp_path, records)
    figure, _ = plot_log(str(tmp_path))
    assert len([ax for ax in figure.axes if ax.get_visible()]) == 7


def test_loss_class_prefixes_do_not_make_sub_models():
    # eval lines name only Student (PostProcess.model_name); Student2 comes from the loss keys
    records = [{"kind": "train", "global_step": 1, "loss": 1.0, "DBLoss_Student_loss_cbn": 0.1,
                "DBLoss_Student2_loss_cbn": 0.2, "dila_dbloss_Student2_Teacher": 0.3},
               {"kind": "eval", "global_step": 1, "Student_hmean": 0.5, "fps": 3.0}]
    panels = collect_curves(records)
    assert list(panels) == ["loss (total)", "loss terms: Student", "loss terms: Student2",
                            "metric: hmean"]
    assert set(panels["loss terms: Student2"]) == {"DBLoss_Student2_loss_cbn",
                                                   "dila_dbloss_Student2_Teacher"}


def test_without_eval_lines_capitalised_tokens_name_the_sub_models():
    records = [{"kind": "train", "global_step": 1, "loss": 1.0, "lr": 0.1,
                "loss_ctc_Student_0": 0.4, "dml_ctc_0": 0.3, "loss_re_Teacher": 0.2}]
    panels = collect_curves(records)
    assert list(panels) == ["loss (total)", "loss terms: Student", "loss terms: Teacher",
                            "loss terms: other", "learning rate"]


def test_plot_log_draws_every_panel_to_a_png(tmp_path):
    write_log(tmp_path / "out", cml_records())
    figure, out = plot_log(str(tmp_path / "out"))
    assert out == str(tmp_path / "out" / "curves.png")
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == ["loss (total)", "loss terms: Student", "loss terms: Student2",
                      "loss terms: other", "learning rate", "metric: hmean", "metric: precision"]
    hmean = next(ax for ax in figure.axes if ax.get_title() == "metric: hmean")
    assert sorted(line.get_label() for line in hmean.get_lines()) == [
        "Student", "Student (train)", "Student2", "Teacher"]
    import matplotlib.image
    image = matplotlib.image.imread(out)
    assert os.path.getsize(out) > 10000
    assert image.shape[:2] == (1080, 1560)  # 3 rows x 3 columns of 5.2 x 3.6 inch at 100 dpi
    assert np.asarray(image).std() > 0.01  # something was drawn


def test_cli_writes_the_png_where_asked(tmp_path):
    log = write_log(tmp_path / "run", cml_records())
    out = tmp_path / "pics" / "c.png"
    result = subprocess.run([sys.executable, TOOL, str(log), "--out", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote 7 panels to {out}"
    assert out.stat().st_size > 10000 and not (tmp_path / "run" / "curves.png").exists()


def test_missing_or_empty_log_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'nowhere'}: no training log (train with ppdistill to " \
                  f"write one)\n"
    write_log(tmp_path / "empty", [])
    (tmp_path / "empty" / "train_log.jsonl").write_text("\n{broken\n")
    assert main([str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err == \
        f"error: {tmp_path / 'empty' / 'train_log.jsonl'}: the training log has no records\n"
    result = subprocess.run([sys.executable, TOOL, str(tmp_path / "empty")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch, capsys):
    write_log(tmp_path / "out", cml_records())
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PlotLogError, match=r"matplotlib is not installed \(pip install"):
        plot_log(str(tmp_path / "out"))
    assert main([str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: matplotlib is not installed")
    assert not (tmp_path / "out" / "curves.png").exists()
