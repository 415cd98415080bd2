"""Machine, versions, memory and CPU-load readings for the benchmark (Linux /proc, no psutil)."""
import os
import platform
import resource
import subprocess
import sys


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_model():
    return cpu_identity()["model"] or platform.processor() or "unknown"


def cpu_identity():
    """vendor, model name, family/model/stepping and the full flag list of the first CPU."""
    info = {"vendor": "", "model": "", "family": "", "model_id": "", "stepping": "", "flags": []}
    keys = {"vendor_id": "vendor", "model name": "model", "cpu family": "family",
            "model": "model_id", "stepping": "stepping", "flags": "flags"}
    for line in _read("/proc/cpuinfo").splitlines():
        if not line.strip():
            break  # first processor only
        key, _, value = line.partition(":")
        name = keys.get(key.strip())
        if name:
            info[name] = value.split() if name == "flags" else value.strip()
    return info


#: ISA extensions that matter for conv/GEMM speed and low precision (bf16: AVX512_BF16 / AMX)
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                 "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags_summary():
    """The notable ISA extensions this CPU has (:data:`NOTABLE_FLAGS`), space-separated."""
    flags = set(cpu_identity()["flags"])
    return " ".join(f for f in NOTABLE_FLAGS if f in flags)


def total_ram_gib():
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 ** 2
    return float("nan")


def machine_info():
    """nproc, CPU model, RAM, OS and python."""
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    ident = cpu_identity()
    smt = _read("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").strip()
    return {"nproc": nproc, "cpu": cpu_model(), "cpu_vendor": ident["vendor"],
            "cpu_family_model_stepping": f"{ident['family']}/{ident['model_id']}/"
                                         f"{ident['stepping']}",
            "cpu_isa": cpu_flags_summary(), "cpu0_thread_siblings": smt or None,
            "hypervisor": "hypervisor" in ident["flags"],
            "ram_gib": round(total_ram_gib(), 1), "os": platform.platform(),
            "python": sys.version.split()[0]}


def cpu_flags_all():
    """Every flag of the first CPU (recorded in --json-out results)."""
    return " ".join(cpu_identity()["flags"])


def versions():
    """paddle (+ commit, oneDNN build flag), numpy, opencv. Imports paddle: call in a child."""
    import cv2
    import numpy
    import paddle
    info = {"paddle": paddle.__version__, "numpy": numpy.__version__, "opencv": cv2.__version__}
    try:
        info["paddle_commit"] = paddle.version.commit[:10]
        info["paddle_onednn_build"] = bool(paddle.base.core.is_compiled_with_mkldnn())
        info["paddle_cuda_build"] = bool(paddle.is_compiled_with_cuda())
    except AttributeError:
        pass
    return info


def git_revision(repo):
    try:
        out = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def status_kib(pid, key):
    """``VmHWM``/``VmRSS``... of a process in KiB (None if gone)."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def child_pids(pid=None):
    """Direct children of ``pid`` (default: this process), e.g. DataLoader workers."""
    pid = pid or os.getpid()
    pids = set()
    for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        pids.update(int(p) for p in _read(f"/proc/{pid}/task/{tid}/children").split())
    return sorted(pids)


def memory_snapshot():
    """Peak/current RSS of this process and peak RSS of its live children, in MiB."""
    main_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    children = {}
    for pid in child_pids():
        hwm = status_kib(pid, "VmHWM")
        if hwm is not None:
            children[pid] = hwm / 1024
    return {"main_peak_mib": main_peak_kib / 1024,
            "main_vmhwm_mib": (status_kib(os.getpid(), "VmHWM") or 0) / 1024,
            "main_rss_mib": (status_kib(os.getpid(), "VmRSS") or 0) / 1024,
            "worker_peak_mib": children}


class CpuLoad:
    """Busy cores of the whole machine vs of this process between ``start()`` and ``stop()``.

    ``other_cores`` = machine busy cores minus this process (and its children): load from other
    users of the shared machine, which slows the measurement down.
    """

    def __init__(self):
        self._start = None

    @staticmethod
    def _machine_jiffies():
        fields = _read("/proc/stat").splitlines()[0].split()[1:]
        values = [int(v) for v in fields]
        idle = values[3] + values[4]
        return sum(values[:8]) - idle, sum(values[:8])

    @staticmethod
    def _own_seconds():
        own = os.times()
        return own.user + own.system + own.children_user + own.children_system

    def _own_with_live_children(self):
        ticks = os.sysconf("SC_CLK_TCK")
        total = self._own_seconds()
        for pid in child_pids():
            fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
            if len(fields) > 13:
                total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def start(self):
        import time
        self._start = (time.time(), self._machine_jiffies(), self._own_with_live_children())

    def stop(self):
        import time
        wall0, (busy0, _), own0 = self._start
        wall = time.time() - wall0
        busy1, _ = self._machine_jiffies()
        ticks = os.sysconf("SC_CLK_TCK")
        machine = (busy1 - busy0) / ticks / max(wall, 1e-9)
        own = (self._own_with_live_children() - own0) / max(wall, 1e-9)
        return {"machine_busy_cores": round(machine, 2), "own_cores": round(own, 2),
                "other_cores": round(max(machine - own, 0.0), 2)}
