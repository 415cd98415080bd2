"""Import released exports (ONNX, Paddle inference models) into training-form weights.

``python tools/import_weights.py -c CONFIG --source PATH --out OUT.pdparams [--model NAME]``
is the command line; :func:`import_weights` is the function behind it.
"""
from ppdistill.importer.core import (DEFAULT_TOLERANCE, ImportFailed, ImportResult,
                                     build_target, import_weights, read_export)
from ppdistill.importer.matcher import StructureMismatch

__all__ = ["import_weights", "ImportFailed", "ImportResult", "StructureMismatch",
           "DEFAULT_TOLERANCE", "build_target", "read_export"]
