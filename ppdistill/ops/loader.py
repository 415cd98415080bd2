"""Compile (once) and load ppdistill's CPU kernels (``cpu_kernels.cc``) as paddle custom ops.

The first call compiles the C++ source with the machine's C++ compiler through
``paddle.utils.cpp_extension.load`` (about 10-20 s) into a build directory keyed by the paddle
version and a hash of the source, the compiler flags and the CPU's feature flags, under ``$PPDISTILL_EXTENSION_DIR`` or
``~/.cache/ppdistill/ops``; later processes reuse it. A file lock keeps concurrent processes
(``paddle.distributed.launch``, parallel test runs) from building at the same time.

Without a working compiler, or with ``PPDISTILL_CPU_KERNELS=0``, :func:`cpu_kernels` returns
None and callers use paddle's own kernels (same results, slower); the reason is logged once.
"""
import contextlib
import hashlib
import logging
import os

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_kernels.cc")
#: -fopenmp-simd: `omp simd` reductions vectorise without linking an OpenMP runtime
CXX_FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-std=c++17")
_STATE = {"module": None, "tried": False, "reason": None}
logger = logging.getLogger("ppdistill")


def kernels_enabled():
    """False when ``PPDISTILL_CPU_KERNELS`` is ``0``/``false``/``no``."""
    return os.environ.get("PPDISTILL_CPU_KERNELS", "1").strip().lower() not in ("0", "false", "no")


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


def build_directory():
    import paddle
    digest = hashlib.sha1()
    with open(SOURCE, "rb") as handle:
        digest.update(handle.read())
    digest.update(" ".join(CXX_FLAGS).encode())
    digest.update(_cpu_flags().encode())
    digest = digest.hexdigest()[:12]
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
            contextlib.redirect_stdout(quiet):
        return load(name="ppdistill_cpu_kernels", sources=[SOURCE], build_directory=directory,
                    extra_cxx_cflags=list(CXX_FLAGS), verbose=False)


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
