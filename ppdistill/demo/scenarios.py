"""Distillation scenarios on PaddleOCR's released weights and real data (demo and gain benchmark).

A scenario is a DistillationModel config built in code (nothing is added under ``configs/``):

- **rec**: Student = the released PP-OCRv3 rec model (training form, imported with
  ``tools/import_weights.py``), Teacher = the released PP-OCRv4 mobile rec export (frozen, run
  as an exported model; same ``ppocr_keys_v1`` dictionary). The student's CTC neck gets
  ``use_guide: false`` so the CTC-side losses reach the backbone (with PaddleOCR's ``true`` the
  backbone learns only through the SAR branch, whose weights the export lacks), and
  ``freeze_bn_stats: true`` keeps the released BatchNorm statistics (small CPU batches from a
  new domain would otherwise overwrite them). Losses: DML between the two CTC distributions and
  CTC on the labels, which are the teacher's pseudo-labels (``ImageFolderDataSet`` +
  ``pseudo_label``) when ``labels="teacher"``, the student's own released export's
  (``labels="self"``, self-training: the no-teacher arm on unlabelled data), or the data set's
  own (``labels="gt"``).
  ``teacher=False`` drops the teacher and the DML loss (the "student alone" arm).
- **det**: Student = the released PP-OCRv3 det model, Teacher = the released PP-OCRv4 mobile det
  export. Losses: DML on the shrink maps (``thrink_maps``) and (``db_loss``) the DB loss on
  the labels: the teacher's pseudo-boxes (``labels="teacher"``), the student's own released
  export's (``labels="self"``, self-training) or the data set's own (``labels="gt"``).
  ``warm_up_threshold_head`` trains only the DB threshold branch, which the released exports
  lack, so that a later joint training does not start with a random branch feeding the neck.

``rec_config(...)`` / ``det_config(...)`` return plain dicts; ``write_config`` writes YAML.
"""
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DICT = os.path.join(REPO, "ppdistill", "utils", "dict", "ppocr_keys_v1.txt")

#: released model ids (``ppdistill.released``) of each scenario's student and teacher
RELEASED = {"rec": {"student": "ppocrv3_rec", "teacher": "ppocrv4_mobile_rec"},
            "det": {"student": "ppocrv3_det", "teacher": "ppocrv4_mobile_det"}}

_NORM = {"scale": "1./255.", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
         "order": "hwc"}
#: the longest rec label the SAR label encoder of the v3 student's MultiHead accepts
MAX_REC_LABEL = 23


def _global(save_dir, iters, seed, extra=None):
    config = {"use_gpu": False, "epoch_num": 100000, "max_iters": int(iters),
              "log_smooth_window": 10, "print_batch_step": 5, "save_model_dir": save_dir,
              "save_epoch_step": 100000, "eval_batch_step": [0, 1000000],
              "cal_metric_during_train": False, "seed": int(seed)}
    config.update(extra or {})
    return config


def _optimizer(lr, decay):
    return {"name": "Adam", "beta1": 0.9, "beta2": 0.999,
            "lr": {"name": "Cosine", "learning_rate": float(lr), "warmup_epoch": 0},
            "regularizer": {"name": "L2", "factor": decay}}


def rec_config(student_weights, teacher_export, train_data_dir, train_list, eval_data_dir,
               eval_list, save_dir, iters=100, batch=16, lr=1e-4, seed=1, teacher=True,
               labels="teacher", pseudo_threshold=0.8, eval_batch=32, student_export=None):
    """The rec scenario (see the module docstring) as a config dict. ``labels="self"`` needs
    ``student_export`` (the export that pseudo-labels the train images)."""
    if labels not in ("teacher", "self", "gt"):
        raise ValueError(f"rec_config: labels must be teacher, self or gt, got {labels!r}")
    if labels == "self" and not student_export:
        raise ValueError("rec_config: labels='self' needs student_export")
    student = {
        "pretrained": student_weights, "freeze_params": False, "freeze_bn_stats": True,
        "return_all_feats": True, "model_type": "rec", "algorithm": "SVTR_LCNet",
        "Backbone": {"name": "MobileNetV1Enhance", "scale": 0.5, "last_conv_stride": [1, 2],
                     "last_pool_type": "avg", "last_pool_kernel_size": [2, 2]},
        "Head": {"name": "MultiHead", "head_list": [
            {"CTCHead": {"Neck": {"name": "svtr", "dims": 64, "depth": 2, "hidden_dims": 120,
                                  "use_guide": False},
                         "Head": {"fc_decay": 0.00001}}},
            {"SARHead": {"enc_dim": 512, "max_text_length": 25}}]}}
    models = {}
    if teacher or labels == "teacher":
        models["Teacher"] = {"model_type": "rec", "inference_model": teacher_export,
                             "character_dict_path": DICT, "use_space_char": True,
                             "output_keys": ["head_out", "ctc"],
                             "input": {"shape": [3, 48, 320]}}
    models["Student"] = student
    losses = [{"DistillationCTCLoss": {"weight": 1.0, "model_name_list": ["Student"],
                                       "key": "head_out", "multi_head": True}}]
    if teacher:
        losses.insert(0, {"DistillationDMLLoss": {
            "weight": 1.0, "act": "softmax", "use_log": True,
            "model_name_pairs": [["Student", "Teacher"]], "key": "head_out",
            "multi_head": True, "dis_head": "ctc", "name": "dml_ctc"}})
    transforms = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
                  {"MultiLabelEncode": {}}, {"RecResizeImg": {"image_shape": [3, 48, 320]}},
                  {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_sar", "length",
                                              "valid_ratio"]}}]
    if labels in ("teacher", "self"):
        labeller = teacher_export if labels == "teacher" else student_export
        train_set = {"name": "ImageFolderDataSet", "data_dir": train_data_dir,
                     "label_file_list": [train_list],
                     "pseudo_label": {"inference_model": labeller,
                                      "character_dict_path": DICT, "use_space_char": True,
                                      "threshold": float(pseudo_threshold)},
                     "transforms": transforms}
    else:
        train_set = {"name": "SimpleDataSet", "data_dir": train_data_dir,
                     "label_file_list": [train_list], "transforms": transforms}
    return {
        "Global": _global(save_dir, iters, seed, {
            "character_dict_path": DICT, "max_text_length": 25, "use_space_char": True,
            "d2s_train_image_shape": [3, 48, -1]}),
        "Optimizer": _optimizer(lr, 3.0e-05),
        "Architecture": {"model_type": "rec", "name": "DistillationModel",
                         "algorithm": "Distillation", "Models": models},
        "Loss": {"name": "CombinedLoss", "loss_config_list": losses},
        "PostProcess": {"name": "DistillationCTCLabelDecode", "model_name": list(models),
                        "key": "head_out", "multi_head": True},
        "Metric": {"name": "DistillationMetric", "base_metric_name": "RecMetric",
                   "main_indicator": "acc", "key": "Student", "ignore_space": True},
        "Train": {"dataset": train_set,
                  "loader": {"shuffle": True, "batch_size_per_card": int(batch),
                             "drop_last": True, "num_workers": 0}},
        "Eval": {"dataset": {"name": "SimpleDataSet", "data_dir": eval_data_dir,
                             "label_file_list": [eval_list], "transforms": transforms},
                 "loader": {"shuffle": False, "batch_size_per_card": int(eval_batch),
                            "drop_last": False, "num_workers": 0}},
    }


def det_config(student_weights, teacher_export, train_data_dir, train_list, eval_data_dir,
               eval_list, save_dir, iters=40, batch=4, lr=1e-4, seed=1, teacher=True,
               labels="teacher", crop=480, eval_side=960, db_loss=True, student_export=None,
               pseudo_box_thresh=0.6):
    """The det scenario (see the module docstring) as a config dict. ``db_loss=False`` leaves
    only the DML loss (the labels then only steer the random crops towards text); the student's
    threshold head, which the export lacks, then gets no gradient. ``labels="self"`` needs
    ``student_export`` (the export that pseudo-boxes the train images: self-training)."""
    if not (teacher or db_loss):
        raise ValueError("det_config: without the teacher the DB loss is the only loss")
    if labels not in ("teacher", "self", "gt"):
        raise ValueError(f"det_config: labels must be teacher, self or gt, got {labels!r}")
    if labels == "self" and not student_export:
        raise ValueError("det_config: labels='self' needs student_export")
    models = {}
    if teacher or labels == "teacher":
        models["Teacher"] = {"model_type": "det", "inference_model": teacher_export,
                             "input": {"shape": [3, 640, 640]}}
    models["Student"] = {
        "pretrained": student_weights, "freeze_params": False, "freeze_bn_stats": True,
        "return_all_feats": False, "model_type": "det", "algorithm": "DB",
        "Backbone": {"name": "MobileNetV3", "scale": 0.5, "model_name": "large",
                     "disable_se": True},
        "Neck": {"name": "RSEFPN", "out_channels": 96, "shortcut": True},
        "Head": {"name": "DBHead", "k": 50}}
    losses = [{"DistillationDBLoss": {"weight": 1.0, "model_name_list": ["Student"],
                                      "name": "DBLoss", "balance_loss": True,
                                      "main_loss_type": "DiceLoss", "alpha": 5, "beta": 10,
                                      "ohem_ratio": 3}}] if db_loss else []
    if teacher:
        losses.insert(0, {"DistillationDMLLoss": {
            "model_name_pairs": [["Student", "Teacher"]], "maps_name": "thrink_maps",
            "weight": 1.0, "key": "maps"}})
    train_transforms = [
        {"DecodeImage": {"img_mode": "BGR", "channel_first": False}}, {"DetLabelEncode": None},
        {"EastRandomCropData": {"size": [crop, crop], "max_tries": 50, "keep_ratio": True}},
        {"MakeBorderMap": {"shrink_ratio": 0.4, "thresh_min": 0.3, "thresh_max": 0.7}},
        {"MakeShrinkMap": {"shrink_ratio": 0.4, "min_text_size": 8}},
        {"NormalizeImage": dict(_NORM)}, {"ToCHWImage": None},
        {"KeepKeys": {"keep_keys": ["image", "threshold_map", "threshold_mask", "shrink_map",
                                    "shrink_mask"]}}]
    if labels in ("teacher", "self"):
        labeller = teacher_export if labels == "teacher" else student_export
        train_set = {"name": "ImageFolderDataSet", "data_dir": train_data_dir,
                     "label_file_list": [train_list],
                     "pseudo_label": {"inference_model": labeller,
                                      "box_thresh": float(pseudo_box_thresh)},
                     "transforms": train_transforms}
    else:
        train_set = {"name": "SimpleDataSet", "data_dir": train_data_dir,
                     "label_file_list": [train_list], "transforms": train_transforms}
    return {
        "Global": _global(save_dir, iters, seed),
        "Optimizer": _optimizer(lr, 5.0e-05),
        "Architecture": {"name": "DistillationModel", "algorithm": "Distillation",
                         "model_type": "det", "Models": models},
        "Loss": {"name": "CombinedLoss", "loss_config_list": losses},
        "PostProcess": {"name": "DistillationDBPostProcess", "model_name": list(models),
                        "key": "head_out", "thresh": 0.3, "box_thresh": 0.6,
                        "max_candidates": 1000, "unclip_ratio": 1.5},
        "Metric": {"name": "DistillationMetric", "base_metric_name": "DetMetric",
                   "main_indicator": "hmean", "key": "Student"},
        "Train": {"dataset": train_set,
                  "loader": {"shuffle": True, "drop_last": True,
                             "batch_size_per_card": int(batch), "num_workers": 0}},
        "Eval": {"dataset": {"name": "SimpleDataSet", "data_dir": eval_data_dir,
                             "label_file_list": [eval_list], "transforms": [
                                 {"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
                                 {"DetLabelEncode": None},
                                 {"DetResizeForTest": {"limit_side_len": int(eval_side),
                                                       "limit_type": "max"}},
                                 {"NormalizeImage": dict(_NORM)}, {"ToCHWImage": None},
                                 {"KeepKeys": {"keep_keys": ["image", "shape", "polys",
                                                             "ignore_tags"]}}]},
                 "loader": {"shuffle": False, "drop_last": False, "batch_size_per_card": 1,
                            "num_workers": 0}},
    }


def write_config(config, path):
    """Write ``config`` as YAML to ``path`` (folders created); return ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False, allow_unicode=True)
    return path


#: parameter-name prefix of the DB threshold branch inside a det (sub-)model
THRESH_PREFIX = "head.thresh."


def _threshold_batch_norms(model):
    """Names of the BatchNorm layers of ``model``'s threshold branch."""
    names = model.batch_norm_names() if hasattr(model, "batch_norm_names") else []
    return [name for name in names if name.startswith(THRESH_PREFIX)]


def _calibrate_threshold_batch_norms(model):
    """Let the threshold branch's BatchNorm layers use and update batch statistics.

    The fresh branch's running statistics are the initial mean 0 / variance 1: normalised with
    them (``freeze_bn_stats``) its output sigmoid saturates at 0 or 1 on almost every pixel and
    hardly learns. During the warm-up they are estimated on the training data instead; every
    other BatchNorm keeps the released statistics."""
    model.unpin_layers(_threshold_batch_norms(model))


def warm_up_threshold_head(config, out_path, logger=None):
    """Train only the Student's DB threshold branch (``head.thresh.*``) with ``config``, every
    other parameter frozen; save the Student's whole state dict to ``out_path`` (a
    ``.pdparams`` usable as ``pretrained``); return the names of the trained parameters.

    The released det exports lack the threshold branch (it is freshly initialised on import);
    trained jointly with the rest, its first large gradients reach the shared neck. Warming it
    up alone first, identically for every arm of a comparison, keeps it from damaging the
    released weights. The branch's BatchNorm statistics, fresh too, are estimated on the
    warm-up data (batch statistics), then fixed again. ``config`` is a det scenario config
    (e.g. ``det_config(..., teacher=False, labels="self")``: the student's own pseudo-boxes,
    no teacher); the shrink map, which is all the detector's output at inference, is unchanged
    by the warm-up."""
    import copy

    import paddle

    from ppdistill.engine.launch import prepare_run
    from ppdistill.engine.run import build_trainer
    from ppdistill.engine.setup import sub_models

    if "Student" not in config.get("Architecture", {}).get("Models", {}):
        raise ValueError("warm_up_threshold_head: the config has no 'Student' sub-model")
    config = copy.deepcopy(config)
    logger = logger or prepare_run(config, "warmup")
    trainer = build_trainer(config, logger)
    student = sub_models(trainer.model)["Student"]
    trained = []
    for name, param in student.named_parameters():
        if name.startswith(THRESH_PREFIX) and not param.stop_gradient:
            trained.append(name)
        else:
            param.stop_gradient = True
    if not trained:
        raise ValueError(f"warm_up_threshold_head: the Student has no trainable "
                         f"{THRESH_PREFIX}* parameter (not a DB detector?)")
    _calibrate_threshold_batch_norms(student)
    logger.info(f"threshold warm-up: training {len(trained)} {THRESH_PREFIX}* parameters, "
                f"the other parameters frozen")
    trainer.train()
    if hasattr(student, "pin_layers"):  # back to the caller's fixed statistics
        student.pin_layers(_threshold_batch_norms(student))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    paddle.save(student.state_dict(), out_path)
    return trained


def subset_label_file(source, target, count, seed=0, max_label_chars=None, rec=True):
    """Write a seeded random subset of ``count`` lines of label file ``source`` to ``target``
    (rec: only labels of at most ``max_label_chars`` characters); return the number written."""
    import random
    with open(source, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    if rec and max_label_chars:
        lines = [line for line in lines
                 if len(line.split("\t", 1)[-1]) <= max_label_chars]
    random.Random(seed).shuffle(lines)
    chosen = sorted(lines[:count]) if count else sorted(lines)
    with open(target, "w", encoding="utf-8") as handle:
        handle.write("\n".join(chosen) + "\n")
    return len(chosen)
