"""On/off switches read from the environment (``PPDISTILL_CPU_KERNELS=0`` and the like)."""
import os

__all__ = ["switch_on"]

OFF_VALUES = ("0", "false", "no")


def switch_on(name):
    """False when the environment variable ``name`` is ``0``/``false``/``no`` (any case), else
    True (also when it is unset)."""
    return os.environ.get(name, "1").strip().lower() not in OFF_VALUES
