"""Helpers for the end-to-end journeys: run the real tools as a user would."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_tool(args, cwd, expect_ok=True, timeout=900):
    """Run ``python <repo>/<args[0]> args[1:]`` in ``cwd``; return combined output."""
    cmd = [sys.executable, os.path.join(REPO, args[0])] + [str(a) for a in args[1:]]
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    if expect_ok:
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-5000:]}"
    return output


def config(name):
    return os.path.join(REPO, "configs", name)


def gen_demo_data(root, task, num_train, num_test, seed=1):
    """Write ``task``'s demo data where the shipped configs read it (``root/train_data/...``)
    with ``tools/gen_demo_data.py``; return its output."""
    return run_tool(["tools/gen_demo_data.py", "--task", task, "--out_dir", root / "train_data",
                     "--layout", "paddleocr", "--num_train", num_train, "--num_test", num_test,
                     "--seed", seed], root)


def det_overrides(crop_index, batch_size=2, side=64):
    """Tiny-run ``-o`` overrides of a det config; ``crop_index`` is EastRandomCropData's place in
    Train.transforms (Eval's DetResizeForTest is the third transform in every shipped config)."""
    return ["Global.use_gpu=false", "Global.print_batch_step=1", "Train.loader.num_workers=0",
            f"Train.loader.batch_size_per_card={batch_size}", "Eval.loader.num_workers=0",
            f"Train.dataset.transforms.{crop_index}.EastRandomCropData.size=[{side},{side}]",
            f"Eval.dataset.transforms.2.DetResizeForTest.limit_side_len={side}",
            "Eval.dataset.transforms.2.DetResizeForTest.limit_type=max"]


def _build_loaded(config_path, overrides):
    """The model of ``config_path`` + ``overrides``, weights loaded as the tools load them."""
    from ppdistill.engine.components import build_for_eval
    from ppdistill.utils.config import load_with_overrides
    from ppdistill.utils.save_load import load_model

    config, model, _, _ = build_for_eval(load_with_overrides(config_path, overrides))
    load_model(config, model, None, config["Architecture"].get("model_type"))
    return model


def save_well_scaled(config_path, overrides, save_path, seed=0):
    """Save ``config_path``'s model (weights from ``overrides``) to ``save_path.pdparams`` with
    random well-scaled BatchNorm statistics and LAB values (``tests/modeling/lcnetv3_helpers``).

    A PPLCNetV3 trained for a few steps keeps near-initial statistics: its activations grow to
    ~1e2-1e11 and its eval outputs saturate to 0/1, so float32 rounding alone would exceed any
    tight export tolerance (or the comparison would be vacuous)."""
    import importlib.util

    import paddle

    spec = importlib.util.spec_from_file_location(
        "lcnetv3_helpers", os.path.join(REPO, "tests", "modeling", "lcnetv3_helpers.py"))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    model = helpers.randomize(_build_loaded(config_path, overrides), seed=seed)
    paddle.save(model.state_dict(), str(save_path) + ".pdparams")


def export_difference(config_path, overrides, inference_dir, images, sub_model=None):
    """``(difference, expected)``: the largest absolute difference between an exported model's
    first output (run by the ``paddle.inference`` predictor) and the training-form model's eval
    output on ``images`` (NCHW float32). The model is built from ``config_path`` +
    ``overrides`` (which set ``Global.checkpoints`` or ``Global.pretrained_model``);
    ``sub_model`` picks a DistillationModel's sub-model; ``expected`` is the training-form
    output. Runs in-process."""
    import numpy as np
    import paddle

    from ppdistill.infer.predictor import InferenceModel

    model = _build_loaded(config_path, overrides)
    net = getattr(model, sub_model) if sub_model else model
    if hasattr(net, "return_all_feats"):
        net.return_all_feats = False
    net.eval()
    with paddle.no_grad():
        out = net(paddle.to_tensor(images))
    if isinstance(out, dict):
        out = out["maps"] if "maps" in out else out[sorted(out)[0]]
    elif isinstance(out, (list, tuple)):
        out = out[0]
    exported = InferenceModel(str(inference_dir), cpu_threads=1)(images)[0]
    expected = out.numpy()
    assert exported.shape == expected.shape, (exported.shape, expected.shape)
    return float(np.abs(exported - expected).max()), expected


#: a Latin dictionary for the Latin demo words
EN_DICT = os.path.join(REPO, "ppdistill", "utils", "dict", "en_dict.txt")


def rec_overrides(batch_size=2, dict_path=EN_DICT, eval_dict_index=None):
    """Tiny-run ``-o`` overrides of a rec config with ``dict_path`` as the dictionary;
    ``eval_dict_index``: place in Eval.transforms of a MultiLabelEncode that names its own
    ``character_dict_path`` (it is set to ``dict_path`` too)."""
    overrides = ["Global.use_gpu=false", "Global.print_batch_step=1",
                 "Train.loader.num_workers=0", f"Train.loader.batch_size_per_card={batch_size}",
                 "Eval.loader.num_workers=0", f"Eval.loader.batch_size_per_card={batch_size}",
                 f"Global.character_dict_path={dict_path}"]
    if eval_dict_index is not None:
        overrides.append(f"Eval.dataset.transforms.{eval_dict_index}.MultiLabelEncode."
                         f"character_dict_path={dict_path}")
    return overrides
