from ppdistill.utils import cpu


def test_avx2_path_only_on_amd_and_not_over_user_choice(monkeypatch):
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    monkeypatch.setattr(cpu, "is_amd_cpu", lambda: False)
    assert not cpu.prefer_mkl_avx2()
    monkeypatch.setattr(cpu, "is_amd_cpu", lambda: True)
    assert cpu.prefer_mkl_avx2() and cpu.os.environ["MKL_DEBUG_CPU_TYPE"] == "5"
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "4")
    assert not cpu.prefer_mkl_avx2() and cpu.os.environ["MKL_DEBUG_CPU_TYPE"] == "4"


def test_threads_follow_the_avx2_path_and_user_settings(monkeypatch):
    calls = []
    import paddle
    monkeypatch.setattr(paddle.base.core, "set_num_threads", calls.append)
    monkeypatch.setattr(cpu, "available_cores", lambda: 2)
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "4")
    monkeypatch.setattr(cpu, "USER_THREAD_SETTING", None)
    assert cpu.configure_cpu_threads() is None
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "5")
    assert cpu.configure_cpu_threads() == 2 and calls == [2]
    monkeypatch.setattr(cpu, "USER_THREAD_SETTING", "1")
    assert cpu.configure_cpu_threads() is None and calls == [2]
