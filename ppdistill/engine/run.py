"""Entry points behind tools/train.py and tools/eval.py."""

from ppdistill.engine.components import build_for_eval, check_loss_model_names
from ppdistill.engine.evaluator import evaluate, format_metrics
from ppdistill.engine.launch import build_arg_parser, cli_main, load_run_config, prepare_run
from ppdistill.engine.setup import check_metric, prepare_for_training
from ppdistill.engine.trainer import Trainer


def _model_type(config):
    return config["Architecture"].get("model_type")


def train(config, logger):
    """Build everything from ``config``, resume or warm-start, train; return the best metrics."""
    return build_trainer(config, logger).train()


def build_trainer(config, logger):
    """A :class:`Trainer` with every component built from ``config`` (resumed if configured).

    The metric is checked first (``Metric.key`` / ``main_indicator``), then data, loss and
    optimizer are built, the checkpoint or pretrained weights loaded, and
    :func:`~ppdistill.engine.setup.prepare_for_training` freezes, decorates and wraps the model.
    """
    from ppdistill.data import build_dataloader
    from ppdistill.losses import build_loss
    from ppdistill.optimizer import build_optimizer
    from ppdistill.utils.save_load import load_model

    config, model, post_process, metric = build_for_eval(config)
    check_metric(metric, model)
    seed = int(config["Global"].get("seed", 1024))
    train_loader = build_dataloader(config, "Train", seed=seed)
    if len(train_loader) == 0:
        raise ValueError("Train: the data loader yields no batch (too few samples for "
                         "batch_size_per_card with drop_last?)")
    eval_loader = build_dataloader(config, "Eval", seed=seed) if config.get("Eval") else None
    loss_fn = build_loss(config["Loss"])
    check_loss_model_names(loss_fn, model)
    logger.info(loss_fn.formula() if hasattr(loss_fn, "formula")
                else f"loss = {type(loss_fn).__name__}")
    optimizer, lr_scheduler = build_optimizer(
        config["Optimizer"], epochs=int(config["Global"].get("epoch_num", 1)),
        step_each_epoch=len(train_loader), model=model)
    resume_state = load_model(config, model, optimizer, _model_type(config))
    model, optimizer, amp = prepare_for_training(model, optimizer, config, logger)
    return Trainer(config, model, loss_fn, optimizer, lr_scheduler, train_loader, logger,
                   eval_loader=eval_loader, post_process=post_process, metric=metric,
                   resume_state=resume_state, amp=amp)


def evaluate_config(config, logger, all_sub_models=True):
    """Load ``Global.checkpoints`` (or ``pretrained_model``) and evaluate on ``Eval``.

    For a DistillationModel every sub-model is post-processed and scored (the metric's ``key``
    model unprefixed, the others as ``Teacher_hmean``...), not only the ones the config's
    post-process names.
    """
    from ppdistill.data import build_dataloader
    from ppdistill.utils.save_load import load_model

    config, model, post_process, metric = build_for_eval(config)
    names = getattr(model, "model_name_list", None)
    if all_sub_models and names and hasattr(post_process, "model_name"):
        post_process.model_name = list(names)
    load_model(config, model, None, _model_type(config))
    loader = build_dataloader(config, "Eval", seed=int(config["Global"].get("seed", 1024)))
    metrics = evaluate(model, loader, post_process, metric)
    logger.info("metric eval ***************")
    for key, value in metrics.items():
        logger.info(f"{key}:{value}")
    return metrics


@cli_main
def train_main(argv=None):
    args = build_arg_parser("Train a (distillation) OCR model").parse_args(argv)
    config = load_run_config(args)
    logger = prepare_run(config, "train")
    return train(config, logger)


@cli_main
def eval_main(argv=None):
    args = build_arg_parser("Evaluate a checkpoint on the Eval set").parse_args(argv)
    config = load_run_config(args)
    logger = prepare_run(config, "eval")
    metrics = evaluate_config(config, logger)
    logger.info(format_metrics(metrics))
    return metrics
