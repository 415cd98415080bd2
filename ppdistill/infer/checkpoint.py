"""Entry points behind tools/infer_det.py and tools/infer_rec.py: checkpoint -> predictions.

Both read ``Global.infer_img`` (a file or a directory), run the model loaded from
``Global.checkpoints`` (or ``pretrained_model``) with the Eval pre-processing minus its label
operators, post-process, and write ``Global.save_res_path``. For a DistillationModel every
sub-model named by the post-process is reported.
"""
import json
import os

import cv2
import numpy as np
import paddle

from ppdistill.engine.components import build_for_eval
from ppdistill.engine.launch import build_arg_parser, cli_main, load_run_config, prepare_run
from ppdistill.infer.args import get_image_file_list


def inference_transforms(config, keep_keys):
    """The Eval transforms without label encoders, keeping ``keep_keys``."""
    from ppdistill.data.imaug import create_operators
    ops = []
    for entry in config["Eval"]["dataset"]["transforms"]:
        name = next(iter(entry))
        if "Label" in name or name in ("CopyPaste", "RecConAug"):
            continue
        if name == "KeepKeys":
            entry = {"KeepKeys": {"keep_keys": list(keep_keys)}}
        ops.append(entry)
    return create_operators(ops, config["Global"], path="Eval.dataset.transforms")


def _prepare(config):
    from ppdistill.utils.save_load import load_model
    config, model, post_process, _ = build_for_eval(config)
    load_model(config, model, None, config["Architecture"].get("model_type"))
    model.eval()
    return config, model, post_process


def _read(path):
    with open(path, "rb") as handle:
        return {"img_path": path, "image": handle.read()}


def _per_model(result):
    """``{name: value}`` for a distillation post-process result, else ``{"": value}``."""
    return result if isinstance(result, dict) else {"": result}


def _inference_batches(config, ops, logger):
    """``(path, pre-processed batch)`` for each image of ``Global.infer_img``; unreadable or
    rejected images are logged and skipped."""
    from ppdistill.data.imaug import transform
    for path in get_image_file_list(config["Global"]["infer_img"]):
        batch = transform(_read(path), ops)
        if batch is None:
            logger.warning(f"{path}: could not be read or pre-processed, skipped")
            continue
        yield path, batch


def infer_det(config, logger):
    """Detect text in ``Global.infer_img``; write boxes JSON lines and drawn images.

    For a DistillationModel also ``det_res_sub_models_<image>.png``: every sub-model's boxes
    side by side (Teacher / Student / Student2 panels, titled with the box count).
    """
    from ppdistill.infer.text_detector import draw_boxes
    from ppdistill.utils.visual import boxes_of_all_models, draw_side_by_side
    config, model, post_process = _prepare(config)
    sub_models = getattr(model, "model_name_list", None) or []
    ops = inference_transforms(config, ["image", "shape"])
    save_path = config["Global"].get("save_res_path") or "./output/det_results/predicts.txt"
    draw_dir = os.path.join(os.path.dirname(save_path) or ".", "det_results")
    os.makedirs(draw_dir, exist_ok=True)
    lines = []
    for path, (image, shape) in _inference_batches(config, ops, logger):
        with paddle.no_grad():
            preds = model(paddle.to_tensor(np.expand_dims(image, 0)))
        result = _per_model(post_process(preds, np.expand_dims(shape, 0)))
        record = {}
        source = cv2.imread(path)
        for name, boxes_per_image in result.items():
            boxes = boxes_per_image[0]["points"]
            record[name or "boxes"] = [np.asarray(b).tolist() for b in boxes]
            suffix = f"_{name}" if name else ""
            cv2.imwrite(os.path.join(draw_dir, f"det_res{suffix}_{os.path.basename(path)}"),
                        draw_boxes(source, boxes))
            logger.info(f"{path}: {name or 'model'}: {len(boxes)} boxes")
        if len(sub_models) > 1 and hasattr(post_process, "model_name"):  # one panel per sub-model
            all_boxes = boxes_of_all_models(post_process, preds, np.expand_dims(shape, 0),
                                            sub_models)
            stem = os.path.splitext(os.path.basename(path))[0]
            cv2.imwrite(os.path.join(draw_dir, f"det_res_sub_models_{stem}.png"),
                        draw_side_by_side(source, all_boxes))
        payload = record["boxes"] if list(record) == ["boxes"] else record
        lines.append(f"{path}\t{json.dumps(payload)}")
    _write_lines(save_path, lines)
    logger.info(f"results written to {save_path}, drawings to {draw_dir}")
    return lines


def infer_rec(config, logger):
    """Recognise ``Global.infer_img``; print and write ``path<TAB>text<TAB>score`` lines."""
    config, model, post_process = _prepare(config)
    ops = inference_transforms(config, ["image"])
    save_path = config["Global"].get("save_res_path") or "./output/rec/predicts.txt"
    lines = []
    for path, batch in _inference_batches(config, ops, logger):
        with paddle.no_grad():
            preds = model(paddle.to_tensor(np.expand_dims(batch[0], 0)))
        for name, texts in _per_model(post_process(preds)).items():
            text, score = texts[0]
            label = f"{name}: " if name else ""
            logger.info(f"{path}: {label}{text!r} {score:.4f}")
            lines.append(f"{path}\t{name + chr(9) if name else ''}{text}\t{score:.6f}")
    _write_lines(save_path, lines)
    logger.info(f"results written to {save_path}")
    return lines


def _write_lines(path, lines):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + ("\n" if lines else ""))


@cli_main
def infer_det_main(argv=None):
    args = build_arg_parser("Detect text with a checkpoint").parse_args(argv)
    config = load_run_config(args)
    return infer_det(config, prepare_run(config, "infer"))


@cli_main
def infer_rec_main(argv=None):
    args = build_arg_parser("Recognise text with a checkpoint").parse_args(argv)
    config = load_run_config(args)
    return infer_rec(config, prepare_run(config, "infer"))
