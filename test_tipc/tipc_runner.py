"""Run one TIPC chain: train -> (eval) -> export -> python inference over the flag grid.

Usage: ``python test_tipc/tipc_runner.py test_tipc/configs/<model>/train_infer_python.txt MODE``

Every step prints ``Run successfully with command - <cmd>!`` or ``Run failed with command -
<cmd>!`` (PaddleOCR's wording, which TIPC log checkers grep for); the process exits non-zero if
any step failed. Everything the chain writes goes under its output folder ``$TIPC_OUTPUT``
(default ``test_tipc/output``): the data ``prepare.sh`` generates (``<output>/train_data``, in
PaddleOCR's layout), checkpoints, inference models and the logs of each command
(``<output>/<model>/<mode>/logs/``). Paths of the parameter file and of the config's
``Train``/``Eval`` datasets that start with ``./train_data/`` are redirected there, so the
repository's own ``train_data/`` is never read or written.

Keys used (see tipc_params.py for the file format):

- train_params: ``model_name``, ``gpu_list`` (``-1`` = CPU), ``trainer`` (``norm_train``) and
  the trainer's command (``norm_train:tools/train.py -c CFG -o``), ``train_model_name``
  (checkpoint prefix to export, e.g. ``latest``), ``train_infer_img_dir``; every other key that
  contains a dot (``Global.epoch_num``, ``Train.loader.batch_size_per_card`` ...) becomes an
  ``-o key=value`` override for training, and ``export``/``eval`` reuse the ``Global.*``,
  ``Architecture.*`` and ``Eval.*`` ones.
- eval_params: ``eval`` (``tools/eval.py -c CFG -o`` or ``null``).
- infer_params: ``norm_export`` (``tools/export_model.py -c CFG -o``), ``inference_dir``
  (sub-model directory to run, e.g. ``Student``), ``inference`` (the script), and ``--flags``
  whose ``|`` alternatives form the grid. The flag ending in ``_model_dir`` gets the export
  directory; ``--image_dir`` defaults to ``train_infer_img_dir``.
"""
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tipc_params import TipcParams  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_PREFIX = "./train_data/"


def output_root():
    """``$TIPC_OUTPUT`` (relative to the repository root) or ``test_tipc/output``."""
    return os.path.join(ROOT, os.environ.get("TIPC_OUTPUT") or os.path.join("test_tipc", "output"))


def redirect(path):
    """``./train_data/x`` -> ``<output>/train_data/x``; other values unchanged."""
    if isinstance(path, str) and path.startswith(DATA_PREFIX):
        return os.path.join(output_root(), "train_data", path[len(DATA_PREFIX):])
    return path


def dataset_overrides(config_path):
    """``-o`` overrides that point the config's Train/Eval data into the output folder."""
    sys.path.insert(0, ROOT)
    from ppdistill.utils.config import load_config
    config = load_config(os.path.join(ROOT, config_path))
    result = []
    for mode in ("Train", "Eval"):
        dataset = (config.get(mode) or {}).get("dataset") or {}
        data_dir = dataset.get("data_dir")
        if data_dir is not None and redirect(data_dir) != data_dir:
            result.append(f"{mode}.dataset.data_dir={redirect(data_dir)}")
        labels = dataset.get("label_file_list")
        labels = [labels] if isinstance(labels, str) else labels
        if labels and any(redirect(p) != p for p in labels):
            result.append(f"{mode}.dataset.label_file_list=[{','.join(map(redirect, labels))}]")
    return result
OVERRIDE_SECTIONS = ("Global.", "Architecture.", "Loss.", "Optimizer.", "PostProcess.",
                     "Metric.", "Train.", "Eval.")


class ChainRunner:
    """Runs and reports the commands of one parameter file in one mode."""

    def __init__(self, params_path, mode):
        self.params = TipcParams.parse(params_path)
        self.mode = mode
        self.model_name = self.params.value("train_params", "model_name", mode)
        self.out_dir = os.path.join(output_root(), self.model_name, mode)
        self.log_dir = os.path.join(self.out_dir, "logs")
        os.makedirs(self.log_dir, exist_ok=True)
        self.failures = 0
        self.count = 0

    def run(self, args, name):
        """Run a command (list of args) from the repo root and report it."""
        self.count += 1
        text = " ".join(shlex.quote(a) for a in args)
        log_path = os.path.join(self.log_dir, f"{self.count:02d}_{name}.log")
        with open(log_path, "w", encoding="utf-8") as log:
            code = subprocess.call(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if code == 0:
            print(f"Run successfully with command - {text}!", flush=True)
        else:
            self.failures += 1
            print(f"Run failed with command - {text}! (exit {code}, log {log_path})", flush=True)
            with open(log_path, encoding="utf-8", errors="replace") as log:
                print("".join(log.readlines()[-30:]), flush=True)
        return code == 0

    def overrides(self, prefixes=OVERRIDE_SECTIONS):
        result = []
        for key in self.params.section("train_params"):
            if key.startswith(prefixes):
                value = self.params.value("train_params", key, self.mode)
                if value is not None:
                    result.append(f"{key}={value}")
        return result

    def script(self, section, key):
        """``tools/x.py -c CFG -o`` -> [python, tools/x.py, -c, CFG, -o, <data overrides>]."""
        raw = self.params.value(section, key, self.mode)
        if raw is None:
            return None
        parts = shlex.split(raw)
        if parts and parts[-1] == "-o":
            parts = parts[:-1]
        config = parts[parts.index("-c") + 1] if "-c" in parts[:-1] else None
        return [sys.executable] + parts + ["-o"] + (dataset_overrides(config) if config else [])

    def chain(self):
        use_gpu = self.params.value("train_params", "gpu_list", self.mode, "-1") != "-1"
        save_dir = os.path.join(self.out_dir, "train")
        device = [f"Global.use_gpu={use_gpu}", "Global.distributed=false"]
        trainer = self.params.value("train_params", "trainer", self.mode, "norm_train")
        train_cmd = self.script("train_params", trainer)
        if train_cmd is None or not self.run(
                train_cmd + [*device, f"Global.save_model_dir={save_dir}",
                             *self.overrides()], "train"):
            return
        checkpoint = os.path.join(save_dir, self.params.value("train_params", "train_model_name",
                                                              self.mode, "latest"))
        shared = self.overrides(("Global.", "Architecture.", "Eval."))
        shared = [o for o in shared if not o.startswith(("Global.epoch_num", "Global.max_iters"))]
        shared.append(f"Global.save_model_dir={save_dir}")  # eval.log / export.log go there too
        eval_cmd = self.script("eval_params", "eval")
        if eval_cmd is not None:
            self.run(eval_cmd + [*device, f"Global.checkpoints={checkpoint}", *shared],
                     "eval")
        export_dir = os.path.join(self.out_dir, "inference")
        export_cmd = self.script("infer_params", "norm_export")
        if export_cmd is None or not self.run(
                export_cmd + [*device, f"Global.checkpoints={checkpoint}",
                              f"Global.save_inference_dir={export_dir}", *shared], "export"):
            return
        self.infer(export_dir)

    def infer(self, export_dir):
        script = self.params.value("infer_params", "inference", self.mode)
        if script is None:
            return
        sub_dir = self.params.value("infer_params", "inference_dir", self.mode, "")
        model_dir = os.path.join(export_dir, sub_dir)
        infer = self.params.section("infer_params")
        dir_flag = next((k for k in infer if k.startswith("--") and k.endswith("_model_dir")),
                        "--det_model_dir")
        image_dir = redirect(self.params.value("infer_params", "--image_dir", self.mode)
                             or self.params.value("train_params", "train_infer_img_dir",
                                                  self.mode))
        for index, combo in enumerate(self.params.flag_grid(
                "infer_params", self.mode, skip=(dir_flag, "--image_dir"))):
            args = [sys.executable, script, dir_flag, model_dir, "--image_dir", image_dir]
            if "det_model_dir" in dir_flag:
                args += ["--draw_img_save_dir", os.path.join(self.out_dir, f"infer_{index}")]
            for flag, value in combo.items():
                args += [flag, value]
            self.run(args, f"infer_{index}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__)
        return 2
    runner = ChainRunner(argv[0], argv[1])
    runner.chain()
    print(f"{runner.count - runner.failures} commands succeeded, {runner.failures} failed "
          f"({runner.model_name}, {runner.mode})")
    return 1 if runner.failures or runner.count == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
