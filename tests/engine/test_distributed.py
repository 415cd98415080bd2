"""Two CPU processes under paddle.distributed.launch (gloo): what DataParallel must not break.

Each test starts ``dist_train_script.py`` with ``--nproc_per_node 2`` on tiny toy models.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "dist_train_script.py")


def launch(tmp_path, mode, timeout=300):
    """Run ``mode`` in 2 processes; return (returncode, both ranks' npz or None, logs)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
           "--log_dir", str(tmp_path / f"log_{mode}"), SCRIPT, str(tmp_path), mode]
    try:
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        code, output = result.returncode, result.stdout[-3000:] + result.stderr[-3000:]
    except subprocess.TimeoutExpired:  # a rank waiting in an all-reduce forever
        code, output = "timeout", ""
    logs = {p.name: p.read_text() for p in (tmp_path / f"log_{mode}").glob("workerlog.*")}
    files = [tmp_path / f"{mode}_rank{r}.npz" for r in (0, 1)]
    ranks = [np.load(f) for f in files] if all(f.is_file() for f in files) else None
    return code, ranks, output + "".join(v[-3000:] for v in logs.values()), logs


@pytest.mark.slow
def test_two_process_cpu_launch(tmp_path):
    code, ranks, output, _ = launch(tmp_path, "basic")
    assert code == 0 and ranks, output
    assert int(ranks[0]["world"]) == 2
    # 8 samples, batch 2 per card, 2 cards -> 2 steps per epoch on each rank
    assert int(ranks[0]["steps"]) == int(ranks[1]["steps"]) == 2
    # trainable weights are all-reduced; BN running statistics stay per-rank (no SyncBN)
    names = [k for k in ranks[0].files if k.startswith("Student.")
             and not k.endswith(("._mean", "._variance"))]
    assert len(names) == 6
    for name in names:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)


@pytest.mark.slow
def test_frozen_teacher_bit_identical_and_students_match_one_process(tmp_path):
    code, ranks, output, _ = launch(tmp_path, "frozen")
    assert code == 0 and ranks, output
    assert str(ranks[0]["wrapper"]) == "DistillationDataParallel"
    teacher = [k for k in ranks[0].files if k.startswith("Teacher.")]
    assert len(teacher) == 8  # conv w/b, BN weight/bias/_mean/_variance, head w/b
    for rank in ranks:
        for key in teacher:
            np.testing.assert_array_equal(rank[key], rank["before." + key], err_msg=key)
            np.testing.assert_array_equal(rank[key], ranks[0][key], err_msg=key)
    # the same global batch (4) in one process gives the same students
    single = tmp_path / "single"
    single.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", BATCH="4")
    for key in ("PADDLE_TRAINERS_NUM", "PADDLE_TRAINER_ID", "PADDLE_TRAINER_ENDPOINTS"):
        env.pop(key, None)
    result = subprocess.run([sys.executable, SCRIPT, str(single), "frozen"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    one = np.load(single / "frozen_rank0.npz")
    assert int(one["world"]) == 1 and int(one["steps"]) == int(ranks[0]["steps"]) == 2
    students = [k for k in one.files if k.startswith("Student.")]
    assert len(students) == 8
    for key in students:
        np.testing.assert_allclose(ranks[0][key], one[key], rtol=1e-6, atol=1e-7, err_msg=key)
    # the students did train; their BN statistics stayed fixed (freeze_bn_stats)
    assert not np.allclose(one["Student.backbone.conv.weight"],
                           one["before.Student.backbone.conv.weight"])
    np.testing.assert_array_equal(one["Student.backbone.bn._mean"],
                                  one["before.Student.backbone.bn._mean"])


@pytest.mark.slow
def test_nonfinite_loss_on_one_rank_is_decided_on_every_rank(tmp_path):
    code, ranks, output, logs = launch(tmp_path, "nonfinite", timeout=240)
    assert code == 0 and ranks, output
    # skip_nonfinite_loss: both ranks skip step 1 (rank 1's NaN), train step 2 together
    text = logs["workerlog.0"]  # only rank 0 logs warnings
    assert "non-finite loss at global_step 1 on rank 1" in text and "(step skipped)" in text
    assert [int(r["steps"]) for r in ranks] == [2, 2]
    assert [int(r["optimizer_steps"]) for r in ranks] == [1, 1]
    weights = [k for k in ranks[0].files if k.startswith("Student.")
               and not k.endswith(("._mean", "._variance"))]
    for key in weights:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    # without it: every rank stops at step 1 with the same decision, no hang
    for rank in ranks:
        assert "non-finite loss at global_step 1 on rank 1" in str(rank["error"])
        assert int(rank["steps_after_error"]) == 0
