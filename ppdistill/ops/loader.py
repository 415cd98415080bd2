"""Compile (once) and load ppdistill's CPU kernels as paddle custom ops.

The first call compiles the C++ sources (``cpu_kernels.cc``, ``rep_kernels.cc``,
``lab_act_kernels.cc`` and their shared
``kernels_common.h`` / ``dw_stride1.h``) with the machine's C++ compiler through
``paddle.utils.cpp_extension.load`` (about 10-20 s) into a build directory under
``$PPDISTILL_EXTENSION_DIR`` or ``~/.cache/ppdistill/ops``, keyed by everything that changes
the build: the source (content and location), the compiler flags, the CPU's feature flags,
the paddle build (version, commit, install location), the compiler (``$CXX`` and its
``--version``) and the Python (version and ABI tag). Later processes of the same environment
reuse it; two environments on one machine get separate builds instead of recompiling each
other's. A file lock keeps concurrent processes (``paddle.distributed.launch``, parallel test
runs) from building at the same time. paddle's "No ccache found" warning and "using custom
operator only" log line are kept out of the output.

Without a working compiler, or with ``PPDISTILL_CPU_KERNELS=0``, :func:`cpu_kernels` returns
None and callers use paddle's own kernels (same results, slower); the reason is logged once.
"""
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import warnings

from ppdistill.utils.switches import switch_on

#: real paths: paddle re-compiles when the source paths it is given change (symlinked
#: checkouts would otherwise rebuild each other's kernels)
_HERE = os.path.dirname(os.path.realpath(__file__))
SOURCE = os.path.join(_HERE, "cpu_kernels.cc")
#: every file compiled into the module, and the header they share (part of the build key)
SOURCES = (SOURCE, os.path.join(_HERE, "rep_kernels.cc"),
           os.path.join(_HERE, "lab_act_kernels.cc"))
HEADERS = (os.path.join(_HERE, "kernels_common.h"),
           os.path.join(_HERE, "dw_stride1.h"))
#: -fopenmp-simd: `omp simd` reductions vectorise without linking an OpenMP runtime
CXX_FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-std=c++17")
_STATE = {"module": None, "tried": False, "reason": None}
logger = logging.getLogger("ppdistill")


def kernels_enabled():
    """False when ``PPDISTILL_CPU_KERNELS`` is ``0``/``false``/``no``."""
    return switch_on("PPDISTILL_CPU_KERNELS")


def _cpu_flags():
    """The CPU's feature flags: the build uses ``-march=native``, so a cache directory shared
    between different machines must not hand one CPU's build to another."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return ""


def _compiler_identity():
    """``$CXX`` (or ``c++``), its resolved path and the first line of its ``--version``."""
    compiler = os.environ.get("CXX") or "c++"
    path = shutil.which(compiler) or compiler
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError):
        version = []
    return f"{compiler}|{os.path.realpath(path)}|{''.join(version)}"


def _paddle_identity():
    import paddle
    commit = getattr(getattr(paddle, "version", None), "commit", "")
    return f"{paddle.__version__}|{commit}|{os.path.dirname(os.path.abspath(paddle.__file__))}"


def _python_identity():
    return f"{sys.version}|{sys.implementation.cache_tag}|{getattr(sys, 'abiflags', '')}"


def build_key():
    """The parts of the build-directory hash (see the module docstring)."""
    digest = hashlib.sha1()
    for path in SOURCES + HEADERS:
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return (digest.hexdigest(), " ".join(SOURCES), " ".join(CXX_FLAGS), _cpu_flags(),
            _paddle_identity(),
            _compiler_identity(), _python_identity())


def build_directory():
    import paddle
    digest = hashlib.sha1("\n".join(build_key()).encode()).hexdigest()[:12]
    root = os.environ.get("PPDISTILL_EXTENSION_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "ppdistill", "ops")
    return os.path.join(root, f"paddle{paddle.__version__}-{digest}")


@contextlib.contextmanager
def _build_lock(directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as handle:
        try:
            import fcntl
            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): build without a lock
            pass
        yield


def _compile():
    from paddle.utils.cpp_extension import load
    directory = build_directory()
    if not any(name.endswith(".so") for _, _, files in os.walk(directory) for name in files):
        logger.info("compiling ppdistill's CPU kernels into %s (once, about 10-20 s)", directory)
    with _build_lock(directory), open(os.devnull, "w") as quiet, \
            contextlib.redirect_stdout(quiet), warnings.catch_warnings(), _quiet_paddle_logs():
        warnings.filterwarnings("ignore", message="No ccache found")
        return load(name="ppdistill_cpu_kernels", sources=list(SOURCES), build_directory=directory,
                    extra_cxx_cflags=list(CXX_FLAGS), verbose=False)


@contextlib.contextmanager
def _quiet_paddle_logs():
    """paddle's cpp_extension logs "using custom operator only" at INFO on every load, and its
    build subprocess prints the "No ccache found" warning; both are held back while loading."""
    loggers = [logging.getLogger(name) for name in ("utils.cpp_extension",
                                                    "paddle.utils.cpp_extension")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    # the build/check step runs a Python subprocess that imports paddle (and warns again)
    saved = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [saved, "ignore:No ccache found"]))
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
        if saved is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved


def cpu_kernels():
    """The compiled custom-op module, or None (disabled, or the build failed: see the log)."""
    if _STATE["tried"]:
        return _STATE["module"]
    _STATE["tried"] = True
    if not kernels_enabled():
        _STATE["reason"] = "PPDISTILL_CPU_KERNELS=0"
        return None
    try:
        _STATE["module"] = _compile()
    except Exception as error:  # no compiler, missing headers, ...: fall back to paddle's ops
        _STATE["reason"] = f"{type(error).__name__}: {str(error).strip().splitlines()[-1:]}"
        logger.warning("ppdistill CPU kernels unavailable (%s); using paddle's kernels "
                       "(same results, slower)", _STATE["reason"])
    return _STATE["module"]


def unavailable_reason():
    """Why :func:`cpu_kernels` returned None (None if it did not, or was not called yet)."""
    return _STATE["reason"]
