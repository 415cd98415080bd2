"""Command-line parsing and run setup shared by tools/train.py, eval.py, export_model.py."""
import argparse
import os
import random
import warnings

import numpy as np
import paddle

from ppdistill.utils.config import load_with_overrides
from ppdistill.utils.logging import get_logger


#: modules whose ValueError always means "this checkpoint file cannot be used" (a user error)
_CHECKPOINT_MODULES = ("ppdistill.utils.safe_load", "ppdistill.utils.save_load")
#: suffixes of checkpoint files (a missing one gets a list of the checkpoints that exist)
_CHECKPOINT_SUFFIXES = (".pdparams", ".pdopt", ".states")


def debug_requested(argv=None):
    """``--debug`` on the command line or ``PPDISTILL_DEBUG=1``: show tracebacks."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    flag = os.environ.get("PPDISTILL_DEBUG", "").strip().lower()
    return "--debug" in argv or flag not in ("", "0", "false", "no")


def available_checkpoints(directory):
    """Checkpoint prefixes (``latest``, ``best_accuracy``, ``iter_epoch_N``...) in a folder."""
    if not directory or not os.path.isdir(directory):
        return []
    names = {name[:-len(".pdparams")] for name in os.listdir(directory)
             if name.endswith(".pdparams")}
    order = {"latest": 0, "best_accuracy": 1}
    return sorted(names, key=lambda n: (order.get(n, 2), len(n), n))


def checkpoint_hint(path):
    """`` (in DIR: latest, iter_epoch_1; ...)`` for a missing checkpoint ``path``, or ``""``."""
    path = os.fspath(path)
    for suffix in _CHECKPOINT_SUFFIXES:
        if path.endswith(suffix):
            path = path[:-len(suffix)]
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        return f" (the folder {directory} does not exist: train first, or check the path)"
    found = available_checkpoints(directory)
    if not found:
        return f" (no .pdparams checkpoint in {directory})"
    return (f" (checkpoints in {directory}: {', '.join(found)}; e.g. "
            f"{os.path.join(directory, found[0])})")


def _missing_checkpoint_message(exc):
    message = str(exc)
    head = message.split(": ", 1)[0]
    if head.endswith(_CHECKPOINT_SUFFIXES) and not os.path.exists(head):
        return message + checkpoint_hint(head)
    return message


def _raised_in(exc, modules):
    """Whether the innermost frame of ``exc``'s traceback is in one of ``modules``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") in modules


def user_error_message(exc):
    """The one-line message for a user error (bad config, data or checkpoint), else None."""
    from ppdistill.engine.trainer import NonFiniteLossError
    from ppdistill.registry import ConfigError
    from ppdistill.utils.safe_load import UnsafeCheckpointError
    if isinstance(exc, FileNotFoundError):
        return _missing_checkpoint_message(exc)
    if isinstance(exc, (ConfigError, NonFiniteLossError, UnsafeCheckpointError)):
        return str(exc)
    from ppdistill.data.base_dataset import DataError
    if isinstance(exc, DataError):
        return str(exc)
    if isinstance(exc, ValueError) and _raised_in(exc, _CHECKPOINT_MODULES):
        return str(exc)
    return None


def cli_main(function):
    """Run a tool's main; user errors exit with status 2 and one ``error: <message>`` line.

    User errors: ``ConfigError`` (bad config, override, dictionary; a component's own error is
    wrapped with its config path), missing files (a missing checkpoint lists the checkpoints
    that do exist), corrupt / truncated / pickle-payload checkpoints, checkpoints of another
    model, unusable data sets and non-finite losses. ``--debug`` or ``PPDISTILL_DEBUG=1`` shows
    the traceback instead. Any other exception is a bug and keeps its traceback.
    """
    import functools
    import sys

    @functools.wraps(function)
    def wrapper(argv=None):
        from ppdistill.engine.trainer import TrainingInterrupted
        try:
            return function(argv)
        except TrainingInterrupted as exc:  # Ctrl-C: `latest` is saved; one line, status 130
            print(str(exc), file=sys.stderr)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is a user error
            message = user_error_message(exc)
            if message is None or debug_requested(argv):
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
    return wrapper


class _HelpConfigAction(argparse.Action):
    """``--help-config``: print the ``Global`` keys (type, default, meaning) and exit."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from ppdistill.utils.global_schema import text_table
        print(text_table())
        parser.exit(0)


def build_arg_parser(description):
    """PaddleOCR's ``-c config.yml -o Section.key=value ...`` command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-c", "--config", required=True, help="YAML config file")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. Global.epoch_num=5")
    parser.add_argument("-p", "--profiler_options", default=None,
                        help="accepted for PaddleOCR compatibility; profiling is not built in")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of errors (also PPDISTILL_DEBUG=1)")
    parser.add_argument("--help-config", action=_HelpConfigAction,
                        help="list the Global config keys with type, default and meaning")
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
    from ppdistill.utils.global_schema import global_setting
    global_cfg = config["Global"]
    save_dir = global_setting(global_cfg, "save_model_dir")
    logger = get_logger(log_file=os.path.join(save_dir, f"{log_name}.log"))
    use_gpu = bool(global_setting(global_cfg, "use_gpu"))
    if use_gpu and not (paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
        logger.warning("Global.use_gpu is true but no GPU is available: running on the CPU")
        use_gpu = False
    if use_gpu:
        paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().dev_id}")
    else:
        paddle.set_device("cpu")
        from ppdistill.utils.cpu import configure_cpu_threads
        configure_cpu_threads(logger)
    seed = int(global_setting(global_cfg, "seed"))
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
