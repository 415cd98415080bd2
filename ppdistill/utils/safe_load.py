"""Load ``.pdparams`` / ``.pdopt`` / ``.states`` files without letting them run code.

``paddle.save`` writes a pickle and ``paddle.load`` unpickles it with the standard unpickler, which
calls whatever callable the file names: a checkpoint downloaded from a stranger can run any
command on ``paddle.load``. :func:`safe_load` reads the same files with a restricted unpickler
that resolves only the globals a checkpoint needs and refuses everything else::

    ValueError: model.pdparams: refusing to load: the file references 'posix.system', which a
    checkpoint never needs (a pickle payload?)

What a checkpoint references (verified with ``pickletools`` on files written by
``paddle.save`` under paddle 3.3.1 + numpy 2.4 and paddle 2.6.2 + numpy 1.26, for a Layer
state_dict, an Adam state_dict with a ``LinearWarmup(CosineAnnealingDecay)`` scheduler state, a
dict mixing tensors and numpy arrays, and PaddleOCR's ``.states``):

- ``numpy.ndarray``, ``numpy.dtype`` and ``numpy._core.multiarray._reconstruct`` (numpy 2 writes
  ``numpy._core``, numpy 1.x ``numpy.core``; both are admitted): every tensor is stored as a numpy
  array. The file format is the same in paddle 2.6 and 3.x; only numpy's module path differs.
- ``builtins.tuple``: a tensor that is not a direct value of a state dict is stored as the tuple
  ``(tensor_name, ndarray)``.
- ``.states`` files hold plain dicts/ints/floats (no globals at all); numpy scalars
  (``numpy._core.multiarray.scalar``) appear when a metric value was a numpy float.
- Files written with pickle protocol 2 (older paddle, ``pickle.dump(..., protocol=2)``) encode
  byte strings through ``_codecs.encode``; old state dicts may be ``collections.OrderedDict``.

The loaded object is post-processed as ``paddle.load`` does: the ``StructuredToParameterName@@``
name table is dropped (unless ``keep_name_table``), arrays split by protocol 2/3 for size
(``UnpackBigParamInfor@@``) are joined, and numpy arrays / ``(name, ndarray)`` tuples become
``paddle.Tensor`` (or stay numpy with ``return_numpy=True``).
"""
import os
import pickle

import numpy as np

__all__ = ["safe_load", "UnsafeCheckpointError", "NAME_TABLE_KEY", "ALLOWED_GLOBALS"]

NAME_TABLE_KEY = "StructuredToParameterName@@"
_BIG_PARAM_KEY = "UnpackBigParamInfor@@"  # (sic) paddle's own spelling
_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2

#: (module, name) pairs a checkpoint may reference; everything else is refused.
ALLOWED_GLOBALS = frozenset(
    [(mod, "_reconstruct") for mod in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(mod, "scalar") for mod in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
       ("collections", "OrderedDict")]
    + [("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "int",
                                        "float", "bool", "str", "bytes", "complex",
                                        "slice")]
    + [("__builtin__", name) for name in ("dict", "list", "tuple", "set", "frozenset", "int",
                                           "float", "bool", "str", "bytes", "complex",
                                           "slice", "unicode", "long")]
)


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The file asks the unpickler for something a checkpoint never contains."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            if module.startswith("numpy.core.") and _NUMPY_2:
                module = "numpy._core." + module[len("numpy.core."):]  # no deprecation warning
            elif module.startswith("numpy._core.") and not _NUMPY_2:
                module = "numpy.core." + module[len("numpy._core."):]  # files from numpy 2
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"{self._path}: refusing to load: the file references '{module}.{name}', which a "
            f"checkpoint never needs (a pickle payload?)")

    def persistent_load(self, pid):
        raise UnsafeCheckpointError(
            f"{self._path}: refusing to load: the file uses a persistent id ({pid!r}), which "
            f"paddle.save never writes (not a paddle checkpoint?)")


def _join_big_params(obj):
    """Re-assemble arrays that paddle split into ``key@@.N`` slices (protocol 2/3 only)."""
    if isinstance(obj, dict) and _BIG_PARAM_KEY in obj:
        info = obj.pop(_BIG_PARAM_KEY)
        for key, value in info.items():
            parts = [obj.pop(part) for part in value["slices"]]
            obj[key] = np.concatenate(parts).reshape(value["OriginShape"])
    return obj


def _is_named_array(obj):
    return (isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str)
            and isinstance(obj[1], np.ndarray))


def _contains(obj, condition):
    if condition(obj):
        return True
    if isinstance(obj, dict):
        return any(_contains(v, condition) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return any(_contains(v, condition) for v in obj)
    return False


def _convert(obj, condition, convert):
    """Apply ``convert`` to every node matching ``condition`` in nested containers."""
    if condition(obj):
        return convert(obj)
    if isinstance(obj, dict):
        for key in list(obj.keys()):
            obj[key] = _convert(obj[key], condition, convert)
        return obj
    if isinstance(obj, list):
        return [_convert(v, condition, convert) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(v, condition, convert) for v in obj)
    return obj


def _to_tensor(array, name=None):
    import paddle
    tensor = paddle.to_tensor(array)
    if name:
        tensor.name = name
    return tensor


def _to_tensors(obj, return_numpy, name_table):
    """Mirror ``paddle.load``'s conversion of numpy arrays to tensors.

    With a name table (a saved state dict) the arrays it lists become tensors carrying their
    saved parameter names; otherwise ``(name, ndarray)`` tuples become named tensors if there
    are any, else every numpy array becomes a tensor.
    """
    if name_table is not None and isinstance(obj, dict):
        if not return_numpy:
            for key, name in name_table.items():
                if isinstance(obj.get(key), np.ndarray):
                    obj[key] = _to_tensor(obj[key], name)
        return obj
    if _contains(obj, _is_named_array):
        return _convert(obj, _is_named_array,
                        lambda pair: pair[1] if return_numpy else _to_tensor(pair[1], pair[0]))
    if return_numpy:
        return obj
    return _convert(obj, lambda v: isinstance(v, np.ndarray), _to_tensor)


def safe_load(path, return_numpy=False, keep_name_table=False):
    """Load a file written by ``paddle.save`` (or PaddleOCR's ``.states`` pickle) safely.

    Args:
        path: the file (``.pdparams``, ``.pdopt``, ``.states``, ...).
        return_numpy: keep numpy arrays instead of converting them to ``paddle.Tensor``.
        keep_name_table: keep paddle's ``StructuredToParameterName@@`` entry (structured
            parameter name -> the parameter's ``name`` at save time), which
            :func:`ppdistill.utils.save_load.load_model` uses to match optimizer state.

    Returns the same structure ``paddle.load(path)`` returns.

    Raises FileNotFoundError for a missing file, :class:`UnsafeCheckpointError` (a ValueError)
    for a file that references anything beyond numpy arrays and plain containers, and ValueError
    for a file that is not a pickle (e.g. a ``.pdiparams`` inference file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(1)
        handle.seek(0)
        if head != b"\x80":
            raise ValueError(
                f"{path}: not a checkpoint written by paddle.save (it is not a pickle file; "
                f"inference files such as .pdiparams/.pdmodel/.json cannot be loaded as "
                f"training checkpoints)")
        try:
            obj = _RestrictedUnpickler(handle, path).load()
        except UnsafeCheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                ImportError, IndexError, KeyError, MemoryError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the checkpoint (truncated or not written by "
                             f"paddle.save?): {type(exc).__name__}: {exc}") from exc
    name_table = None
    if isinstance(obj, dict):
        obj = _join_big_params(obj)
        name_table = obj.pop(NAME_TABLE_KEY, None)
    obj = _to_tensors(obj, return_numpy, name_table)
    if keep_name_table and name_table is not None:
        obj[NAME_TABLE_KEY] = name_table
    return obj
