"""CPU math-library and thread settings for training on the CPU.

Nothing here runs on import: the tools' entry points call :func:`setup_tool_process` (before
paddle is imported) and ``prepare_run`` calls :func:`configure_cpu_threads`. Own scripts can do
the same::

    from ppdistill.utils.cpu import setup_tool_process
    setup_tool_process()   # before importing paddle

Thread choice (:func:`choose_threads`, measured on a 2-core AMD EPYC, ``benchmark/RESULTS.md``
and ``benchmark/threads_bench.py``):

- paddle's CPU kernels run their GEMMs in the MKL bundled with paddle. On Intel CPUs MKL takes
  its native AVX2/AVX-512 path and more threads help, so paddle gets every core. On other x86
  vendors (AMD, Hygon) it takes a generic path on which two threads were measured *slower* than
  one (det CML 26.4 vs 13.1 s/iter); :func:`prefer_mkl_avx2` switches it to the AVX2 path
  (``MKL_DEBUG_CPU_TYPE=5``, only on CPUs that have AVX2), and then every core is used
  (7.1 s/iter on one thread, 6.2 on two). Without that switch paddle keeps one thread.
- ppdistill's own kernels (``ppdistill.ops``) split their work over ``std::thread`` workers
  and do not go through MKL: they use every core on every vendor.
- ``OMP_NUM_THREADS`` (or ``CPU_NUM``) set by the user before paddle is imported wins for both.
"""
import os
import warnings

#: thread settings the user made before paddle was imported (paddle's import sets
#: OMP_NUM_THREADS=1 itself, so it cannot be read later)
USER_THREAD_SETTING = os.environ.get("OMP_NUM_THREADS") or os.environ.get("CPU_NUM")
_VENDORS = ("GenuineIntel", "AuthenticAMD", "HygonGenuine")
#: feature flags named in the thread-choice log line and in the benchmark's machine record
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
#: kernel thread count chosen by :func:`configure_cpu_threads` (None: not configured yet)
_CHOSEN = {"kernel_threads": None}


def _read_cpuinfo():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read(4096 * 4)
    except OSError:
        return ""


def cpu_info():
    """``{"vendor", "model", "flags"}`` of the first CPU in ``/proc/cpuinfo`` (empty values where
    it cannot be read, e.g. not Linux); ``flags`` is a frozenset."""
    vendor, model, flags = "", "", frozenset()
    for line in _read_cpuinfo().splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id" and not vendor:
            vendor = value
        elif key == "model name" and not model:
            model = value
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if vendor and model and flags:
            break
    return {"vendor": vendor, "model": model, "flags": flags}


def _cpu_vendor():
    head = _read_cpuinfo()
    for vendor in _VENDORS:
        if vendor in head:
            return vendor
    return ""


def is_amd_cpu():
    return _cpu_vendor() == "AuthenticAMD"


def is_intel_cpu():
    return _cpu_vendor() == "GenuineIntel"


def setup_tool_process():
    """Process-wide CPU settings of a ppdistill tool; call it before paddle is imported.

    - AMD/Hygon CPUs with AVX2: MKL's AVX2 path (:func:`prefer_mkl_avx2`);
    - paddle's "No ccache found" warning (printed on every import of paddle) and its BatchNorm
      "we now always track global mean and variance" warning are silenced.
    """
    prefer_mkl_avx2()
    warnings.filterwarnings("ignore", message="No ccache found")
    # printed by paddle's BatchNorm at the first training forward of every run: no news
    warnings.filterwarnings("ignore", message="When training, we now always track global mean")


def prefer_mkl_avx2():
    """On non-Intel x86 CPUs with AVX2 (AMD, Hygon), ask MKL for its AVX2 path unless the user
    chose otherwise. Never on a CPU without AVX2: MKL would run instructions it does not have.

    Must run before the first MKL call; returns whether it applied.
    """
    if "MKL_DEBUG_CPU_TYPE" in os.environ:
        return False
    if not (is_amd_cpu() or _cpu_vendor() == "HygonGenuine"):
        return False
    if "avx2" not in cpu_info()["flags"]:
        return False
    os.environ["MKL_DEBUG_CPU_TYPE"] = "5"
    return True


def available_cores():
    """Cores this process may run on (respects CPU affinity / container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def mkl_fast_path():
    """Whether MKL runs an AVX2-or-better code path: always on Intel CPUs, on AMD CPUs only with
    ``MKL_DEBUG_CPU_TYPE=5`` (:func:`prefer_mkl_avx2`)."""
    return is_intel_cpu() or os.environ.get("MKL_DEBUG_CPU_TYPE") == "5"


class ThreadChoice:
    """Threads for paddle's math kernels and for ppdistill's own kernels, with the reason.

    ``paddle_threads`` None leaves paddle's own setting (one thread) alone.
    """

    def __init__(self, paddle_threads, kernel_threads, reason):
        self.paddle_threads = paddle_threads
        self.kernel_threads = kernel_threads
        self.reason = reason

    def __eq__(self, other):
        return isinstance(other, ThreadChoice) and vars(self) == vars(other)

    def __repr__(self):
        return (f"ThreadChoice(paddle_threads={self.paddle_threads}, "
                f"kernel_threads={self.kernel_threads}, reason={self.reason!r})")


def _user_threads(user_setting):
    try:
        count = int(str(user_setting).strip())
    except ValueError:
        return None
    return count if count >= 1 else None


def choose_threads(vendor, flags, cores, mkl_debug_cpu_type=None, user_setting=None):
    """The :class:`ThreadChoice` for a CPU; a pure function of its arguments (see the module
    docstring for the measurements behind it).

    ``vendor``: ``vendor_id`` of ``/proc/cpuinfo``; ``flags``: its feature flags; ``cores``: the
    cores this process may use; ``mkl_debug_cpu_type``: ``$MKL_DEBUG_CPU_TYPE``;
    ``user_setting``: ``OMP_NUM_THREADS`` / ``CPU_NUM`` as set before paddle was imported.
    """
    cores = max(1, int(cores))
    user = _user_threads(user_setting) if user_setting else None
    if user is not None:
        return ThreadChoice(user, user, f"OMP_NUM_THREADS/CPU_NUM={user} set by the user")
    ignored = f" (ignored invalid OMP_NUM_THREADS/CPU_NUM={user_setting!r})" if user_setting else ""
    if cores == 1:
        return ThreadChoice(None, 1, "one core available" + ignored)
    if vendor == "GenuineIntel":
        return ThreadChoice(cores, cores, "Intel CPU: MKL runs its native AVX2/AVX-512 path, "
                                          "which scales with cores" + ignored)
    if vendor in ("AuthenticAMD", "HygonGenuine"):
        if mkl_debug_cpu_type == "5" and "avx2" in flags:
            return ThreadChoice(cores, cores, f"{vendor}: MKL on its AVX2 path "
                                              f"(MKL_DEBUG_CPU_TYPE=5), which scales with cores"
                                + ignored)
        why = ("the CPU has no AVX2" if "avx2" not in flags
               else f"MKL_DEBUG_CPU_TYPE={mkl_debug_cpu_type or 'unset'}")
        return ThreadChoice(None, cores, f"{vendor}: MKL on its generic path ({why}), where "
                                         f"more than one thread is slower: paddle keeps 1 thread"
                            + ignored)
    return ThreadChoice(None, cores, f"CPU vendor {vendor or 'unknown'}: paddle's default "
                                     f"threads" + ignored)


def describe_choice(choice, info, cores):
    """The one log line of a :class:`ThreadChoice`: CPU, notable flags, what was set and why."""
    flags = " ".join(flag for flag in NOTABLE_FLAGS if flag in info["flags"]) or "none"
    paddle_part = (f"paddle math threads {choice.paddle_threads}" if choice.paddle_threads
                   else "paddle math threads 1 (paddle's default)")
    return (f"CPU: {info['model'] or 'unknown model'} ({info['vendor'] or 'unknown vendor'}, "
            f"{cores} cores; {flags}): {paddle_part}, ppdistill kernel threads "
            f"{choice.kernel_threads}; why: {choice.reason} (OMP_NUM_THREADS overrides)")


def configure_cpu_threads(logger=None):
    """Apply :func:`choose_threads` for this machine: paddle's math threads (through
    ``paddle.base.core.set_num_threads``) and the thread count of ppdistill's kernels
    (:func:`kernel_threads`); logs one line saying what was chosen and why.

    Returns the paddle thread count set, or None when paddle's setting was left alone.
    """
    info, cores = cpu_info(), available_cores()
    choice = choose_threads(info["vendor"], info["flags"], cores,
                            os.environ.get("MKL_DEBUG_CPU_TYPE"), USER_THREAD_SETTING)
    _CHOSEN["kernel_threads"] = choice.kernel_threads
    applied = None
    if choice.paddle_threads:
        import paddle
        setter = getattr(getattr(getattr(paddle, "base", None), "core", None),
                         "set_num_threads", None)
        if setter is not None:
            if choice.paddle_threads > 1:
                # idle threads yield their core at once: same speed, ~0.6 core less spinning
                os.environ.setdefault("KMP_BLOCKTIME", "0")
            setter(choice.paddle_threads)
            applied = choice.paddle_threads
    if logger:
        logger.info(describe_choice(choice, info, cores))
    return applied


def kernel_threads():
    """Threads for ppdistill's own CPU kernels (``ppdistill.ops``): the count chosen by
    :func:`configure_cpu_threads`; before it ran, ``OMP_NUM_THREADS`` / ``CPU_NUM`` if the user
    set one before importing paddle, else every available core."""
    if _CHOSEN["kernel_threads"]:
        return _CHOSEN["kernel_threads"]
    if USER_THREAD_SETTING:
        user = _user_threads(USER_THREAD_SETTING)
        if user is not None:
            return user
    return available_cores()
