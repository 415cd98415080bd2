"""Entry point behind tools/export_model.py."""

from ppdistill.engine.components import build_for_eval
from ppdistill.engine.launch import build_arg_parser, cli_main, load_run_config, prepare_run
from ppdistill.utils.export import export_model


@cli_main
def export_main(argv=None):
    parser = build_arg_parser("Export a checkpoint to Paddle inference files")
    parser.add_argument("--models", nargs="+", default=None,
                        help="only these sub-models of a DistillationModel (default: all)")
    args = parser.parse_args(argv)
    config = load_run_config(args)
    logger = prepare_run(config, "export")
    return export(config, logger, names=args.models)


def export(config, logger, names=None):
    """Load ``Global.checkpoints``/``pretrained_model`` and export to ``Global.save_inference_dir``."""
    from ppdistill.utils.save_load import load_model
    config, model, _, metric = build_for_eval(config)
    if not (config["Global"].get("checkpoints") or config["Global"].get("pretrained_model")):
        logger.warning("neither Global.checkpoints nor Global.pretrained_model is set: "
                       "exporting the initial (untrained) weights")
    load_model(config, model, None, config["Architecture"].get("model_type"))
    save_dir = config["Global"].get("save_inference_dir") or "./inference"
    written = export_model(config, model, save_dir, names=names, logger=logger)
    deploy = getattr(metric, "key", None)
    if deploy and deploy in written:
        logger.info(f"deploy the '{deploy}' sub-model (Metric.key): {written[deploy]}")
    return written


__all__ = ["export_main", "export"]
