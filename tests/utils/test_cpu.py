import pytest

from ppdistill.utils import cpu


AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"})
OLD = frozenset({"sse4_2", "avx"})


def test_avx2_path_only_on_amd_with_avx2_and_not_over_user_choice(monkeypatch):
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    monkeypatch.setattr(cpu, "cpu_info", lambda: {"vendor": "", "model": "", "flags": AVX2})
    monkeypatch.setattr(cpu, "_cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.setattr(cpu, "is_amd_cpu", lambda: False)
    assert not cpu.prefer_mkl_avx2() and "MKL_DEBUG_CPU_TYPE" not in cpu.os.environ
    monkeypatch.setattr(cpu, "cpu_info", lambda: {"vendor": "", "model": "", "flags": OLD})
    monkeypatch.setattr(cpu, "is_amd_cpu", lambda: True)
    assert not cpu.prefer_mkl_avx2() and "MKL_DEBUG_CPU_TYPE" not in cpu.os.environ  # no AVX2
    monkeypatch.setattr(cpu, "cpu_info", lambda: {"vendor": "", "model": "", "flags": AVX2})
    assert cpu.prefer_mkl_avx2() and cpu.os.environ["MKL_DEBUG_CPU_TYPE"] == "5"
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "4")
    assert not cpu.prefer_mkl_avx2() and cpu.os.environ["MKL_DEBUG_CPU_TYPE"] == "4"


@pytest.mark.parametrize("vendor, flags, mkl, user, cores, paddle_threads, kernels, why", [
    ("GenuineIntel", AVX2, None, None, 4, 4, 4, "Intel CPU"),          # Intel: every core
    ("GenuineIntel", OLD, None, None, 2, 2, 2, "Intel CPU"),
    ("AuthenticAMD", AVX2, "5", None, 2, 2, 2, "AVX2 path"),           # AMD on the AVX2 path
    ("AuthenticAMD", AVX2, None, None, 2, None, 2, "generic path"),    # AMD, MKL generic path
    ("AuthenticAMD", AVX2, "", None, 8, None, 8, "MKL_DEBUG_CPU_TYPE=unset"),
    ("AuthenticAMD", OLD, "5", None, 2, None, 2, "no AVX2"),          # forced type, no AVX2
    ("HygonGenuine", AVX2, "5", None, 4, 4, 4, "AVX2 path"),
    ("CentaurHauls", AVX2, None, None, 4, None, 4, "vendor CentaurHauls"),
    ("", frozenset(), None, None, 4, None, 4, "vendor unknown"),
    ("GenuineIntel", AVX2, None, "1", 4, 1, 1, "set by the user"),     # the user wins
    ("AuthenticAMD", AVX2, None, "3", 2, 3, 3, "set by the user"),
    ("AuthenticAMD", AVX2, "5", "abc", 2, 2, 2, "ignored invalid"),   # a typo is not obeyed
    ("GenuineIntel", AVX2, None, None, 1, None, 1, "one core"),
])
def test_choose_threads_per_vendor_and_feature(vendor, flags, mkl, user, cores, paddle_threads,
                                               kernels, why):
    choice = cpu.choose_threads(vendor, flags, cores, mkl, user)
    assert (choice.paddle_threads, choice.kernel_threads) == (paddle_threads, kernels), choice
    assert why in choice.reason, choice


def _fake_machine(monkeypatch, vendor, flags, cores, user=None, mkl=None):
    calls = []
    import paddle
    monkeypatch.setattr(paddle.base.core, "set_num_threads", calls.append)
    monkeypatch.setattr(cpu, "cpu_info", lambda: {"vendor": vendor, "model": "Test CPU 9000",
                                                  "flags": flags})
    monkeypatch.setattr(cpu, "available_cores", lambda: cores)
    monkeypatch.setattr(cpu, "USER_THREAD_SETTING", user)
    monkeypatch.setitem(cpu._CHOSEN, "kernel_threads", None)
    if mkl is None:
        monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    else:
        monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", mkl)
    return calls


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(line)


def test_configure_applies_the_choice_and_logs_what_and_why(monkeypatch):
    calls = _fake_machine(monkeypatch, "AuthenticAMD", AVX2, 2, mkl="4")
    log = _Log()
    assert cpu.configure_cpu_threads(log) is None and calls == []
    assert cpu.kernel_threads() == 2
    assert log.lines == ["CPU: Test CPU 9000 (AuthenticAMD, 2 cores; avx2 fma avx512f "
                         "avx512_bf16): paddle math threads 1 (paddle's default), ppdistill "
                         "kernel threads 2; why: AuthenticAMD: MKL on its generic path "
                         "(MKL_DEBUG_CPU_TYPE=4), where more than one thread is slower: paddle "
                         "keeps 1 thread (OMP_NUM_THREADS overrides)"]
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "5")
    assert cpu.configure_cpu_threads() == 2 and calls == [2]


def test_intel_cpus_use_every_core_for_paddle_and_kernels(monkeypatch):
    """Issue 11: on Intel, paddle's kernels stayed on one thread while ppdistill's used all."""
    calls = _fake_machine(monkeypatch, "GenuineIntel", AVX2, 4)
    log = _Log()
    assert cpu.configure_cpu_threads(log) == 4 and calls == [4] and cpu.kernel_threads() == 4
    assert "paddle math threads 4, ppdistill kernel threads 4; why: Intel CPU" in log.lines[0]


def test_user_omp_num_threads_wins_for_paddle_and_kernels(monkeypatch):
    calls = _fake_machine(monkeypatch, "GenuineIntel", AVX2, 4, user="1")
    log = _Log()
    assert cpu.configure_cpu_threads(log) == 1 and calls == [1] and cpu.kernel_threads() == 1
    assert "why: OMP_NUM_THREADS/CPU_NUM=1 set by the user" in log.lines[0]


def test_kernel_threads_before_configuration(monkeypatch):
    monkeypatch.setitem(cpu._CHOSEN, "kernel_threads", None)
    monkeypatch.setattr(cpu, "available_cores", lambda: 6)
    monkeypatch.setattr(cpu, "USER_THREAD_SETTING", None)
    assert cpu.kernel_threads() == 6
    monkeypatch.setattr(cpu, "USER_THREAD_SETTING", "2")
    assert cpu.kernel_threads() == 2


def test_cpu_info_reads_vendor_model_and_flags(monkeypatch):
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n"
            "flags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nvendor_id\t: Other\n")
    monkeypatch.setattr(cpu, "_read_cpuinfo", lambda: text)
    info = cpu.cpu_info()
    assert info == {"vendor": "AuthenticAMD", "model": "AMD EPYC 9R14",
                    "flags": frozenset({"fpu", "avx2", "avx512_bf16"})}
    assert cpu._cpu_vendor() == "AuthenticAMD" and cpu.is_amd_cpu() and not cpu.is_intel_cpu()


def test_import_ppdistill_changes_no_process_state():
    """Importing the package (and its data/engine modules) leaves the environment, the math
    thread count and the warning filters alone; the tools' entry points set them."""
    import subprocess
    import sys
    code = (
        "import os, warnings; env = dict(os.environ); filters = list(warnings.filters)\n"
        "import ppdistill, ppdistill.data, ppdistill.engine.run\n"
        "changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)"
        " and k not in ('OMP_NUM_THREADS', 'FLAGS_enable_pir_api'))\n"
        "print(changed, warnings.filters[:len(warnings.filters) - len(filters)])\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("MKL_DEBUG_CPU_TYPE", "KMP_BLOCKTIME")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    changed = out.stdout.strip().splitlines()[-1]
    assert "MKL_DEBUG_CPU_TYPE" not in changed and "KMP_BLOCKTIME" not in changed, changed
    assert "ccache" not in changed, changed


def test_tool_entry_setup_silences_ccache_and_picks_the_mkl_path():
    import subprocess
    import sys
    code = ("from ppdistill.utils.cpu import setup_tool_process, is_amd_cpu\n"
            "setup_tool_process()\nimport os, paddle\n"
            "print(is_amd_cpu(), os.environ.get('MKL_DEBUG_CPU_TYPE'))\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ccache" not in out.stderr
    amd, mkl = out.stdout.split()
    assert mkl == ("5" if amd == "True" else "None")
