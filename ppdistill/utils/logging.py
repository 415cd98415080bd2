"""The ``ppdistill`` logger: console on every run, a log file on rank 0."""
import logging
import os
import sys

_configured = set()


def get_logger(name="ppdistill", log_file=None, level=logging.INFO):
    """Return the ``ppdistill`` logger, adding a console handler once and ``log_file`` once.

    Only rank 0 logs at INFO in distributed runs; other ranks log errors only.
    """
    logger = logging.getLogger(name)
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    formatter = logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s",
                                  datefmt="%Y/%m/%d %H:%M:%S")
    if (name, None) not in _configured:
        handler = logging.StreamHandler(stream=sys.stdout)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.propagate = False
        _configured.add((name, None))
    if log_file and rank == 0 and (name, log_file) not in _configured:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        file_handler = logging.FileHandler(log_file, "a", encoding="utf-8")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
        _configured.add((name, log_file))
    logger.setLevel(level if rank == 0 else logging.ERROR)
    return logger
