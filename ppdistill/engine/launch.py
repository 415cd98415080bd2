"""Command-line parsing and run setup shared by tools/train.py, eval.py, export_model.py."""
import argparse
import os
import random
import warnings

import numpy as np
import paddle

from ppdistill.utils.config import load_with_overrides
from ppdistill.utils.logging import get_logger


def cli_main(function):
    """Run a tool's main; configuration and input errors exit with a one-line message.

    ``ConfigError`` (bad config, override, dictionary), missing files, non-finite losses and
    similar user-facing errors are printed as ``error: <message>`` with exit status 2 instead of
    a traceback from deep inside; ``PPDISTILL_DEBUG=1`` shows the traceback.
    """
    import functools
    import sys

    from ppdistill.engine.trainer import NonFiniteLossError
    from ppdistill.registry import ConfigError

    @functools.wraps(function)
    def wrapper(argv=None):
        try:
            return function(argv)
        except (ConfigError, FileNotFoundError, NonFiniteLossError) as exc:
            if os.environ.get("PPDISTILL_DEBUG"):
                raise
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    return wrapper


def build_arg_parser(description):
    """PaddleOCR's ``-c config.yml -o Section.key=value ...`` command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-c", "--config", required=True, help="YAML config file")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. Global.epoch_num=5")
    parser.add_argument("-p", "--profiler_options", default=None,
                        help="accepted for PaddleOCR compatibility; profiling is not built in")
    return parser


def load_run_config(args):
    """Config from ``-c`` with every ``-o`` applied."""
    return load_with_overrides(args.config, args.opt)


def world_size():
    return paddle.distributed.get_world_size()


def prepare_run(config, log_name="train"):
    """Set the device, seed and distributed context; return the logger.

    ``Global.use_gpu`` falls back to the CPU with a warning when paddle has no CUDA build or no
    GPU; distributed training starts when launched with more than one process.
    """
    global_cfg = config["Global"]
    save_dir = global_cfg.get("save_model_dir") or "./output"
    logger = get_logger(log_file=os.path.join(save_dir, f"{log_name}.log"))
    use_gpu = bool(global_cfg.get("use_gpu", False))
    if use_gpu and not (paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
        logger.warning("Global.use_gpu is true but no GPU is available: running on the CPU")
        use_gpu = False
    if use_gpu:
        paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().dev_id}")
    else:
        paddle.set_device("cpu")
        from ppdistill.utils.cpu import configure_cpu_threads
        configure_cpu_threads(logger)
    seed = int(global_cfg.get("seed", 1024))
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)
    if world_size() > 1:
        paddle.distributed.init_parallel_env()
    elif global_cfg.get("distributed") and os.environ.get("PADDLE_TRAINERS_NUM", "1") == "1":
        logger.info("Global.distributed is set but only one process runs; training on one device "
                    "(start several with python -m paddle.distributed.launch)")
    warnings.filterwarnings("ignore", message="No ccache found")
    return logger
