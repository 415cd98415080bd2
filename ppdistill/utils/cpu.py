"""CPU math-library settings for training on the CPU.

Measured on a 2-core AMD EPYC machine (benchmark/RESULTS.md): paddle's bundled MKL picks a generic,
non-AVX2 code path on AMD processors, and with it two threads are *slower* than one (det CML
26.4 vs 13.1 s/iter). Forcing MKL's AVX2 path (``MKL_DEBUG_CPU_TYPE=5``) gives 7.1 s/iter on one
thread and 6.2 s/iter on two, with the same losses (max difference 2e-5).
"""
import os

#: thread settings the user made before paddle was imported (paddle's import sets
#: OMP_NUM_THREADS=1 itself, so it cannot be read later)
USER_THREAD_SETTING = os.environ.get("OMP_NUM_THREADS") or os.environ.get("CPU_NUM")


def is_amd_cpu():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return "AuthenticAMD" in handle.read(4096 * 4)
    except OSError:
        return False


def prefer_mkl_avx2():
    """On AMD CPUs, ask MKL for its AVX2 path unless the user chose otherwise.

    Must run before the first MKL call (ppdistill's import does it); returns whether it applied.
    """
    if "MKL_DEBUG_CPU_TYPE" in os.environ or not is_amd_cpu():
        return False
    os.environ["MKL_DEBUG_CPU_TYPE"] = "5"
    return True


def available_cores():
    """Cores this process may run on (respects CPU affinity / container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure_cpu_threads(logger=None):
    """Use every core for paddle's CPU kernels when MKL runs its AVX2 path.

    Skipped when the user set ``OMP_NUM_THREADS`` / ``CPU_NUM``, or when the AVX2 path is not in
    force (there two threads were measured slower than one). Returns the thread count set or None.
    """
    if os.environ.get("MKL_DEBUG_CPU_TYPE") != "5":
        return None
    if USER_THREAD_SETTING:
        return None
    import paddle
    setter = getattr(getattr(getattr(paddle, "base", None), "core", None), "set_num_threads", None)
    count = available_cores()
    if setter is None or count < 2:
        return None
    # threads yield their core at once when idle: same speed, ~0.6 core less busy-waiting
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    setter(count)
    if logger:
        logger.info(f"CPU: MKL AVX2 path, {count} math threads (set OMP_NUM_THREADS to override)")
    return count


def kernel_threads():
    """Threads for ppdistill's own CPU kernels (``ppdistill.ops``): ``OMP_NUM_THREADS`` /
    ``CPU_NUM`` if the user set one before importing paddle, else every available core."""
    if USER_THREAD_SETTING:
        try:
            return max(1, int(USER_THREAD_SETTING))
        except ValueError:
            pass
    return available_cores()
